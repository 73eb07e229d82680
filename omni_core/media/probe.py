"""Probing media files: what streams they hold, how long they are, and whether they are whole.

``probe`` reads the container header with ffprobe, then demuxes every packet (no decoding, so
it stays cheap) to check that the stream data really is in the file and to measure the video
frame timestamps. That is what catches the two failures a header read misses: a file cut short
after a front-loaded moov atom, and variable-frame-rate video that would put frames at the
wrong time if read as constant-rate.

The packets also give each stream's own start and length: edited files often have sound
that starts after the picture, or runs on long after it, while the container reports only the
longest. :meth:`MediaInfo.av_span` is the part where both exist, on the picture's timeline
(0 = the first video frame: the time :func:`~omni_core.media.read_frames` and
:func:`~omni_core.media.load_audio` count from).

Sizes are as displayed: a phone video stored landscape with a display rotation reports its
upright width and height, and the rotation (frames are read upright too).

Anything unreadable raises :class:`~omni_core.errors.MediaError` with a one-line reason; so
does a still image (a PNG or JPEG under a video's name). Properties that make a file unfit for
some uses but not unreadable (no audio, no video, variable frame rate, streams of different
lengths) are returned as ``MediaInfo.warnings``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import MediaError
from .ffmpeg import DEFAULT_TIMEOUT_S, binary, call, last_line

# A frame interval further than this fraction from the median interval counts as irregular;
# a video is VFR when more than VFR_MIN_SHARE of its intervals are irregular.
VFR_TOLERANCE = 0.10
VFR_MIN_SHARE = 0.02
# Audio and video whose lengths differ by more than this get a warning (AAC's priming and
# the last frame's duration make them differ by a few tens of milliseconds in normal files).
AV_LENGTH_TOLERANCE_S = 0.5


@dataclass
class MediaInfo:
    """Properties of one media file, as ``omni probe`` reports them."""

    path: str
    size_bytes: int
    container: str
    duration_s: float                 # the container's: the longest stream
    has_video: bool
    has_audio: bool
    video_codec: str | None = None
    width: int | None = None          # as displayed (after the rotation)
    height: int | None = None
    # display rotation (0, 90, 180 or 270), degrees counterclockwise as ffmpeg counts them:
    # np.rot90(stored_frame, rotation // 90) is the frame shown (and read_frames returns)
    rotation: int = 0
    fps: float | None = None          # average frame rate (frames / duration)
    nominal_fps: float | None = None  # the stream's declared rate (r_frame_rate)
    n_frames: int | None = None       # counted from the demuxed packets
    vfr: bool = False
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    # each stream's start (seconds after the file's start, the earliest stream's) and length,
    # both from the demuxed packets
    video_start_s: float | None = None
    video_duration_s: float | None = None
    audio_start_s: float | None = None
    audio_duration_s: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def av_span(self) -> tuple[float, float] | None:
        """``(start_s, end_s)`` where both picture and sound exist, on the picture's timeline
        (0 = the first video frame); None unless the file has both streams."""
        if self.video_duration_s is None or self.audio_duration_s is None:
            return None
        offset = (self.audio_start_s or 0.0) - (self.video_start_s or 0.0)
        start = max(0.0, offset)
        end = max(start, min(self.video_duration_s, offset + self.audio_duration_s))
        return round(start, 6), round(end, 6)


def probe(path: str | os.PathLike, *, timeout: float | None = DEFAULT_TIMEOUT_S) -> MediaInfo:
    """Probe ``path``; raise MediaError with a one-line reason if it cannot be used at all."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file")
    if p.is_dir():
        raise MediaError(f"{p}: is a directory")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(f"{p}: empty file (0 bytes)")

    header = _ffprobe_json(p, timeout)
    streams = header.get("streams", [])
    fmt = header.get("format", {})
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise MediaError(f"{p}: no audio or video stream")
    if video is not None and _is_image_format(fmt.get("format_name", "")):
        raise MediaError(f"{p}: a still image ({video.get('codec_name', '?')}), not a video")

    info = MediaInfo(
        path=str(p), size_bytes=size, container=fmt.get("format_name", "?"),
        duration_s=_float(fmt.get("duration")) or 0.0,
        has_video=video is not None, has_audio=audio is not None,
    )
    if audio is not None:
        info.audio_codec = audio.get("codec_name")
        info.sample_rate = int(audio["sample_rate"]) if audio.get("sample_rate") else None
        info.channels = audio.get("channels")
    if video is not None:
        info.video_codec = video.get("codec_name")
        info.rotation = _rotation(video)
        info.width, info.height = video.get("width"), video.get("height")
        if info.rotation in (90, 270):
            info.width, info.height = info.height, info.width
        info.nominal_fps = _rate(video.get("r_frame_rate"))
    _scan_packets(p, info, video, audio, _float(fmt.get("start_time")), timeout)

    if info.duration_s <= 0:
        raise MediaError(f"{p}: zero duration")
    if not info.has_audio:
        info.warnings.append("no audio stream")
    if not info.has_video:
        info.warnings.append("no video stream")
    if info.vfr:
        info.warnings.append("variable frame rate")
    vlen, alen = info.video_duration_s, info.audio_duration_s
    if vlen is not None and alen is not None and abs(vlen - alen) > AV_LENGTH_TOLERANCE_S:
        info.warnings.append(f"audio and video differ in length (video {vlen:.2f} s, "
                             f"audio {alen:.2f} s)")
    return info


