"""T-Sim: the protocol (cosine, segments, options, errors) and the debug twin end to end.
The speaker model itself is tested in tests/omni_core/models/test_speaker.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from evaluation.metrics import t_sim as T
from omni_core.errors import OmniError


@pytest.mark.parametrize(("a", "b", "want"), [
    ([1.0, 0.0], [0.0, 1.0], 0.0),
    ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], 1.0),
    ([1.0, 0.0], [-3.0, 0.0], -1.0),
    ([3.0, 4.0], [4.0, 3.0], 24 / 25),
    ([0.0, 0.0], [1.0, 0.0], 0.0),  # torch's eps: a zero vector scores 0, not NaN
])
def test_cosine_reference_values(a, b, want):
    assert T.cosine(np.array(a), np.array(b)) == pytest.approx(want, abs=1e-6)


def test_speaker_audio_cuts_sorted_clipped_segments():
    audio = np.arange(16000 * 3, dtype=np.float32)
    pieces = T.speaker_audio(audio, [(2.5, 9.0), (0.1, 0.5), (-1.0, 0.01), (1.0, 1.02)])
    # (-1, 0.01) -> 160 samples and (1.0, 1.02) -> 320 samples: under WavLM's 400-sample floor
    assert [(p[0], p.shape[0]) for p in pieces] == [(1600.0, 6400), (40000.0, 8000)]
    assert T.speaker_audio(audio, [(0.1, 0.5)], min_segment_s=0.5) == []


def test_options_are_validated_and_serialisable():
    assert T.TSimOptions().to_dict() == {
        "sample_rate": 16000, "checkpoint": "wavlm-large-sv-ecapa", "segment_mode": "concat",
        "missing_timestamps": "whole_audio", "min_segment_s": 0.0, "turn_breakdown": True,
    }
    for bad in ({"segment_mode": "x"}, {"missing_timestamps": "zero"}, {"sample_rate": 24000},
                {"min_segment_s": -1}):
        with pytest.raises(ValueError):
            T.TSimOptions(**bad)
    assert T.VERSION.startswith("2") and T.DIRECTION == "higher"


def test_too_short_or_bad_audio_is_an_omni_error():
    model = T.SpeakerVerifier.debug()
    with pytest.raises(OmniError, match="at least 400 samples"):
        model.embed(np.zeros(399, np.float32))
    with pytest.raises(OmniError, match="NaN"):
        model.embed(np.full(800, np.nan, np.float32))


# --------------------------------------------------------------------------------------------
# the debug twin end to end on sample-corpus audio


@pytest.fixture(scope="module")
def corpus_audio(sample_corpus):
    import pyarrow.parquet as pq

    from omni_core.media import load_audio

    out = sample_corpus.out
    audio = {f: load_audio(out / f, 16000) for f in
             ("talking/talk00_1p.mp4", "talking/talk01_1p.mp4", "talking/talk02_2p.mp4",
              "talking/talk03_2p.mp4")}
    turns = pq.read_table(sample_corpus.turns_table).to_pylist()
    segs: dict[str, list[tuple[float, float]]] = {}
    for t in turns:
        if t["file"] == "talking/talk02_2p.mp4" and t["source"] == "generated":
            segs.setdefault(t["speaker"], []).append((t["start_s"], t["end_s"]))
    return audio, segs


def test_debug_twin_single_person(corpus_audio):
    audio, _ = corpus_audio
    # the first 4 s of two different clips (debug weights: only the mechanics are checked)
    a, b = audio["talking/talk00_1p.mp4"][:64000], audio["talking/talk03_2p.mp4"][:64000]
    model = T.SpeakerVerifier.debug(seed=0)
    same = T.t_sim(a, a, model)
    assert same.score == pytest.approx(1.0, abs=1e-5)
    assert same.generated_s == pytest.approx(a.shape[0] / 16000)
    other = T.t_sim(a, b, model)
    assert -1.0 <= other.score <= 1.0
    again = T.t_sim(a, b, T.SpeakerVerifier.debug(seed=0))  # a fresh twin: same number
    assert again.score == other.score
    # a reference at another rate is resampled to 16 kHz first (soxr)
    from omni_core.media.audio import resample

    r24 = T.t_sim(a, resample(b, 16000, 24000), model, sample_rate=24000)
    assert r24.reference_s == pytest.approx(b.shape[0] / 16000, abs=1e-3)
    assert -1.0 <= r24.score <= 1.0


def test_debug_twin_multi_person(corpus_audio):
    audio, segs = corpus_audio
    gen = audio["talking/talk02_2p.mp4"]
    assert set(segs) == {"p0", "p1"} and len(segs["p0"]) == 2
    model = T.SpeakerVerifier.debug(seed=0)
    # p0's reference IS p0's part of the generated track -> exactly 1; p1 vs another clip
    p0_ref = np.concatenate(T.speaker_audio(gen, segs["p0"]))
    refs = {"p0": p0_ref, "p1": audio["talking/talk01_1p.mp4"]}
    res = T.t_sim_multi(gen, segs, refs, model)
    by = {s.speaker: s for s in res.speakers}
    assert by["p0"].score == pytest.approx(1.0, abs=1e-5) and by["p0"].n_segments == 2
    assert -1.0 <= by["p1"].score <= 1.0 and by["p1"].fallback is None
    assert res.score == pytest.approx((by["p0"].score + by["p1"].score) / 2)
    assert not res.used_fallback
    assert T.t_sim_multi(gen, segs, refs, T.SpeakerVerifier.debug(seed=0)) == res

    per = T.t_sim_multi(gen, segs, refs, model, T.TSimOptions(segment_mode="per_turn"))
    assert len(per.speakers[0].turn_scores) == 2
    assert per.speakers[0].score == pytest.approx(np.mean(per.speakers[0].turn_scores))
    # the per-turn breakdown: each caption turn in time order with its own cosine, the same in
    # both modes, and it never changes the speaker's score
    turns = by["p0"].turns
    assert [(a, b) for a, b, _ in turns] == sorted(segs["p0"])
    assert [v for _, _, v in turns] == pytest.approx(list(per.speakers[0].turn_scores))
    alone = [T.t_sim(T.speaker_audio(gen, [(a, b)])[0], p0_ref, model).score for a, b, _ in turns]
    assert [v for _, _, v in turns] == pytest.approx(alone, abs=1e-6)
    plain = T.t_sim_multi(gen, segs, refs, model, T.TSimOptions(turn_breakdown=False))
    assert plain.score == res.score and plain.speakers[0].turns == ()

    # no timestamps: documented fallback = the whole track against each reference, flagged
    fb = T.t_sim_multi(gen, None, refs, model)
    assert fb.used_fallback and all(s.fallback == "whole_audio" for s in fb.speakers)
    assert fb.speakers[1].score == pytest.approx(T.t_sim(gen, refs["p1"], model).score, abs=1e-6)
    partial = T.t_sim_multi(gen, {"p0": segs["p0"]}, refs,
                            model, T.TSimOptions(missing_timestamps="skip"))
    assert partial.speakers[1].score is None and partial.speakers[1].reason == "no timestamps"
    assert partial.score == pytest.approx(by["p0"].score)
    nothing = T.t_sim_multi(gen, {}, refs, model, T.TSimOptions(missing_timestamps="skip"))
    assert nothing.score is None


def test_debug_twin_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    m1, m2 = T.SpeakerVerifier.debug(seed=3), T.SpeakerVerifier.debug(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (k, v), (_, w) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    assert m1.describe().startswith("debug weights")
    m3 = copy.deepcopy(m1)
    wav = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    np.testing.assert_array_equal(m1.embed(wav), m3.embed(wav))
