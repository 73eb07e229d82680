"""Frame-accurate video reads through decord (or torchcodec, on the CPU or NVDEC), bounded by
a timeout.

Frames are addressed by index (exact) or by timestamp (the frame displayed at that time,
using the stream's own frame timestamps, so variable-frame-rate files are read correctly;
0 is the first frame). Frames come upright, as displayed: decord applies a display rotation
(a phone video stored landscape) as ffmpeg does, in the size :func:`~.probe.probe` reports.
Decoding runs in a guarded child process (see :mod:`.guard`) unless ``timeout=None``; the
frames come back in shared memory the decoder wrote them into, without a copy.
A file decord cannot read is a MediaError with a stable one-line reason (decord's own
messages carry a clock and its source location, which would differ between runs).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import ConfigError, MediaError, first_line
from ._worker import output_array
from .guard import run_guarded

DEFAULT_TIMEOUT_S = 120.0
#: What ``read_frames(decoder=...)`` accepts (:func:`check_decoder`).
DECODERS = ("decord", "torchcodec", "torchcodec-cuda")
# Frames are decoded this many bytes at a time (a few frames at 640x360, one at 1080p) and
# written straight into the result: the decoder's own batch buffer stays small and is reused.
CHUNK_BYTES = 8 << 20
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
    decoder: str = "decord",
) -> np.ndarray:
    """RGB uint8 frames (N, H, W, 3), writable.

    Give ``indices`` (0-based frame numbers) or ``timestamps`` (seconds), or neither for every
    frame. ``size=(width, height)`` resizes (area interpolation) after decoding. ``decoder``:
    one of :data:`DECODERS` (:func:`check_decoder`). Raises MediaError for an unreadable file
    or an index out of range, DecodeTimeout on a hang, ConfigError for a decoder this machine
    cannot run.
    """
    if indices is not None and timestamps is not None:
        raise ValueError("give indices or timestamps, not both")
    device = check_decoder(decoder)
    idx = None if indices is None else [int(i) for i in indices]
    ts = None if timestamps is None else [float(t) for t in timestamps]
    if device is None:
        return run_guarded(_decode, str(path), idx, ts, size, timeout=timeout,
                           what=f"{path}: video decode")
    return run_guarded(_decode_torchcodec, str(path), idx, ts, size, device, timeout=timeout,
                       what=f"{path}: video decode ({decoder})")


def check_decoder(decoder: str) -> str | None:
    """Check that ``decoder`` can run here; returns torchcodec's device for it (None: decord).

    ``decord`` (the default) decodes on the CPU; ``torchcodec`` decodes on the CPU through
    torchcodec's FFmpeg (the same frames); ``torchcodec-cuda`` decodes on the GPU (NVDEC) and
    is refused with a ConfigError where torch sees no CUDA device.
    """
    if decoder not in DECODERS:
        raise ConfigError(f"unknown video decoder {decoder!r}; use {', '.join(DECODERS)}")
    if decoder == "decord":
        return None
    if importlib.util.find_spec("torchcodec") is None:
        raise ConfigError(f"video decoder {decoder!r} needs the torchcodec package")
    if decoder == "torchcodec-cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("video decoder 'torchcodec-cuda' needs a CUDA GPU and torch sees "
                              "none here; use 'decord' or 'torchcodec'")
        return "cuda"
    return "cpu"


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
    # decord's get_batch, a few frames at a time, straight into the output array: the same
    # seeks (its reader keeps its position between calls), without a second whole-clip buffer
    return _FrameSink(indices, size).run(lambda part: vr.get_batch(part).asnumpy())


class _FrameSink:
    """Decoded frames into :func:`~._worker.output_array`, in the order asked for.

    ``keys`` name the frames (indices, or times): each distinct one is decoded once, in order
    of first request (what decord's get_batch does; a repeat is a copy), and the array is
    allocated when the first frame gives the size.
    """

    def __init__(self, keys: list, size: tuple[int, int] | None):
        self.keys, self.size = keys, size
        self.first: dict = {}
        for k, key in enumerate(keys):
            self.first.setdefault(key, k)
        self.unique = list(self.first)
        self.out: np.ndarray | None = None
        self.frame_bytes = 1

    def run(self, fetch: Callable[[list], np.ndarray]) -> np.ndarray:
        """Fill the array with ``fetch(keys)`` ((k, H, W, 3) uint8 for k distinct keys)."""
        start, chunk = 0, 1
        while start < len(self.unique):
            part = self.unique[start:start + chunk]
            self.put(part, fetch(part))
            start += len(part)
            chunk = max(1, CHUNK_BYTES // self.frame_bytes)
        return self.finish()

    def put(self, part: list, frames: np.ndarray) -> None:
        height, width = frames.shape[1:3]
        if self.out is None:
            w, h = self.size or (width, height)
            self.out = output_array((len(self.keys), h, w, 3), np.uint8)
            self.frame_bytes = frames[0].nbytes
        rows = [self.first[key] for key in part]
        if self.size is None or (width, height) == tuple(self.size):
            self.out[rows] = frames
            return
        import cv2

        for row, frame in zip(rows, frames, strict=True):
            cv2.resize(frame, tuple(self.size), dst=self.out[row], interpolation=cv2.INTER_AREA)

    def finish(self) -> np.ndarray:
        for k, key in enumerate(self.keys):
            if self.first[key] != k:
                self.out[k] = self.out[self.first[key]]
        return self.out


def _decode_torchcodec(path: str, indices: list[int] | None, timestamps: list[float] | None,
                       size: tuple[int, int] | None, device: str) -> np.ndarray:
    """The frames :func:`_decode` reads (same indices, same timestamp rule, upright), through
    torchcodec on ``device`` ("cpu", or "cuda": NVDEC).

    A time within a microsecond of a frame's start may read the frame before it through
    decord, whose frame times are 32-bit floats; torchcodec compares exact timestamps.
    """
    from torchcodec.decoders import VideoDecoder

    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise MediaError(f"{path}: missing or empty file")
    try:
        dec = VideoDecoder(path, dimension_order="NHWC", device=device, seek_mode="exact",
                           num_ffmpeg_threads=1)
        meta = dec.metadata
        n = int(meta.num_frames or 0)
    except (RuntimeError, ValueError) as exc:
        raise MediaError(f"{path}: torchcodec cannot open it ({first_line(exc)})") from None
    if timestamps is None:
        indices = list(range(n)) if indices is None else indices
        bad = [i for i in indices if i < 0 or i >= n]
        if bad:
            raise MediaError(f"{path}: frame index {bad[0]} out of range (video has {n} frames)")
        keys = [("index", i) for i in indices]
    else:
        # decord's times count from the stream's start, torchcodec's are the stream's own;
        # before the first frame reads the first, from the stream's end on the last (its end
        # is the last frame's start where that frame has no duration)
        begin, end = float(meta.begin_stream_seconds), float(meta.end_stream_seconds)
        keys = [("index", n - 1) if t + begin >= end else ("time", max(t + begin, begin))
                for t in timestamps]
    if not keys:
        w, h = meta.width, meta.height
        if meta.rotation and round(meta.rotation) % 180 == 90:
            w, h = h, w
        w, h = size or (w, h)
        return np.zeros((0, h, w, 3), np.uint8)

    def fetch(part: list[tuple[str, float]]) -> np.ndarray:
        by_time = np.array([kind == "time" for kind, _ in part])
        times = [v for kind, v in part if kind == "time"]
        index = [int(v) for kind, v in part if kind == "index"]
        if not times:
            return dec.get_frames_at(index).data.cpu().numpy()
        frames = dec.get_frames_played_at(times).data.cpu().numpy()
        if not index:
            return frames
        out = np.empty((len(part), *frames.shape[1:]), np.uint8)
        out[by_time] = frames
        out[~by_time] = dec.get_frames_at(index).data.cpu().numpy()
        return out

    try:
        return _FrameSink(keys, size).run(fetch)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise MediaError(f"{path}: torchcodec cannot decode it ({first_line(exc)})") from None


def _frame_times(path: str) -> np.ndarray:
    import decord

    vr = _open(path)
    try:
        return np.asarray(vr.get_frame_timestamp(np.arange(len(vr))), dtype=np.float64)
    except decord.DECORDError as exc:
        raise _decord_error(path, "index", exc) from None
