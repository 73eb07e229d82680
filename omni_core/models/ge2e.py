"""Resemblyzer's GE2E speaker encoder (``resemblyzer/pretrained.pt`` from the wheel).

The network (Wan et al., "Generalized End-to-End Loss for Speaker Verification", as trained
by Resemblyzer): a 3-layer LSTM (40 -> 256) over 40-channel mel frames, its last hidden
state through a 256 x 256 linear layer, ReLU, L2 normalisation. Built here from our own
module code; the checkpoint is read with ``torch.load(weights_only=True)`` (its
``model_state``; the GE2E loss's ``similarity_weight``/``similarity_bias`` are training-only
and dropped). Nothing is imported from ``resemblyzer`` (it needs ``webrtcvad``, which the
suite does not install).

Protocol, as resemblyzer 0.1.4's ``VoiceEncoder.embed_utterance`` and ``audio.py``:

- 16 kHz mono; :meth:`GE2EEncoder.embed` first raises quiet audio to -30 dBFS
  (``normalize_volume(wav, -30, increase_only=True)``); resemblyzer's ``preprocess_wav`` then
  also cuts long silences with webrtcvad, which is left out here (callers pass speech);
- power mel spectrogram as librosa computes it: 400-sample (25 ms) periodic Hann windows,
  160-sample (10 ms) hop, centred frames with zero padding, 40 Slaney mel bands
  (:func:`mel_frames`, numpy);
- partial utterances of 160 frames (1.6 s) every ``round(16000 / rate / 160)`` frames
  (``rate`` 1.3 per second: every 77 frames); the last partial is kept if at least
  ``min_coverage`` (0.75) of it is audio, the waveform zero-padded to the last partial's end;
- the utterance embedding is the mean of the partial embeddings, L2-normalised.

:meth:`GE2EEncoder.embed_many` embeds many utterances with their partials in shared batches;
:meth:`GE2EEncoder.embed_spans` and :meth:`GE2EEncoder.embed_windows` give one embedding
per time span or sliding window (for diarization): the mel spectrogram of the whole waveform
once, then each span's frames through the network as one partial.

The batches are small: on a busy machine one torch intra-op thread is often several times
faster than many (``torch.set_num_threads`` is process-wide, so the wrapper leaves it to the
caller).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from omni_core.errors import OmniError, WeightsError
from omni_core.media.audio import model_input, to_mono
from omni_core.weights import load_state_dict_strict, load_torch_checkpoint

from .packaged import PackagedComponent

__all__ = ["GE2EEncoder", "MEL_CHANNELS", "PARTIAL_FRAMES", "SAMPLE_RATE", "mel_filterbank",
           "mel_frames", "normalize_volume", "partial_slices", "sliding_windows"]

SAMPLE_RATE = 16000
MEL_CHANNELS = 40
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s
HIDDEN = 256
EMBEDDING = 256
LAYERS = 3
TARGET_DBFS = -30.0
CHECKPOINT = "pretrained.pt"
#: checkpoint keys of the GE2E loss, not of the encoder
TRAINING_ONLY = ("similarity_weight", "similarity_bias")
#: debug twin: the same front end and layer count, 16 units
DEBUG_HIDDEN = 16
_INT16_MAX = 2**15 - 1


def normalize_volume(wav: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Scale ``wav`` up to ``target_dbfs`` RMS (int16 full scale); louder audio is kept as is
    (resemblyzer's ``normalize_volume(..., increase_only=True)``). Silence stays silence."""
    x = np.asarray(wav, dtype=np.float32)
    rms = float(np.sqrt(np.mean((x.astype(np.float64) * _INT16_MAX) ** 2))) if x.size else 0.0
    if rms <= 0.0:
        return x
    change = target_dbfs - 20 * np.log10(rms / _INT16_MAX)
    return x if change < 0 else (x * 10 ** (change / 20)).astype(np.float32)


