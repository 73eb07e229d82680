"""T-Sim (GE2E), the lite backend: the T-Sim protocol on Resemblyzer's real GE2E encoder tells
real voices apart, single- and multi-speaker. The encoder itself is tested in
tests/omni_core/models/test_ge2e.py; the protocol in test_t_sim.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CALL_SLICE

from evaluation.metrics.t_sim import t_sim, t_sim_multi
from evaluation.metrics.t_sim_ge2e import CAVEAT, TSimGE2E, TSimGE2EOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SR = 16000
ENGLISH = ("basic", "main", "town", "country")


@pytest.fixture(scope="module")
def metric() -> TSimGE2E:
    m = TSimGE2E(weights="debug")  # no weights folder: the wheel's model all the same
    m.setup()
    return m


def test_same_voice_scores_above_other_voices(metric, f5_voices):
    """Four real voices, each cut in halves: first half of one against second half of
    another (different words either way)."""
    halves = {n: np.array_split(f5_voices.audio[n], 2) for n in ENGLISH}
    same = [t_sim(halves[n][0], halves[n][1], metric.model).score for n in ENGLISH]
    other = [t_sim(halves[a][0], halves[b][1], metric.model).score
             for a in ENGLISH for b in ENGLISH if a != b]
    # measured: same 0.834 - 0.925; different 0.454 - 0.622
    assert min(same) > 0.78, same
    assert max(other) < 0.70, other
    assert min(same) - max(other) > 0.15
    assert all(0.0 <= s <= 1.0 for s in same + other)  # GE2E's ReLU: cosines in [0, 1]


def test_two_speakers_of_a_real_call_each_matched_to_their_own_voice(metric,
                                                                    sample_recording):
    """The multi-person protocol (caption timestamps, concat mode) on ten seconds of
    pyannote's call; references: each speaker's own turns after 18 s."""
    rec, (a, b) = sample_recording, CALL_SLICE
    gen = rec.wav[int(a * SR):int(b * SR)]
    segs: dict[str, list[tuple[float, float]]] = {}
    for spk, s, e in rec.rttm:
        if s >= a - 0.1 and e <= b + 0.1:
            segs.setdefault(spk, []).append((max(s - a, 0.0), e - a))
    refs = {spk: np.concatenate([rec.wav[int(s * SR):int(e * SR)] for lab, s, e in rec.rttm
                                 if lab == spk and s >= 18.0]) for spk in segs}
    right = t_sim_multi(gen, segs, refs, metric.model, metric.options)
    swapped = t_sim_multi(gen, segs, dict(zip(refs, reversed(refs.values()), strict=True)),
                          metric.model, metric.options)
    # measured: own voice 0.927 / 0.936 (mean 0.931), swapped 0.823 / 0.843 (mean 0.833)
    assert right.score > 0.88 and swapped.score < 0.87, (right, swapped)
    for own, other in zip(right.speakers, swapped.speakers, strict=True):
        assert own.score > other.score + 0.05 and own.n_segments >= 2
    whole = t_sim_multi(gen, None, refs, metric.model, metric.options)
    assert whole.used_fallback and whole.score is not None  # no timestamps: the documented
    # fallback, flagged


def test_labelled_as_not_the_paper_protocol():
    (out,) = TSimGE2E.spec.outputs
    assert out.name == "t_sim_ge2e" and out.label == "T-Sim (GE2E)" and out.split
    assert out.caveat == CAVEAT and "WavLM" in CAVEAT
    assert TSimGE2E.spec.lite_for == "t_sim" and TSimGE2E.spec.backend == "ge2e"
    assert TSimGE2EOptions().segment_mode == "concat"  # T-Sim's own choices, same defaults
    with pytest.raises(ValueError, match="resemblyzer/pretrained.pt"):
        TSimGE2EOptions(checkpoint="wavlm-large-sv-ecapa")
