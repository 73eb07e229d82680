"""Audio loading through ffmpeg: any container, resampled, downmixed, bounded by a timeout."""

from __future__ import annotations

import os

import numpy as np

from ..errors import MediaError
from .ffmpeg import binary, run

DEFAULT_TIMEOUT_S = 120.0


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    *,
    mono: bool = True,
    start_s: float | None = None,
    duration_s: float | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> np.ndarray:
    """Float32 waveform in [-1, 1]: shape (n,) when ``mono`` else (n, channels).

    Resampling uses the SoX resampler inside ffmpeg; a file without an audio stream is a
    MediaError, as is a decode that runs past ``timeout`` (DecodeTimeout).
    """
    p = str(path)
    if not os.path.isfile(p):
        raise MediaError(f"{p}: no such file")
    channels = _channels(p, timeout)
    args = [binary("ffmpeg"), "-nostdin", "-v", "error"]
    if start_s is not None:
        args += ["-ss", f"{start_s:.6f}"]
    args += ["-i", p]
    if duration_s is not None:
        args += ["-t", f"{duration_s:.6f}"]
    args += ["-vn", "-map", "0:a:0", "-af", "aresample=resampler=soxr", "-ar", str(sample_rate),
             "-ac", str(channels), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    raw = run(args, timeout=timeout, what=f"{p}: audio decode")
    audio = np.frombuffer(raw, dtype="<f4")
    audio = audio[: len(audio) // channels * channels].reshape(-1, channels)
    # Downmix as the reference implementations do (librosa, torchaudio): the channel mean.
    # ffmpeg's own -ac 1 applies a -3 dB matrix instead, which changes loudness-based scores.
    return audio.mean(axis=1, dtype=np.float32) if mono else audio.astype(np.float32)


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """Contiguous float32 (n,): a (n, channels) array is averaged over its channels (the
    downmix :func:`load_audio` uses); any other shape is a :class:`MediaError`."""
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    if x.ndim != 1:
        raise MediaError(f"audio must be (n,) or (n, channels), got shape {x.shape}")
    return np.ascontiguousarray(x)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample an in-memory waveform (time on axis 0) with soxr's high-quality mode."""
    if sr_in == sr_out:
        return np.asarray(audio, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(audio, dtype=np.float32), sr_in, sr_out, quality="HQ")


def _channels(p: str, timeout: float | None) -> int:
    out = run([binary("ffprobe"), "-v", "error", "-select_streams", "a:0", "-show_entries",
               "stream=channels", "-of", "csv=p=0", p], timeout=timeout,
              what=f"{p}: not a readable media file").decode().strip()
    if not out:
        raise MediaError(f"{p}: no audio stream")
    try:
        return max(int(out.split(",")[0]), 1)
    except ValueError:
        raise MediaError(f"{p}: cannot read the channel count ({out!r})") from None
