"""PQ (AudioBox-Aesthetics): windowing math, window weights, the scoring path on the debug
twin end to end. The network and its checkpoint layout: ``tests/evaluation/models/
test_audiobox_aesthetics.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evaluation.metrics.pq import PQOptions, make_windows, score_pq, weighted_mean
from evaluation.models.audiobox_aesthetics import (
    AXES,
    RELEASED_TARGET_TRANSFORM,
    AudioboxAesthetics,
)
from omni_core.errors import OmniError
from omni_core.media import load_audio

SR = 16_000


@pytest.fixture(scope="module")
def model() -> AudioboxAesthetics:
    return AudioboxAesthetics.debug(seed=0)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


# ---- protocol math on hand-made inputs


def test_windows_hop_pad_and_weights() -> None:
    audio = np.arange(1, 26, dtype=np.float32)  # 25 "seconds" at 1 Hz
    w = make_windows(audio, sample_rate=1, window_s=10, hop_s=10)
    assert w.starts.tolist() == [0, 10, 20]
    assert w.valid.tolist() == [10, 10, 5]
    assert w.weights.tolist() == [1.0, 1.0, 0.5]
    assert w.wavs.shape == (3, 10)
    assert w.wavs[2].tolist() == [21, 22, 23, 24, 25, 0, 0, 0, 0, 0]
    assert w.sample_mask()[2].tolist() == [True] * 5 + [False] * 5
    assert w.sample_mask()[:2].all()


def test_windows_exact_multiple_has_no_empty_tail() -> None:
    w = make_windows(np.ones(20, np.float32), sample_rate=1, window_s=10, hop_s=10)
    assert w.starts.tolist() == [0, 10] and w.weights.tolist() == [1.0, 1.0]
    short = make_windows(np.ones(3, np.float32), sample_rate=1, window_s=10, hop_s=10)
    assert short.valid.tolist() == [3] and short.weights.tolist() == [0.3]


def test_windows_reject_empty_and_unpadded_tail() -> None:
    with pytest.raises(OmniError):
        make_windows(np.zeros(0, np.float32))
    with pytest.raises(OmniError):
        make_windows(np.ones(25, np.float32), sample_rate=1, pad_last=False)


def test_weighted_mean() -> None:
    assert weighted_mean(np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 0.5])) == 2.0


# ---- the network and the scoring path (debug twin)


def test_score_is_the_weighted_mean_of_independent_windows(model: AudioboxAesthetics) -> None:
    audio = _noise(5.0, seed=1)
    short = PQOptions(window_s=2.0, hop_s=2.0)  # the 10 s protocol in miniature
    res = score_pq(audio, model, short)
    assert res.window_starts_s == [0.0, 2.0, 4.0]
    assert res.window_weights == [1.0, 1.0, 0.5]
    for axis in AXES:
        scores = res.window_scores[axis]
        assert res.axes[axis] == pytest.approx((scores[0] + scores[1] + 0.5 * scores[2]) / 2.5)
    assert res.score == res.axes["PQ"]
    # each window is scored on its own: the last one equals the 1 s tail scored alone
    tail = score_pq(audio[4 * SR:], model, short)
    assert tail.window_weights == [0.5]
    assert tail.score == pytest.approx(res.window_scores["PQ"][2], abs=1e-5)
    # batching does not change the numbers
    one_by_one = score_pq(audio, model, dataclasses.replace(short, batch_size=1))
    for axis in AXES:
        np.testing.assert_allclose(one_by_one.window_scores[axis], res.window_scores[axis],
                                   rtol=0, atol=1e-5)
    assert score_pq(audio, model, dataclasses.replace(short, axis="CE")).score == res.axes["CE"]


def test_denormalisation_uses_the_target_transform(model: AudioboxAesthetics) -> None:
    moved = {a: (m + 10.0, s * 2.0) for a, (m, s) in RELEASED_TARGET_TRANSFORM.items()}
    other = AudioboxAesthetics.debug(seed=0, target_transform=moved)
    audio = _noise(3.0, seed=2)
    short = PQOptions(window_s=2.0, hop_s=2.0)
    a, b = score_pq(audio, model, short), score_pq(audio, other, short)
    for axis, (mean, std) in RELEASED_TARGET_TRANSFORM.items():
        normalised = (a.axes[axis] - mean) / std
        assert b.axes[axis] == pytest.approx(normalised * std * 2.0 + mean + 10.0, abs=1e-5)


def test_deterministic(model: AudioboxAesthetics) -> None:
    audio = _noise(3.0, seed=3)
    short = PQOptions(window_s=2.0, hop_s=2.0)
    first = score_pq(audio, model, short)
    assert score_pq(audio, model, short) == first
    assert score_pq(audio, AudioboxAesthetics.debug(seed=0), short) == first
    assert score_pq(audio, AudioboxAesthetics.debug(seed=1), short).score != first.score


def test_stereo_and_other_rates(model: AudioboxAesthetics) -> None:
    audio = _noise(2.0, seed=4)
    short = PQOptions(window_s=2.0, hop_s=2.0)
    mono = score_pq(audio, model, short)
    side = _noise(2.0, seed=9)
    stereo = score_pq(np.stack([audio + side, audio - side], axis=1), model, short)
    assert stereo.score == pytest.approx(mono.score, abs=1e-6)
    up = np.repeat(audio, 3)  # crude 48 kHz version of the same signal: resampled, not equal
    assert np.isfinite(score_pq(up, model, short, sample_rate=48_000).score)


def test_debug_end_to_end_on_sample_corpus(sample_corpus, model: AudioboxAesthetics) -> None:
    recording = load_audio(sample_corpus.out / "recording" / "sample.wav", SR)
    res = score_pq(recording, model)
    assert len(res.window_weights) == int(np.ceil(recording.size / (10 * SR)))
    assert all(np.isfinite(v) for v in res.axes.values())
    clip = load_audio(sample_corpus.out / "talking" / "talk00_1p.mp4", SR)
    short = score_pq(clip, model)
    assert len(short.window_weights) == 1
    assert short.window_weights[0] == pytest.approx(clip.size / (10 * SR))
    assert short.score == short.window_scores["PQ"][0]
