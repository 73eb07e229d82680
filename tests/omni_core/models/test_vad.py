"""Silero VAD from the silero-vad wheel: equal to upstream's ``get_speech_timestamps`` on real
speech, the network re-stated for the debug twin, and input handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omni_core.errors import OmniError, WeightsError
from omni_core.media.audio import resample
from omni_core.models import packaged
from omni_core.models.vad import (
    FRAME,
    MODEL_FILE,
    SAMPLE_RATE,
    SileroVAD,
    SpeechSegment,
    VadOptions,
    silero_net,
    speech_timestamps,
    stft_basis,
)

#: non-default parameters, to check they are applied as upstream applies them
OTHER = dict(threshold=0.3, min_speech_duration_ms=500, min_silence_duration_ms=300,
             speech_pad_ms=100)
OTHER_OPTIONS = VadOptions(threshold=0.3, min_speech_ms=500, min_silence_ms=300,
                           speech_pad_ms=100)


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD.from_pretrained()


@pytest.fixture(scope="module")
def upstream():
    """The silero_vad package. Importing it sets torch's thread count to 1 (its per-frame
    loop is slow with more on a busy machine); kept for this module, restored after it."""
    threads = torch.get_num_threads()
    try:
        import silero_vad

        torch.set_num_threads(1)
        yield silero_vad
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def streaming(upstream):
    """Upstream's default model: the TorchScript streaming VAD (``load_silero_vad()``)."""
    return upstream.load_silero_vad()


def _samples(segments: list[SpeechSegment]) -> list[tuple[int, int]]:
    return [(round(s.start_s * SAMPLE_RATE), round(s.end_s * SAMPLE_RATE)) for s in segments]


def _upstream(upstream, model, audio: np.ndarray, **kw) -> list[tuple[int, int]]:
    out = upstream.get_speech_timestamps(torch.from_numpy(np.array(audio)), model, **kw)
    return [(d["start"], d["end"]) for d in out]


# --------------------------------------------------------------------------------------------
# equality with upstream


def test_segments_equal_upstream_on_the_real_recording(vad, upstream, streaming,
                                                       sample_recording):
    wav = sample_recording.wav
    ours = vad.segments(wav, SAMPLE_RATE)
    assert _samples(ours) == _upstream(upstream, streaming, wav)
    # and upstream's batched path on the very file we load
    seq = upstream.load_silero_vad(sequence=True)
    assert _samples(ours) == [(d["start"], d["end"])
                              for d in upstream.get_speech_timestamps_sequence(wav, seq)]
    # the sample: speech from 6.7 s (RTTM), four stretches; near-perfect detection
    assert len(ours) == 4 and 6.6 < ours[0].start_s < 6.8 and ours[-1].end_s == 30.0
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.detection import DetectionErrorRate

    ref, hyp = Annotation(), Annotation()
    for i, (speaker, a, b) in enumerate(sample_recording.rttm):
        ref[Segment(a, b), i] = speaker
    for i, s in enumerate(ours):
        hyp[Segment(s.start_s, s.end_s), i] = "speech"
    # measured 0.016 (precision 0.990, recall 0.993), no collar
    assert abs(DetectionErrorRate(collar=0.0)(ref, hyp)) < 0.03


def test_segments_equal_upstream_on_other_voices(vad, upstream, streaming, f5_voices):
    for audio in f5_voices.audio.values():
        assert _samples(vad.segments(audio)) == _upstream(upstream, streaming, audio)
        assert _samples(vad.segments(audio, options=OTHER_OPTIONS)) == _upstream(
            upstream, streaming, audio, **OTHER)


def test_probabilities_match_the_streaming_model(vad, streaming, sample_recording):
    wav = sample_recording.wav[: 12 * SAMPLE_RATE + 100]  # ends in a partial frame
    streaming.reset_states()
    x = torch.from_numpy(np.array(wav))
    ref = []
    with torch.no_grad():
        for i in range(0, len(x), FRAME):
            chunk = torch.nn.functional.pad(x[i:i + FRAME], (0, max(0, i + FRAME - len(x))))
            ref.append(streaming(chunk, SAMPLE_RATE).item())
    ours = vad.probabilities(wav)
    assert ours.shape == (len(ref),)
    np.testing.assert_allclose(ours, ref, atol=1e-5)  # measured 2e-6


