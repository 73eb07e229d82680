"""PQ: AudioBox-Aesthetics production quality of the generated audio.

Reference protocol: ``audiobox_aesthetics.infer.AesPredictor.forward`` of
https://github.com/facebookresearch/audiobox-aesthetics (pip ``audiobox_aesthetics`` 0.0.4, source
revision 2618e9d), with its released ``checkpoint.pt``. Per audio clip:

1. mono, 16 kHz (upstream: ``torchaudio.functional.resample`` then a channel mean; here the
   caller decodes at 16 kHz through ``omni_core.media`` and :func:`score_pq` resamples with soxr
   if handed another rate);
2. 10 s windows with a 10 s hop (:func:`make_windows`); the last window is zero-padded to 10 s
   and its padding masked: the WavLM encoder ignores padded frames as attention keys and the
   per-axis mean pooling skips them;
3. the network predicts four normalised axes per window (CE content enjoyment, CU content
   usefulness, PC production complexity, PQ production quality); each is de-normalised with the
   target mean/std stored in the checkpoint (``pred * std + mean``);
4. the clip score of an axis is the mean over windows weighted by valid length / 10 s.

The paper reports PQ; all four axes are returned for debugging. The network and its checkpoint:
:mod:`evaluation.models.audiobox_aesthetics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from omni_core.errors import OmniError

from ..models.audiobox_aesthetics import AXES, SAMPLE_RATE, AudioboxAesthetics, Windows
from ..registry import Metric, MetricSpec, Output, register

__all__ = [
    "DIRECTION",
    "VERSION",
    "PQOptions",
    "PQResult",
    "make_windows",
    "score_pq",
    "weighted_mean",
]

VERSION = "1"
DIRECTION = "higher"


# --------------------------------------------------------------------------------------------
# protocol: windows and their weights


def make_windows(
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    window_s: float = 10.0,
    hop_s: float = 10.0,
    pad_last: bool = True,
) -> Windows:
    """Cut ``audio`` (mono) into windows starting every ``hop_s`` seconds.

    Every start in ``range(0, len(audio), hop)`` opens a window; a window running past the end
    keeps only the real samples, zero-padded to the full length (``pad_last``, upstream's
    ``pad_zero=True``; without it the clip must be an exact number of windows long, since the
    encoder runs windows as one batch).
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got {x.shape}")
    if x.size == 0:
        raise OmniError("PQ: the audio is empty")
    window = int(round(window_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    if window <= 0 or hop <= 0:
        raise ValueError("window_s and hop_s must be positive")
    starts = np.arange(0, x.size, hop)
    valid = np.minimum(x.size - starts, window)
    if not pad_last and (valid < window).any():
        raise OmniError(f"PQ: {x.size} samples are not whole {window}-sample windows and "
                        "pad_last is off")
    wavs = np.zeros((starts.size, window), dtype=np.float32)
    for row, (start, n) in enumerate(zip(starts, valid, strict=True)):
        wavs[row, :n] = x[start:start + n]
    return Windows(wavs=wavs, valid=valid.astype(np.int64), starts=starts.astype(np.int64),
                   window=window)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """sum(values * weights) / sum(weights): the clip score from its window scores."""
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    return float((v * w).sum() / w.sum())


# --------------------------------------------------------------------------------------------
# scoring


@dataclass(frozen=True)
class PQOptions:
    """Protocol choices of the PQ metric; defaults are upstream's ``AesPredictor``."""

    #: Axis reported as the metric value (the paper's "PQ"); all four are always computed.
    axis: str = "PQ"
    #: Window length in seconds (upstream ``window_size=10``).
    window_s: float = 10.0
    #: Distance between window starts in seconds (upstream ``hop_size=10``: no overlap).
    hop_s: float = 10.0
    #: Zero-pad and mask the last, shorter window (upstream ``pad_zero=True``).
    pad_last: bool = True
    #: Windows per forward pass; changes speed and memory, not the numbers (up to float
    #: rounding): every window is padded to the same length and masked on its own.
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {self.axis!r}")


@dataclass(frozen=True)
class PQResult:
    """The clip score and how it was reached."""

    score: float  # options.axis of the clip
    axes: dict[str, float]  # every axis of the clip (CE, CU, PC, PQ)
    window_starts_s: list[float] = field(default_factory=list)
    window_weights: list[float] = field(default_factory=list)  # valid length / window length
    window_scores: dict[str, list[float]] = field(default_factory=dict)  # de-normalised


def score_pq(
    audio: np.ndarray,
    model: AudioboxAesthetics,
    options: PQOptions | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> PQResult:
    """PQ (and CE/CU/PC) of one clip: ``audio`` is float in [-1, 1], (n,) or (n, channels).

    Channels are averaged; audio at another rate is resampled to 16 kHz (soxr), so decode at
    16 kHz to avoid a second resampling.
    """
    o = options or PQOptions()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        from omni_core.media.audio import resample

        x = resample(x, sample_rate, SAMPLE_RATE)
    windows = make_windows(x, SAMPLE_RATE, o.window_s, o.hop_s, o.pad_last)
    per_window = model.predict_windows(windows, o.batch_size)
    weights = windows.weights
    axes = {a: weighted_mean(per_window[a], weights) for a in AXES}
    return PQResult(
        score=axes[o.axis],
        axes=axes,
        window_starts_s=[float(s) / SAMPLE_RATE for s in windows.starts],
        window_weights=[float(w) for w in weights],
        window_scores={a: [float(v) for v in per_window[a]] for a in AXES},
    )


# --------------------------------------------------------------------------------------------
# registration with the evaluation harness


@register
class PQ(Metric):
    spec = MetricSpec(
        name="pq", version=VERSION, needs=("audio16k",),
        outputs=(Output("pq", "PQ", DIRECTION),),
        doc="AudioBox-Aesthetics production quality, 10 s windows weighted by valid length")
    Options = PQOptions

    def setup(self) -> None:
        self.model = self.load(AudioboxAesthetics)

    def compute(self, inp) -> dict:
        return {"pq": float(score_pq(inp.audio(SAMPLE_RATE), self.model, self.options).score)}