def mel_filterbank(n_mels: int = MEL_CHANNELS, n_fft: int = N_FFT,
                   sr: int = SAMPLE_RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on the Slaney mel scale (linear below
    1 kHz, logarithmic above), each normalised to unit area: librosa's ``filters.mel``
    defaults (``htk=False``, ``norm="slaney"``, 0 Hz to Nyquist)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asarray(hz, dtype=np.float64)
        return np.where(hz >= min_log_hz,
                        min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep,
                        hz / f_sp)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)),
                        f_sp * mel)

    fft_hz = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_hz = to_hz(np.linspace(to_mel(0.0), to_mel(sr / 2), n_mels + 2))
    width = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def mel_frames(wav_16k: np.ndarray) -> np.ndarray:
    """(frames, 40) float32 power mel spectrogram, frame ``i`` centred on sample ``160 i``:
    resemblyzer's ``wav_to_mel_spectrogram`` (librosa's ``melspectrogram`` with n_fft 400, hop
    160, periodic Hann window, centred frames zero-padded by 200, power 2), re-stated in numpy
    because librosa's first call costs seconds of lazy imports and JIT compilation."""
    x = np.asarray(wav_16k, dtype=np.float32)
    padded = np.pad(x, (N_FFT // 2, N_FFT // 2))
    n_frames = 1 + len(x) // HOP
    idx = np.arange(n_frames)[:, None] * HOP + np.arange(N_FFT)[None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    spec = np.fft.rfft(padded[idx] * window, axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    return (power @ _filterbank().T).astype(np.float32)


@functools.cache
def _filterbank() -> np.ndarray:
    return mel_filterbank()


def partial_slices(n_samples: int, rate: float = 1.3,
                   min_coverage: float = 0.75) -> list[tuple[int, int]]:
    """Frame ranges ``(start, stop)`` of the partial utterances of ``n_samples`` of audio
    (resemblyzer's ``compute_partial_slices``; a range may run past the audio)."""
    if not 0 < min_coverage <= 1:
        raise OmniError(f"min_coverage must be in (0, 1], got {min_coverage}")
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / rate) / HOP))
    if not 0 < step <= PARTIAL_FRAMES:
        raise OmniError(f"partial rate {rate} out of range "
                        f"({SAMPLE_RATE / (HOP * PARTIAL_FRAMES)} .. {SAMPLE_RATE / HOP / 0.5})")
    steps = max(1, n_frames - PARTIAL_FRAMES + step + 1)
    out = [(i, i + PARTIAL_FRAMES) for i in range(0, steps, step)]
    start = out[-1][0] * HOP
    coverage = (n_samples - start) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(out) > 1:
        out = out[:-1]
    return out


class GE2EEncoder(PackagedComponent, nn.Module):
    """GE2E speaker encoder: (batch, frames, 40) mel -> (batch, 256) L2-normalised
    embeddings (non-negative after the ReLU, so cosine similarities lie in [0, 1])."""

    package_dist = "resemblyzer"
    package_module = "resemblyzer"
    package_pin = "0.1.4"
    package_files = (CHECKPOINT,)
    #: cosine at or above which two utterances count as one speaker (the cross-pair clone
    #: check's default): the equal-error point of the real voices, rounded. Measured by
    #: ``python -m bench.clone_check`` (GE2E cosines, min / median / max, n pairs):
    #:
    #: - real voices (f5-tts's 4 example prompts and pyannote's 2 telephone callers, pieces of
    #:   2.5 - 3.4 s): same speaker 0.768 / 0.834 / 0.906 (17), other 0.338 / 0.469 / 0.784
    #:   (119; above 0.70 only the two callers); equal error at 0.768 (rate 0.01);
    #: - the sample corpus's espeak-ng voices (one truth turn of 1.7 - 2.6 s each): same
    #:   0.722 / 0.824 / 0.905 (49), other 0.412 / 0.550 / 0.822 (104; above 0.77 only the two
    #:   female voices en-gb-scotland+f3 and en-us+f4); equal error at 0.756 (rate 0.10);
    #: - the espeak double's clones of those turns (the espeak voice nearest each prompt by
    #:   this encoder): vs their prompt 0.763 / 0.814 / 0.878 (18), vs the other voices
    #:   0.407 / 0.555 / 0.899 (208); its clones of the real voices vs their prompt 0.432 /
    #:   0.541 / 0.640 (17).
    #:
    #: At 0.77: real voices 1/17 same-speaker pairs rejected, 1/119 others accepted (the
    #: telephone pair); corpus voices 8/49 and 7/104; the espeak clones of corpus turns 1/18
    #: rejected and 24/208 others accepted, of real voices 17/17 rejected.
    same_speaker_threshold: ClassVar[float] = 0.77

    def __init__(self, hidden: int = HIDDEN, embedding: int = EMBEDDING) -> None:
        nn.Module.__init__(self)
        self.lstm = nn.LSTM(MEL_CHANNELS, hidden, LAYERS, batch_first=True)
        self.linear = nn.Linear(hidden, embedding)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.linear.weight.device

    @property
    def dim(self) -> int:
        return self.linear.out_features

    # ---- construction

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        path = paths[CHECKPOINT]
        ckpt = load_torch_checkpoint(path)
        state = ckpt.get("model_state")
        if not isinstance(state, Mapping):
            raise WeightsError(f"{path}: no 'model_state' (not resemblyzer's pretrained.pt)")
        model = cls()
        load_state_dict_strict(model, {k: v for k, v in state.items()
                                       if k not in TRAINING_ONLY}, f"{path} (GE2E)")
        return model.to(device).eval()

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"hidden": HIDDEN}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        hidden = int(kw.get("hidden", DEBUG_HIDDEN))
        return cls(hidden=hidden, embedding=hidden).to(device).eval()

    # ---- the network

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        # an all-zero ReLU output (possible with random weights) stays zero, not NaN
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    @torch.inference_mode()
    def embed_mels(self, mels: np.ndarray, batch: int = 64) -> np.ndarray:
        """(n, frames, 40) mel partials -> (n, dim) embeddings (float32)."""
        out = [np.zeros((0, self.dim), dtype=np.float32)]
        for i in range(0, len(mels), batch):
            x = torch.from_numpy(np.ascontiguousarray(mels[i:i + batch])).to(self.device)
            out.append(self(x).float().cpu().numpy())
        return np.concatenate(out)

    # ---- waveforms

    def _prepare(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        x = model_input(waveform, sample_rate, SAMPLE_RATE, "GE2E")
        if len(x) == 0:
            raise OmniError("GE2E needs audio, got an empty waveform")
        return normalize_volume(x)

    def embed(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, *,
              rate: float = 1.3, min_coverage: float = 0.75) -> np.ndarray:
        """One utterance -> its (dim,) embedding: the L2-normalised mean of its partials."""
        x = self._prepare(waveform, sample_rate)
        return self.embed_utterance(x, rate=rate, min_coverage=min_coverage)

    def embed_utterance(self, wav_16k: np.ndarray, *, rate: float = 1.3,
                        min_coverage: float = 0.75) -> np.ndarray:
        """``VoiceEncoder.embed_utterance`` on an already prepared 16 kHz waveform."""
        return _mean_embedding(self.embed_mels(_partials(wav_16k, rate, min_coverage)))

    def embed_many(self, waveforms: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE, *,
                   rate: float = 1.3, min_coverage: float = 0.75) -> np.ndarray:
        """:meth:`embed` of each utterance, (n, dim), their partials through the network in
        shared batches (on one CPU thread about 2.5 ms a partial in batches of 64 against
        10 ms one at a time)."""
        parts = [_partials(self._prepare(w, sample_rate), rate, min_coverage)
                 for w in waveforms]
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        flat = self.embed_mels(np.concatenate(parts))
        bounds = np.cumsum([0] + [len(p) for p in parts])
        return np.stack([_mean_embedding(flat[a:b])
                         for a, b in zip(bounds[:-1], bounds[1:], strict=True)])

    def embed_spans(self, waveform: np.ndarray, sample_rate: int,
                    spans: Sequence[tuple[float, float]]) -> np.ndarray:
        """One embedding per ``(start_s, end_s)`` span of the waveform: (n, dim). The mel
        spectrogram is computed once for the whole waveform, after one volume normalisation
        (so spans keep their relative loudness); each span's frames go through the network
        as one partial (spans of equal length share a batch). A span shorter than 10 ms
        gets one frame."""
        x = self._prepare(waveform, sample_rate)
        mel = mel_frames(x)
        ranges = []
        for a, b in spans:
            if not b >= a >= 0:
                raise OmniError(f"GE2E span ({a}, {b}) is not a time range")
            first = min(int(round(a * SAMPLE_RATE / HOP)), len(mel) - 1)
            ranges.append((first, max(first + 1, min(int(round(b * SAMPLE_RATE / HOP)),
                                                     len(mel)))))
        out = np.zeros((len(ranges), self.dim), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, (a, b) in enumerate(ranges):
            by_length.setdefault(b - a, []).append(i)
        for idx in by_length.values():
            out[idx] = self.embed_mels(np.stack([mel[slice(*ranges[i])] for i in idx]))
        return out

    def embed_windows(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
                      window_s: float = 1.6, hop_s: float = 0.8
                      ) -> tuple[np.ndarray, np.ndarray]:
        """One embedding per sliding window (:meth:`embed_spans`): ``(embeddings (n, dim),
        times (n, 2))``, times in seconds. Windows start every ``hop_s``; the last one is
        moved back to end with the audio; audio shorter than a window is one window."""
        duration = len(to_mono(waveform)) / sample_rate
        times = np.array(sliding_windows(0.0, duration, window_s, hop_s), dtype=np.float64)
        return self.embed_spans(waveform, sample_rate, times.tolist()), times


def _partials(wav_16k: np.ndarray, rate: float, min_coverage: float) -> np.ndarray:
    """(n, 160, 40) mel partials of a prepared 16 kHz waveform (:func:`partial_slices`, the
    waveform zero-padded to the last partial's end)."""
    slices = partial_slices(len(wav_16k), rate, min_coverage)
    end = slices[-1][1] * HOP
    x = np.asarray(wav_16k, dtype=np.float32)
    if end >= len(x):
        x = np.pad(x, (0, end - len(x)))
    mel = mel_frames(x)
    return np.stack([mel[a:b] for a, b in slices])


def _mean_embedding(partials: np.ndarray) -> np.ndarray:
    mean = partials.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def sliding_windows(start_s: float, end_s: float, window_s: float,
                    hop_s: float) -> list[tuple[float, float]]:
    """Windows of ``window_s`` every ``hop_s`` from ``start_s``, the last one moved back to
    end at ``end_s``; a stretch shorter than a window is one window over all of it."""
    if window_s <= 0 or hop_s <= 0:
        raise OmniError(f"window_s and hop_s must be positive, got {window_s}, {hop_s}")
    if end_s - start_s <= window_s:
        return [(start_s, end_s)]
    n = int(np.floor((end_s - start_s - window_s) / hop_s + 1e-9)) + 1
    out = [(start_s + i * hop_s, start_s + i * hop_s + window_s) for i in range(n)]
    if out[-1][1] < end_s - 1e-9:
        out.append((end_s - window_s, end_s))
    return out