def test_state_machine_equals_upstream_on_random_probabilities(upstream):
    """speech_timestamps against upstream's get_speech_timestamps_from_probs on smoothed
    random probability tracks, with default and other parameters and odd lengths."""
    rng = np.random.default_rng(0)
    for case in range(150):
        n = int(rng.integers(1, 400))
        walk = np.cumsum(rng.normal(0, 0.35, n))
        probs = (1 / (1 + np.exp(-walk))).astype(np.float32)
        n_samples = n * FRAME - int(rng.integers(0, FRAME))
        ours_opts, up_opts = (VadOptions(), {}) if case % 2 else (OTHER_OPTIONS, OTHER)
        ref = upstream.get_speech_timestamps_from_probs(
            [float(p) for p in probs], audio_length_samples=n_samples, **up_opts)
        assert speech_timestamps(probs, n_samples, ours_opts) == [
            (d["start"], d["end"]) for d in ref], case


# --------------------------------------------------------------------------------------------
# the network behind the debug twin is the release's


def _release_state(path) -> dict[str, torch.Tensor]:
    """The sequence model's initializers in :func:`silero_net`'s names (ONNX LSTM gates are
    i, o, f, c; torch's i, f, g, o)."""
    import onnx
    from onnx import numpy_helper

    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
            for i in onnx.load(str(path)).graph.initializer}
    lstm = {k: v for k, v in init.items() if k.startswith("onnx::LSTM")}
    w, r, b = (lstm[k] for k in sorted(lstm, key=lambda k: int(k.rsplit("_", 1)[1])))

    def gates(t: torch.Tensor) -> torch.Tensor:
        i, o, f, c = t.chunk(4, dim=0)
        return torch.cat([i, f, c, o])

    state = {k: v for k, v in init.items() if not k.startswith("onnx::")}
    state["lstm.weight_ih_l0"] = gates(w[0])
    state["lstm.weight_hh_l0"] = gates(r[0])
    state["lstm.bias_ih_l0"] = gates(b[0, :512])
    state["lstm.bias_hh_l0"] = gates(b[0, 512:])
    return state


def test_the_release_runs_in_our_torch_network(vad, sample_recording):
    paths, _ = SileroVAD.weight_paths()
    state = _release_state(paths[MODEL_FILE])
    np.testing.assert_allclose(stft_basis().numpy(),
                               state["stft.forward_basis_buffer"].numpy(), atol=1e-6)
    net = silero_net()
    net.load_state_dict(state, strict=True)
    from omni_core.models.vad import frame_blocks

    block = next(frame_blocks(sample_recording.wav[: 10 * SAMPLE_RATE]))
    with torch.no_grad():
        ours, _, _ = net(torch.from_numpy(block), torch.zeros(1, 1, 128), torch.zeros(1, 1, 128))
    np.testing.assert_allclose(ours.numpy(), vad.probabilities(
        sample_recording.wav[: 10 * SAMPLE_RATE]), atol=1e-5)


def test_debug_twin_is_seeded_and_says_so(sample_recording):
    a, b, c = SileroVAD.debug(seed=0), SileroVAD.debug(seed=0), SileroVAD.debug(seed=1)
    wav = sample_recording.wav[: 5 * SAMPLE_RATE]
    pa = a.probabilities(wav)
    np.testing.assert_array_equal(pa, b.probabilities(wav))
    assert not np.allclose(pa, c.probabilities(wav))
    assert pa.shape == (-(-len(wav) // FRAME),) and ((pa >= 0) & (pa <= 1)).all()
    assert a.width == 16 and "not meaningful" in a.describe()
    assert SileroVAD.random().width == 128
    assert "silero-vad 6.2.3" in SileroVAD.from_pretrained().describe()


# --------------------------------------------------------------------------------------------
# inputs


def test_other_rates_channels_and_empty_input(vad, sample_recording):
    wav = sample_recording.wav
    ref = vad.segments(wav)
    at48 = vad.segments(resample(wav, SAMPLE_RATE, 48000), 48000)
    assert len(at48) == len(ref)
    shift = np.abs(np.array(at48) - np.array(ref))
    assert shift.max() < 0.05
    assert vad.segments(np.stack([wav, wav], axis=1)) == ref
    assert vad.segments(np.zeros(0, dtype=np.float32)) == []
    assert vad.segments(np.zeros(SAMPLE_RATE, dtype=np.float32)) == []
    with pytest.raises(OmniError, match="NaN"):
        vad.segments(np.full(1000, np.nan, dtype=np.float32))
    with pytest.raises(OmniError, match="threshold"):
        VadOptions(threshold=1.5)


def test_a_missing_wheel_is_one_clear_error(monkeypatch):
    real = packaged.importlib.util.find_spec
    monkeypatch.setattr(packaged.importlib.util, "find_spec",
                        lambda name, *a: None if name == "silero_vad" else real(name, *a))
    with pytest.raises(WeightsError, match=r"pip install silero-vad==6\.2\.3") as info:
        SileroVAD.from_pretrained()
    assert "\n" not in str(info.value)
    with pytest.raises(WeightsError):
        SileroVAD.check_weights("/nonexistent")
    SileroVAD.check_weights("debug")  # the debug twin needs no file
