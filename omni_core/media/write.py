"""Writing media: mp4 (H.264 yuv420p + AAC) from frames and a waveform, and wav files.

Writes are atomic: the file appears under its final name only when complete, so a killed run
never leaves a truncated output that a rerun would mistake for finished work.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import MediaError
from .ffmpeg import binary, run


@contextlib.contextmanager
def temp_wav(audio: np.ndarray, sample_rate: int) -> Iterator[Path]:
    """The waveform as a temporary 16-bit wav, deleted on exit: for libraries that only read
    files (DiariZen, ClearerVoice)."""
    with tempfile.TemporaryDirectory(prefix="omni-audio-") as tmp:
        yield write_wav(Path(tmp) / "clip.wav", audio, sample_rate)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write float audio in [-1, 1] (shape (n,) or (n, channels)) as 16-bit PCM wav."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, np.clip(np.asarray(audio, dtype=np.float32), -1, 1), sample_rate,
             subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return path


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    *,
    crf: int = 18,
    audio_bitrate: str = "128k",
    threads: int | None = 2,
    timeout: float | None = 300.0,
) -> Path:
    """Encode RGB uint8 frames (T, H, W, 3) at ``fps``, with an optional mono/stereo track.

    H and W must be even (yuv420p). The audio is trimmed or zero-padded by ffmpeg's
    ``-shortest`` rule: the output ends with the shorter stream. x264's output depends on its
    thread count, so a fixed ``threads`` (default 2) gives the same bytes on every machine;
    ``None`` lets ffmpeg pick from the core count.
    """
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MediaError(f"write_mp4: expected uint8 frames (T,H,W,3), got {frames.dtype} "
                         f"{frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise MediaError(f"write_mp4: frame size {w}x{h} must be even for yuv420p")
    if audio is not None and not sample_rate:
        raise MediaError("write_mp4: audio given without sample_rate")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with tempfile.TemporaryDirectory(prefix="omni-write-") as tdir:
        args = [binary("ffmpeg"), "-nostdin", "-y", "-loglevel", "error",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}",
                "-i", "pipe:0"]
        if audio is not None:
            wav = write_wav(Path(tdir) / "audio.wav", audio, int(sample_rate))
            args += ["-i", str(wav)]
        args += ["-map", "0:v:0", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
                 "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
        if threads is not None:
            args += ["-threads", str(threads)]
        if audio is not None:
            args += ["-map", "1:a:0", "-c:a", "aac", "-b:a", audio_bitrate, "-shortest"]
        args += [str(tmp)]
        try:
            run(args, input=frames.tobytes(), timeout=timeout, what=f"write {path.name}")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, path)
    return path
