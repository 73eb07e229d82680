"""Probing media files: what streams they hold, how long they are, and whether they are whole.

``probe`` reads the container header with ffprobe, then demuxes every packet (no decoding, so
it stays cheap) to check that the stream data really is in the file and to measure the video
frame timestamps. That is what catches the two failures a header read misses: a file cut short
after a front-loaded moov atom, and variable-frame-rate video that would put frames at the
wrong time if read as constant-rate.

Anything unreadable raises :class:`~omni_core.errors.MediaError` with a one-line reason.
Properties that make a file unfit for some uses but not unreadable (no audio, no video,
variable frame rate) are returned as ``MediaInfo.warnings``.
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


@dataclass
class MediaInfo:
    """Properties of one media file, as ``omni probe`` reports them."""

    path: str
    size_bytes: int
    container: str
    duration_s: float
    has_video: bool
    has_audio: bool
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None          # average frame rate (frames / duration)
    nominal_fps: float | None = None  # the stream's declared rate (r_frame_rate)
    n_frames: int | None = None       # counted from the demuxed packets
    vfr: bool = False
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


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
        info.width, info.height = video.get("width"), video.get("height")
        info.nominal_fps = _rate(video.get("r_frame_rate"))
    _scan_packets(p, info, video, timeout)

    if info.duration_s <= 0:
        raise MediaError(f"{p}: zero duration")
    if not info.has_audio:
        info.warnings.append("no audio stream")
    if not info.has_video:
        info.warnings.append("no video stream")
    if info.vfr:
        info.warnings.append("variable frame rate")
    return info


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


def _scan_packets(p: Path, info: MediaInfo, video: dict | None, timeout: float | None) -> None:
    """Demux all packets: detect truncation, count frames, measure timestamps (VFR)."""
    args = [binary("ffprobe"), "-v", "error", "-show_entries",
            "packet=stream_index,pts_time,dts_time,pos,size", "-of", "csv=p=0", str(p)]
    proc = call(args, timeout=timeout, what=f"{p}: packet scan")
    err = proc.stderr.decode("utf-8", "replace")
    if "partial file" in err or "Truncated" in err:
        raise MediaError(f"{p}: truncated (stream data ends before the container says)")
    if proc.returncode != 0:
        raise MediaError(f"{p}: {last_line(proc.stderr, str(p))}")

    vindex = video.get("index") if video else None
    pts: list[float] = []
    end_byte = 0
    for line in proc.stdout.decode().splitlines():
        parts = line.split(",")
        if len(parts) < 5:
            continue
        idx, pts_t, dts_t, pos, size = parts[:5]
        if pos not in ("", "N/A") and size not in ("", "N/A"):
            end_byte = max(end_byte, int(pos) + int(size))
        if vindex is not None and idx == str(vindex):
            t = _float(pts_t) if pts_t not in ("", "N/A") else _float(dts_t)
            if t is not None:
                pts.append(t)
    if end_byte > info.size_bytes:
        raise MediaError(f"{p}: truncated (packets reach byte {end_byte}, file has "
                         f"{info.size_bytes})")
    if vindex is None:
        return
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
