"""Silero VAD (v6, from the ``silero-vad`` wheel): speech segments of a 16 kHz waveform.

The network runs as the wheel's ``silero_vad_16k_sequence.onnx`` on onnxruntime (CPU). Why
that file: it is upstream's batched export of the same 16 kHz model (its per-frame
probabilities match the streaming ``silero_vad.jit`` / ``silero_vad.onnx`` to 2e-6), so a
30 s clip is one onnxruntime call instead of 938 Python-level steps; onnxruntime is already a
suite dependency, releases the GIL and loads no pickled or TorchScript code. (The wheel's
``silero_vad_16k.safetensors`` holds older weights than the v6 models and is not used.)

Protocol (upstream ``get_speech_timestamps``): frames of 512 samples (32 ms), each fed with
the previous frame's last 64 samples as context (zeros first) and the LSTM state carried
across frames; the last frame is zero-padded. :func:`speech_timestamps` re-states upstream's
``get_speech_timestamps_from_probs`` for ``max_speech_duration_s = inf`` (its default; long
segments are not split): speech starts at a frame with probability >= ``threshold`` and ends
at the first frame below ``neg_threshold`` (default ``threshold - 0.15``) that begins a run of
at least ``min_silence_ms``; segments not longer than ``min_speech_ms`` are dropped; every
segment is padded by ``speech_pad_ms`` on both sides, or gaps shorter than twice the pad are
split in the middle. Input at another rate is resampled to 16 kHz (soxr; upstream would
decimate multiples of 16 kHz). The wrapper imports nothing from ``silero_vad``: importing it
sets torch's global thread count to 1.

On pyannote.audio's real telephone sample the segments match its RTTM with a detection
error rate of 0.016 (precision 0.990, recall 0.993, no collar; tests/omni_core/models/
test_vad.py).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Self

import numpy as np

from omni_core.errors import OmniError, WeightsError, first_line
from omni_core.media.audio import model_input

from .packaged import PackagedComponent

__all__ = ["MODEL_FILE", "SAMPLE_RATE", "SileroVAD", "SpeechSegment", "VadOptions",
           "frame_blocks", "silero_net", "speech_timestamps", "stft_basis"]

SAMPLE_RATE = 16000
FRAME = 512  # samples per probability (32 ms)
CONTEXT = 64  # samples of the previous frame prepended to each frame
MODEL_FILE = "data/silero_vad_16k_sequence.onnx"
#: frames per onnxruntime call (upstream's default: about 16 s); the LSTM state carries over
BLOCK_FRAMES = 512
#: LSTM width of the released model; the debug twin's is :data:`DEBUG_WIDTH`
WIDTH = 128
DEBUG_WIDTH = 16


@dataclass(frozen=True)
class VadOptions:
    """``get_speech_timestamps``'s parameters, with its defaults."""

    threshold: float = 0.5
    #: end-of-speech threshold; ``None``: ``max(threshold - 0.15, 0.01)``
    neg_threshold: float | None = None
    min_speech_ms: float = 250.0
    min_silence_ms: float = 100.0
    speech_pad_ms: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise OmniError(f"VAD threshold must be in (0, 1), got {self.threshold}")
        if min(self.min_speech_ms, self.min_silence_ms, self.speech_pad_ms) < 0:
            raise OmniError("VAD durations must not be negative")

    @property
    def end_threshold(self) -> float:
        return (max(self.threshold - 0.15, 0.01) if self.neg_threshold is None
                else self.neg_threshold)


class SpeechSegment(NamedTuple):
    """One stretch of speech, in seconds from the start of the waveform."""

    start_s: float
    end_s: float


