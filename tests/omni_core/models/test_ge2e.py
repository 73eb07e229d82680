"""Resemblyzer's GE2E speaker encoder from the wheel's ``pretrained.pt``, built by our own
module: equal to upstream's ``VoiceEncoder.embed_utterance``, and it tells real voices
apart."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from omni_core.errors import OmniError, WeightsError
from omni_core.media.audio import resample
from omni_core.models import packaged
from omni_core.models.ge2e import (
    PARTIAL_FRAMES,
    SAMPLE_RATE,
    GE2EEncoder,
    mel_frames,
    normalize_volume,
    partial_slices,
    sliding_windows,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder() -> GE2EEncoder:
    return GE2EEncoder.from_pretrained()


@pytest.fixture
def resemblyzer():
    """The upstream package, imported with a stand-in ``webrtcvad`` module.

    ``resemblyzer/audio.py`` imports webrtcvad at the top for ``trim_long_silences`` (part of
    ``preprocess_wav``), which the suite does not install (docs/dependencies.md).
    ``VoiceEncoder.embed_utterance`` and ``wav_to_mel_spectrogram`` never call it, so an
    empty module lets ``import resemblyzer`` succeed for this comparison only; the stand-in
    and every resemblyzer module are removed afterwards.
    """
    saved = {k: v for k, v in sys.modules.items() if k == "webrtcvad"}
    sys.modules["webrtcvad"] = types.ModuleType("webrtcvad")
    try:
        import resemblyzer

        yield resemblyzer
    finally:
        for name in [k for k in sys.modules if k == "resemblyzer" or
                     k.startswith("resemblyzer.") or k == "webrtcvad"]:
            del sys.modules[name]
        sys.modules.update(saved)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------------------------
# equality with upstream


def test_embeddings_equal_resemblyzer(encoder, resemblyzer, sample_recording, f5_voices):
    """The same waveform through upstream's VoiceEncoder and ours, after the volume
    normalisation of resemblyzer's preprocess_wav (its webrtcvad trim left out): utterances
    of about 10 s, one of 2 s and one shorter than a partial (zero padded). About 7 s of this
    test is librosa's and resemblyzer's first import."""
    upstream = resemblyzer.VoiceEncoder("cpu", verbose=False)
    wav = sample_recording.wav
    clips = [wav[6 * SAMPLE_RATE: 18 * SAMPLE_RATE], wav[8 * SAMPLE_RATE: 10 * SAMPLE_RATE],
             wav[15 * SAMPLE_RATE: int(15.9 * SAMPLE_RATE)], f5_voices.audio["town"]]
    for clip in clips:
        prepared = resemblyzer.normalize_volume(np.array(clip), -30, increase_only=True)
        np.testing.assert_allclose(normalize_volume(clip), prepared, rtol=1e-6, atol=1e-7)
        ref = upstream.embed_utterance(prepared)
        np.testing.assert_allclose(encoder.embed(clip, SAMPLE_RATE), ref, atol=1e-5)  # ~6e-8
    # the front end and the partial-utterance protocol on their own
    piece = np.asarray(wav[: 3 * SAMPLE_RATE + 77])
    ref_mel = resemblyzer.wav_to_mel_spectrogram(piece)
    np.testing.assert_allclose(mel_frames(piece), ref_mel, rtol=1e-4,
                               atol=1e-6 * float(ref_mel.max()))
    for n in (1, 400, 15999, 25600, 25601, 40000, 123457, 480000):
        for rate, cov in ((1.3, 0.75), (0.7, 0.5), (2.0, 1.0)):
            _, mel_slices = resemblyzer.VoiceEncoder.compute_partial_slices(n, rate, cov)
            assert partial_slices(n, rate, cov) == [(s.start, s.stop) for s in mel_slices]


def test_many_utterances_in_shared_batches_equal_one_at_a_time(encoder, f5_voices):
    """:meth:`GE2EEncoder.embed_many` (the espeak clone double's voice grid): each row is
    :meth:`GE2EEncoder.embed` of its utterance, whatever the lengths and the rate."""
    town = f5_voices.audio["town"]
    clips = [town, town[:SAMPLE_RATE // 2], town[3 * SAMPLE_RATE: 6 * SAMPLE_RATE]]
    many = encoder.embed_many(clips)
    assert many.shape == (3, 256) and many.dtype == np.float32
    for row, clip in zip(many, clips, strict=True):
        np.testing.assert_allclose(row, encoder.embed(clip), atol=1e-5)
    np.testing.assert_allclose(encoder.embed_many([resample(clips[2], SAMPLE_RATE, 8000)],
                                                  8000)[0],
                               encoder.embed(resample(clips[2], SAMPLE_RATE, 8000), 8000),
                               atol=1e-5)
    assert encoder.embed_many([]).shape == (0, 256)


def test_the_checkpoint_loads_strictly(encoder):
    paths, folder = GE2EEncoder.weight_paths()
    assert folder is not None and paths["pretrained.pt"].name == "pretrained.pt"
    assert encoder.lstm.num_layers == 3 and encoder.lstm.hidden_size == 256
    assert encoder.dim == 256 and not encoder.is_debug
    assert "resemblyzer 0.1.4" in encoder.describe()


# --------------------------------------------------------------------------------------------
# real voices


def test_same_speaker_scores_above_different_speakers_on_the_real_call(encoder,
                                                                        sample_recording):
    """Each of the two callers' own speech (per the RTTM, overlaps left out) split in two
    halves: halves of one speaker are closer than halves of different speakers."""
    rec = sample_recording
    frames = int(rec.duration * 100)
    mask = np.zeros((2, frames), dtype=bool)
    speakers = sorted({s for s, _, _ in rec.rttm})
    for s, a, b in rec.rttm:
        mask[speakers.index(s), int(a * 100): int(b * 100)] = True
    halves = {}
    for i in range(2):
        own = np.flatnonzero(mask[i] & ~mask[1 - i])
        for h, part in enumerate(np.array_split(own, 2)):
            audio = np.concatenate([rec.wav[f * 160:(f + 1) * 160] for f in part])
            halves[i, h] = encoder.embed(audio)
    same = [_cos(halves[i, 0], halves[i, 1]) for i in range(2)]
    different = [_cos(halves[0, a], halves[1, b]) for a in range(2) for b in range(2)]
    # measured: same 0.930, 0.918; different 0.792 - 0.843 (two telephone voices)
    assert min(same) > 0.88
    assert max(different) < 0.87
    assert min(same) - max(different) > 0.05


def test_four_real_voices_are_told_apart(encoder, f5_voices):
    """f5-tts's four example voices, each cut in halves."""
    emb = {}
    for name, audio in f5_voices.audio.items():
        half = len(audio) // 2
        emb[name, 0], emb[name, 1] = encoder.embed(audio[:half]), encoder.embed(audio[half:])
    names = list(f5_voices.audio)
    same = [_cos(emb[n, 0], emb[n, 1]) for n in names]
    different = [_cos(emb[a, i], emb[b, j]) for a in names for b in names if a < b
                 for i in range(2) for j in range(2)]
    # measured: same 0.83 - 0.92; different 0.44 - 0.66
    assert min(same) > 0.78
    assert max(different) < 0.72


# --------------------------------------------------------------------------------------------
# windows, inputs, debug twin


def test_windows_and_spans(encoder, sample_recording):
    wav = sample_recording.wav[: 10 * SAMPLE_RATE + 500]
    emb, times = encoder.embed_windows(wav, SAMPLE_RATE, window_s=1.6, hop_s=0.8)
    assert emb.shape == (len(times), 256) and times.shape == (len(times), 2)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert times[0, 0] == 0.0 and times[-1, 1] == pytest.approx(len(wav) / SAMPLE_RATE)
    assert np.allclose(np.diff(times[:-1, 0]), 0.8)
    assert np.allclose(times[:, 1] - times[:, 0], 1.6, atol=0.011)
    # a window is one GE2E partial over its frames of the whole clip's mel spectrogram
    mel = mel_frames(normalize_volume(wav))
    np.testing.assert_allclose(emb[2], encoder.embed_mels(mel[None, 160:160 + PARTIAL_FRAMES])[0],
                               atol=1e-6)
    spans = [(0.0, 0.005), (1.0, 2.5), (3.0, 4.5), (9.9, 10.5)]
    out = encoder.embed_spans(wav, SAMPLE_RATE, spans)
    assert out.shape == (4, 256) and np.isfinite(out).all()
    np.testing.assert_allclose(out[1], encoder.embed_spans(wav, SAMPLE_RATE, [(1.0, 2.5)])[0],
                               atol=1e-6)
    assert sliding_windows(2.0, 2.9, 1.5, 0.75) == [(2.0, 2.9)]
    assert sliding_windows(0.0, 3.0, 1.5, 0.75) == [(0.0, 1.5), (0.75, 2.25), (1.5, 3.0)]
    assert sliding_windows(0.0, 3.2, 1.5, 0.75)[-1] == pytest.approx((1.7, 3.2))
    with pytest.raises(OmniError):
        sliding_windows(0.0, 1.0, 0.0, 0.5)
    with pytest.raises(OmniError):
        encoder.embed_spans(wav, SAMPLE_RATE, [(2.0, 1.0)])


def test_inputs(encoder, sample_recording):
    clip = sample_recording.wav[8 * SAMPLE_RATE: 12 * SAMPLE_RATE]
    ref = encoder.embed(clip)
    assert _cos(encoder.embed(resample(clip, SAMPLE_RATE, 44100), 44100), ref) > 0.99
    np.testing.assert_allclose(encoder.embed(np.stack([clip, clip], axis=1)), ref, atol=1e-6)
    np.testing.assert_allclose(encoder.embed(clip * 0.1), ref, atol=1e-5)  # volume normalised
    assert np.isfinite(encoder.embed(np.zeros(SAMPLE_RATE, dtype=np.float32))).all()
    with pytest.raises(OmniError, match="empty"):
        encoder.embed(np.zeros(0, dtype=np.float32))
    with pytest.raises(OmniError, match="NaN"):
        encoder.embed(np.full(1000, np.inf, dtype=np.float32))


def test_debug_twin(sample_recording):
    a, b = GE2EEncoder.debug(seed=3), GE2EEncoder.debug(seed=3)
    clip = sample_recording.wav[8 * SAMPLE_RATE: 11 * SAMPLE_RATE]
    np.testing.assert_array_equal(a.embed(clip), b.embed(clip))
    assert a.dim == 16 and a.lstm.num_layers == 3 and "not meaningful" in a.describe()
    assert not np.allclose(a.embed(clip), GE2EEncoder.debug(seed=4).embed(clip))
    assert GE2EEncoder.random().dim == 256


def test_a_missing_wheel_is_one_clear_error(monkeypatch):
    real = packaged.importlib.util.find_spec
    monkeypatch.setattr(packaged.importlib.util, "find_spec",
                        lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    with pytest.raises(WeightsError, match=r"pip install resemblyzer==0\.1\.4"):
        GE2EEncoder.from_pretrained()