def _is_image_format(name: str) -> bool:
    """ffmpeg's still-image demuxers: ``image2`` and the ``*_pipe`` ones (png_pipe, ...)."""
    return name == "image2" or name.endswith("_pipe")


def _rotation(video: dict) -> int:
    """The display matrix's rotation, degrees counterclockwise, as 0, 90, 180 or 270."""
    for side in video.get("side_data_list") or []:
        degrees = _float(side.get("rotation"))
        if degrees is not None:
            return int(round(degrees / 90)) * 90 % 360
    return 0


def _ffprobe_json(p: Path, timeout: float | None) -> dict:
    proc = call([binary("ffprobe"), "-v", "error", "-print_format", "json", "-show_format",
                 "-show_streams", str(p)], timeout=timeout, what=f"{p}: probe")
    if proc.returncode != 0:
        reason = last_line(proc.stderr, str(p))
        raise MediaError(f"{p}: not a readable media file ({reason})")
    out = proc.stdout
    try:
        return json.loads(out or b"{}")
    except json.JSONDecodeError as exc:  # ffprobe printed garbage: treat like unreadable
        raise MediaError(f"{p}: ffprobe output unreadable ({exc})") from exc


def _scan_packets(p: Path, info: MediaInfo, video: dict | None, audio: dict | None,
                  file_start: float | None, timeout: float | None) -> None:
    """Demux all packets: detect truncation, count frames, measure timestamps (VFR), and
    each stream's start and length."""
    args = [binary("ffprobe"), "-v", "error", "-show_entries",
            "packet=stream_index,pts_time,dts_time,duration_time,pos,size", "-of",
            "compact=p=0", str(p)]
    proc = call(args, timeout=timeout, what=f"{p}: packet scan")
    err = proc.stderr.decode("utf-8", "replace")
    if "partial file" in err or "Truncated" in err:
        raise MediaError(f"{p}: truncated (stream data ends before the container says)")
    if proc.returncode != 0:
        raise MediaError(f"{p}: {last_line(proc.stderr, str(p))}")

    index = {str(s["index"]): s for s in (video, audio) if s is not None}
    times: dict[str, list[tuple[float, float | None]]] = {i: [] for i in index}
    end_byte = 0
    for line in proc.stdout.decode().splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split("|") if "=" in kv)
        pos, size = _float(fields.get("pos")), _float(fields.get("size"))
        if pos is not None and size is not None:
            end_byte = max(end_byte, int(pos) + int(size))
        idx = fields.get("stream_index")
        if idx in times:
            t = _float(fields.get("pts_time"))
            t = _float(fields.get("dts_time")) if t is None else t
            if t is not None:
                times[idx].append((t, _float(fields.get("duration_time"))))
    if end_byte > info.size_bytes:
        raise MediaError(f"{p}: truncated (packets reach byte {end_byte}, file has "
                         f"{info.size_bytes})")
    if video is not None:
        _measure_video(p, info, [t for t, _ in times[str(video["index"])]])
    spans = {kind: _span(stream, times[str(stream["index"])],
                         info.fps if kind == "video" else None)
             for kind, stream in (("video", video), ("audio", audio)) if stream is not None}
    starts = [start for start, _ in spans.values() if start is not None]
    base = file_start if file_start is not None else min(starts, default=0.0)
    for kind, (start, length) in spans.items():
        setattr(info, f"{kind}_start_s", None if start is None else round(start - base, 6))
        setattr(info, f"{kind}_duration_s", length)


def _measure_video(p: Path, info: MediaInfo, pts: list[float]) -> None:
    if not pts:
        raise MediaError(f"{p}: video stream has no frames")
    info.n_frames = len(pts)
    ts = np.sort(np.asarray(pts))
    span = float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0
    if len(ts) > 2:
        d = np.diff(ts)
        med = float(np.median(d))
        if med > 0:
            irregular = np.abs(d - med) > VFR_TOLERANCE * med
            info.vfr = bool(irregular.mean() > VFR_MIN_SHARE)
        info.fps = (len(ts) - 1) / span if span > 0 else info.nominal_fps
    else:
        info.fps = info.nominal_fps
    if not info.duration_s and info.fps:
        info.duration_s = len(ts) / info.fps


def _span(stream: dict, packets: list[tuple[float, float | None]], fps: float | None
          ) -> tuple[float | None, float | None]:
    """(start, length) of one stream in container seconds. The start is the stream's own
    (which honours an edit list: AAC's priming packets lie before it), else its first packet;
    the end is the end of its last packet (a frame lasts 1/fps where packets do not say)."""
    start = _float(stream.get("start_time"))
    if not packets:
        return start, None
    if start is None:
        start = min(t for t, _ in packets)
    default = 1.0 / fps if fps else 0.0
    end = max(t + (d or default) for t, d in packets)
    return start, round(max(0.0, end - start), 6)


def _rate(value: str | None) -> float | None:
    if not value or value in ("0/0", "N/A"):
        return None
    try:
        r = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    return float(r) if r > 0 else None


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