def speech_timestamps(probs: np.ndarray, n_samples: int,
                      options: VadOptions | None = None) -> list[tuple[int, int]]:
    """Per-frame speech probabilities of a 16 kHz waveform of ``n_samples`` -> speech
    segments as ``(start, end)`` sample indices (upstream's state machine, see the module
    docstring)."""
    o = options or VadOptions()
    sr = SAMPLE_RATE
    min_speech = sr * o.min_speech_ms / 1000
    min_silence = sr * o.min_silence_ms / 1000
    pad = sr * o.speech_pad_ms / 1000
    on, off = o.threshold, o.end_threshold
    spans: list[list[int]] = []
    triggered, start, temp_end = False, 0, 0
    for i, p in enumerate(np.asarray(probs, dtype=np.float64)):
        cur = FRAME * i
        if p >= on:
            temp_end = 0
            if not triggered:
                triggered, start = True, cur
                continue
        if p < off and triggered:
            if not temp_end:
                temp_end = cur
            if cur - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                spans.append([start, temp_end])
            triggered, temp_end = False, 0
    if triggered and n_samples - start > min_speech:
        spans.append([start, n_samples])
    for i, span in enumerate(spans):
        if i == 0:
            span[0] = int(max(0, span[0] - pad))
        if i == len(spans) - 1:
            span[1] = int(min(n_samples, span[1] + pad))
            continue
        nxt = spans[i + 1]
        gap = nxt[0] - span[1]
        if gap < 2 * pad:
            span[1] += int(gap // 2)
            nxt[0] = int(max(0, nxt[0] - gap // 2))
        else:
            span[1] = int(min(n_samples, span[1] + pad))
            nxt[0] = int(max(0, nxt[0] - pad))
    return [(a, b) for a, b in spans]


def frame_blocks(audio: np.ndarray, block_frames: int = BLOCK_FRAMES):
    """Yield ``(frames, CONTEXT + FRAME)`` float32 blocks: each frame with the previous
    frame's last ``CONTEXT`` samples in front (zeros for the first), the last zero-padded."""
    n_frames = -(-len(audio) // FRAME)
    padded = np.zeros(n_frames * FRAME + CONTEXT, dtype=np.float32)
    padded[CONTEXT:CONTEXT + len(audio)] = audio
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        idx = (first + np.arange(count))[:, None] * FRAME + np.arange(CONTEXT + FRAME)[None]
        yield padded[idx]


class SileroVAD(PackagedComponent):
    """Silero VAD v6 on onnxruntime: :meth:`probabilities` per 32 ms frame and speech
    :meth:`segments`. Runs on the CPU whatever ``device`` says (the model has 300k weights)."""

    package_dist = "silero-vad"
    package_module = "silero_vad"
    package_pin = "6.2.3"
    package_files = (MODEL_FILE,)

    def __init__(self, model: str | bytes) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1  # as upstream: the work is sequential (an LSTM)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(model, sess_options=so,
                                            providers=["CPUExecutionProvider"])
        names = [i.name for i in self.session.get_inputs()]
        if names != ["input", "h", "c"]:
            raise WeightsError(f"not Silero VAD's sequence model (inputs {names}, expected "
                               f"input, h, c)")
        self.width = int(self.session.get_inputs()[1].shape[-1])

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        try:
            return cls(str(paths[MODEL_FILE]))
        except WeightsError:
            raise
        except Exception as exc:
            raise WeightsError(f"{paths[MODEL_FILE]}: {first_line(exc)}") from exc

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"width": WIDTH}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        """The same network (:func:`silero_net`) with seeded random weights, exported to ONNX
        in memory with the sequence model's inputs and outputs."""
        return cls(_export(silero_net(int(kw.get("width", DEBUG_WIDTH)))))

    # ---- inference

    def probabilities(self, audio_16k: np.ndarray) -> np.ndarray:
        """Speech probability of every 512-sample frame of 16 kHz mono audio (float32)."""
        x = np.ascontiguousarray(audio_16k, dtype=np.float32)
        h = np.zeros((1, 1, self.width), dtype=np.float32)
        c = np.zeros_like(h)
        out = [np.zeros(0, dtype=np.float32)]
        for block in frame_blocks(x):
            p, h, c = self.session.run(["speech_probs", "hn", "cn"],
                                       {"input": block, "h": h, "c": c})
            out.append(np.asarray(p, dtype=np.float32).reshape(-1))
        return np.concatenate(out)

    def segments(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
                 options: VadOptions | None = None) -> list[SpeechSegment]:
        """Speech segments of ``waveform`` (mono, or (n, channels) averaged), in seconds."""
        x = model_input(waveform, sample_rate, SAMPLE_RATE, "VAD")
        if len(x) == 0:
            return []
        spans = speech_timestamps(self.probabilities(x), len(x), options)
        return [SpeechSegment(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in spans]


# --------------------------------------------------------------------------------------------
# the network, re-stated in torch for the debug twin (and checked against the release's
# weights in the tests)


def _silero_net_class() -> type:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SileroNet(nn.Module):
        """Silero VAD v6 (16 kHz): STFT as a fixed conv (:func:`stft_basis`, hop 128, right
        reflect-pad 64) -> magnitude -> 4 conv+ReLU (129-128-64-64-width, strides
        1, 2, 2, 1) -> one frame per 576 samples -> LSTM across frames -> ReLU -> 1x1 conv ->
        sigmoid. Parameter names are the sequence ONNX model's initializer names."""

        def __init__(self, width: int = WIDTH) -> None:
            super().__init__()
            self.stft = nn.Module()
            self.stft.register_buffer("forward_basis_buffer", stft_basis())
            self.encoder = nn.ModuleList([
                nn.Conv1d(129, width, 3, padding=1), nn.Conv1d(width, 64, 3, 2, padding=1),
                nn.Conv1d(64, 64, 3, 2, padding=1), nn.Conv1d(64, width, 3, padding=1)])
            self.lstm = nn.LSTM(width, width)
            self.output = nn.Conv1d(width, 1, 1)

        def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
            y = F.pad(x[:, None], (0, 64), mode="reflect")
            y = F.conv1d(y, self.stft.forward_basis_buffer, stride=128)
            y = torch.sqrt(y[:, :129] ** 2 + y[:, 129:] ** 2)
            for conv in self.encoder:
                y = F.relu(conv(y))
            seq, (hn, cn) = self.lstm(y[:, :, 0][:, None], (h, c))  # (frames, 1, width)
            p = torch.sigmoid(self.output(F.relu(seq[:, 0])[:, :, None]))
            return p.reshape(-1), hn, cn

    return SileroNet


def stft_basis() -> Any:
    """The fixed STFT of the release (258, 1, 256): rows ``cos(2 pi k n / 256) w[n]`` then
    ``-sin(...) w[n]`` for k = 0..128, ``w`` the periodic Hann window of 256 taps."""
    import torch

    n = torch.arange(256, dtype=torch.float64)
    k = torch.arange(129, dtype=torch.float64)[:, None]
    w = torch.hann_window(256, periodic=True, dtype=torch.float64)
    ang = 2 * torch.pi * k * n / 256
    return torch.cat([torch.cos(ang) * w, -torch.sin(ang) * w]).float()[:, None]


def silero_net(width: int = WIDTH) -> Any:
    """A randomly initialised :class:`SileroNet` (torch is imported only here)."""
    return _silero_net_class()(width).eval()


def _export(net: Any) -> bytes:
    """``net`` as an ONNX model with the sequence model's signature (input (frames, 576),
    h, c (1, 1, width) -> speech_probs, hn, cn)."""
    import torch

    w = net.lstm.hidden_size
    example = (torch.zeros(3, CONTEXT + FRAME), torch.zeros(1, 1, w), torch.zeros(1, 1, w))
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, not removed;
        warnings.simplefilter("ignore")  # the dynamo one needs onnxscript, not a dependency
        torch.onnx.export(net, example, buf, input_names=["input", "h", "c"],
                          output_names=["speech_probs", "hn", "cn"],
                          dynamic_axes={"input": {0: "frames"}, "speech_probs": {0: "frames"}},
                          opset_version=13, dynamo=False)
    return buf.getvalue()
