"""Frame-accurate video reads through decord, bounded by a timeout.

Frames are addressed by index (exact) or by timestamp (the frame displayed at that time,
using the stream's own frame timestamps, so variable-frame-rate files are read correctly;
0 is the first frame). Frames come upright, as displayed: decord applies a display rotation
(a phone video stored landscape) as ffmpeg does, in the size :func:`~.probe.probe` reports.
Decoding runs in a guarded child process (see :mod:`.guard`) unless ``timeout=None``.
A file decord cannot read is a MediaError with a stable one-line reason (decord's own
messages carry a clock and its source location, which would differ between runs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

from ..errors import MediaError
from .guard import run_guarded

DEFAULT_TIMEOUT_S = 120.0
# decord's message prefixes: "[12:34:56] /src/video/video_reader.cc:270: "
_DECORD_NOISE = re.compile(r"\[\d\d:\d\d:\d\d\]\s*|\S+\.(?:cc|cpp|h):\d+:\s*")


def sample_indices(n_frames: int, n: int, mode: str = "linspace") -> np.ndarray:
    """Indices of ``n`` frames out of ``n_frames``.

    ``linspace``: evenly spaced including the first and last frame, truncated to integers as
    ``np.linspace(0, n_frames - 1, n, dtype=int)`` (the ID-Sim scripts of ConsisID/OpenS2V).
    ``segment_middle``: the middle frame of each of ``n`` equal segments, as VBench computes
    it (``(a + b - 1) // 2`` over integer segment edges).
    ``all``: every frame (``n`` ignored).
    """
    if n_frames <= 0:
        raise MediaError("sample_indices: video has no frames")
    if mode == "all":
        return np.arange(n_frames)
    if n <= 0:
        raise ValueError("n must be positive")
    if mode == "linspace":
        return np.linspace(0, n_frames - 1, n, dtype=np.int64)
    if mode == "segment_middle":  # a video shorter than n repeats its last pick, as VBench
        k = min(n, n_frames)
        edges = np.linspace(0, n_frames, k + 1).astype(np.int64)
        idx = np.clip((edges[:-1] + edges[1:] - 1) // 2, 0, n_frames - 1)
        return np.concatenate([idx, np.full(n - k, idx[-1], np.int64)])
    raise ValueError(f"unknown sampling mode {mode!r}; use linspace, segment_middle or all")


def read_frames(
    path: str | os.PathLike,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    timestamps: Sequence[float] | np.ndarray | None = None,
    size: tuple[int, int] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> np.ndarray:
    """RGB uint8 frames (N, H, W, 3).

    Give ``indices`` (0-based frame numbers) or ``timestamps`` (seconds), or neither for every
    frame. ``size=(width, height)`` resizes (area interpolation) after decoding. Raises
    MediaError for an unreadable file or an index out of range, DecodeTimeout on a hang.
    """
    if indices is not None and timestamps is not None:
        raise ValueError("give indices or timestamps, not both")
    idx = None if indices is None else [int(i) for i in indices]
    ts = None if timestamps is None else [float(t) for t in timestamps]
    return run_guarded(_decode, str(path), idx, ts, size, timeout=timeout,
                       what=f"{path}: video decode")


def frame_times(path: str | os.PathLike, *, timeout: float | None = DEFAULT_TIMEOUT_S
                ) -> np.ndarray:
    """(N, 2) start/end time in seconds of every frame, as the decoder sees them."""
    return run_guarded(_frame_times, str(path), timeout=timeout, what=f"{path}: video index")


def _open(path: str):
    import decord

    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise MediaError(f"{path}: missing or empty file")
    try:
        # decord's own scaler is not used: it fails on some target sizes (buffer size checks)
        return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except decord.DECORDError as exc:
        raise _decord_error(path, "open", exc) from None


def _decord_error(path: str, what: str, exc: Exception) -> MediaError:
    """decord's error as one line without its clock and source location."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    reason = _DECORD_NOISE.sub("", lines[0]) if lines else type(exc).__name__
    return MediaError(f"{path}: decord cannot {what} it ({reason})")


def _decode(path: str, indices: list[int] | None, timestamps: list[float] | None,
            size: tuple[int, int] | None) -> np.ndarray:
    import decord

    vr = _open(path)
    try:
        return _decode_frames(vr, path, indices, timestamps, size)
    except decord.DECORDError as exc:
        raise _decord_error(path, "decode", exc) from None


def _decode_frames(vr, path: str, indices: list[int] | None, timestamps: list[float] | None,
                   size: tuple[int, int] | None) -> np.ndarray:
    n = len(vr)
    if timestamps is not None:
        starts = vr.get_frame_timestamp(np.arange(n))[:, 0]
        indices = [max(int(np.searchsorted(starts, t, side="right")) - 1, 0) for t in timestamps]
    if indices is None:
        indices = list(range(n))
    bad = [i for i in indices if i < 0 or i >= n]
    if bad:
        raise MediaError(f"{path}: frame index {bad[0]} out of range (video has {n} frames)")
    if not indices:
        h, w = vr[0].shape[:2] if n else (0, 0)
        w, h = size or (w, h)
        return np.zeros((0, h, w, 3), np.uint8)
    frames = vr.get_batch(indices).asnumpy()
    if size is not None and frames.shape[2:0:-1] != tuple(size):
        import cv2

        frames = np.stack([cv2.resize(f, tuple(size), interpolation=cv2.INTER_AREA)
                           for f in frames])
    return frames


def _frame_times(path: str) -> np.ndarray:
    import decord

    vr = _open(path)
    try:
        return np.asarray(vr.get_frame_timestamp(np.arange(len(vr))), dtype=np.float64)
    except decord.DECORDError as exc:
        raise _decord_error(path, "index", exc) from None
