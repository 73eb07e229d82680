"""Audio loading through ffmpeg: any container, resampled, downmixed, bounded by a timeout.

Audio is placed on the picture's timeline: t = 0 is the first video frame, the time frame
timestamps count from (:func:`~omni_core.media.video.frame_times`). Sound that starts after
the picture (common after editing) is preceded by silence; sound before the first frame is
dropped. A file without video keeps its own timeline.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import MediaError
from .ffmpeg import binary, run

DEFAULT_TIMEOUT_S = 120.0
#: the ffmpeg filter that puts decoded audio on its timeline: silence before a late first
#: sample, samples before t = 0 dropped (and gaps in the timestamps filled, as a player does)
ALIGN_FILTER = "aresample=async=1:first_pts=0"


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

    Resampling uses the SoX resampler inside ffmpeg. ``start_s`` and ``duration_s`` select
    a part of the picture's timeline (see the module docstring); a part before the sound
    starts is silence. A file without an audio stream is a MediaError, as is a decode that
    runs past ``timeout`` (DecodeTimeout).
    """
    p = str(path)
    if not os.path.isfile(p):
        raise MediaError(f"{p}: no such file")
    channels, lead = _layout(p, timeout)
    # ffmpeg's input -ss counts from the file's start (its earliest stream): seek past the
    # lead to reach the first frame, so that ALIGN_FILTER's t = 0 is the picture's
    seek = (start_s or 0.0) + lead
    args = [binary("ffmpeg"), "-nostdin", "-v", "error"]
    if seek > 0:
        args += ["-ss", f"{seek:.6f}"]
    args += ["-i", p]
    if duration_s is not None:
        args += ["-t", f"{duration_s:.6f}"]
    args += ["-vn", "-map", "0:a:0", "-af", f"aresample=resampler=soxr,{ALIGN_FILTER}",
             "-ar", str(sample_rate), "-ac", str(channels), "-f", "f32le", "-acodec",
             "pcm_f32le", "pipe:1"]
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


def model_input(waveform: np.ndarray, sample_rate: int, model_rate: int, what: str
                ) -> np.ndarray:
    """A waveform as an audio model takes it: mono (:func:`to_mono`), at ``model_rate``,
    float32, every sample finite (a :class:`MediaError` naming ``what`` otherwise)."""
    x = to_mono(waveform)
    if sample_rate != model_rate:
        x = resample(x, sample_rate, model_rate)
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise MediaError(f"{what} input audio contains NaN or infinite samples")
    return x


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample an in-memory waveform (time on axis 0) with soxr's high-quality mode."""
    if sr_in == sr_out:
        return np.asarray(audio, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(audio, dtype=np.float32), sr_in, sr_out, quality="HQ")


def _layout(p: str, timeout: float | None) -> tuple[int, float]:
    """(channels of the first audio stream, seconds from the file's start to its first video
    frame: 0 without video)."""
    raw = run([binary("ffprobe"), "-v", "error", "-show_entries",
               "stream=codec_type,channels,start_time:stream_disposition=attached_pic:"
               "format=start_time", "-of", "json", p], timeout=timeout,
              what=f"{p}: not a readable media file")
    try:
        data = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise MediaError(f"{p}: ffprobe output unreadable ({exc})") from exc
    streams = data.get("streams", [])
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if audio is None:
        raise MediaError(f"{p}: no audio stream")
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    try:
        channels = max(int(audio.get("channels") or 1), 1)
    except ValueError:
        raise MediaError(f"{p}: cannot read the channel count ({audio.get('channels')!r})"
                         ) from None
    lead = _seconds((video or {}).get("start_time")) - _seconds(
        data.get("format", {}).get("start_time"))
    return channels, lead if lead > 0 else 0.0  # NaN (a time unknown) counts as none


def _seconds(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
