"""Broken and awkward inputs, each with a one-line statement of what is wrong with it.

Every readers' error path should meet one of these: an empty file, an mp4 cut short with and
without its index, a video with no sound, a sound with no video, a variable-frame-rate video
and a text file dressed up as an mp4.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..media.ffmpeg import binary, run
from ..media.write import write_mp4, write_wav

TRUNCATE_FRACTION = 0.3
# Frame timestamps of the VFR file in ms: alternating 50 / 30 ms steps, plus a 240 ms stall
# after frame 50 (a dropped-frames hiccup, as phones record).
VFR_PTS_EXPR = "N*40+10*mod(N,2)+240*gte(N,50)"
VFR_FRAMES = 100


@dataclass(frozen=True)
class BrokenFile:
    name: str  # file name under broken/
    expected_error: str
    description: str
    duration_s: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _ffmpeg_to(path: Path, args: list[str], *, input: bytes | None = None, what: str) -> None:
    """Run ffmpeg writing ``path`` atomically (``args`` end where the output name goes)."""
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        run([binary("ffmpeg"), "-nostdin", "-y", "-loglevel", "error", *args, str(tmp)],
            input=input, timeout=120, what=what)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def top_level_atoms(data: bytes) -> list[str]:
    """Names of the top-level ISO-BMFF boxes (ftyp, moov, mdat, ...) that start in ``data``."""
    names, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1 and pos + 16 <= len(data):
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        names.append(kind.decode("latin-1"))
        if size < 8:
            break
        pos += size
    return names


def make_broken(out_dir: Path, *, source_clip: Path, frames: np.ndarray, fps: float,
                audio: np.ndarray, sample_rate: int) -> list[BrokenFile]:
    """Write the broken inputs into ``out_dir``. ``source_clip`` is a finished talking clip
    (faststart mp4 written by write_mp4); ``frames``/``audio`` come from a talking clip."""
    out_dir.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    rows: list[BrokenFile] = []

    _atomic_bytes(out_dir / "empty.mp4", b"")
    rows.append(BrokenFile("empty.mp4", "empty file (0 bytes)", "zero-byte file named .mp4"))

    _atomic_bytes(out_dir / "not_a_video.mp4",
                  b"This is a plain text file, not a video.\n"
                  b"It only has an .mp4 extension so that globbing for videos finds it.\n")
    rows.append(BrokenFile("not_a_video.mp4", "not a media file (text with a .mp4 extension)",
                           "UTF-8 text saved under a video extension"))

    # Truncated, index at the front: write_mp4 uses +faststart, so moov precedes mdat. The
    # first 30 % keeps the complete header (probe reports the full duration) but only about
    # the first 30 % of the samples: decoding stops early or errors.
    data = source_clip.read_bytes()
    cut = int(len(data) * TRUNCATE_FRACTION)
    assert top_level_atoms(data)[:2] == ["ftyp", "moov"], top_level_atoms(data)
    _atomic_bytes(out_dir / "truncated_faststart.mp4", data[:cut])
    rows.append(BrokenFile(
        "truncated_faststart.mp4",
        "truncated: moov present (header claims the full duration) but mdat is cut at 30 %",
        f"first {TRUNCATE_FRACTION:.0%} of the bytes of talking/{source_clip.name} "
        "(faststart: ftyp, moov, then a partial mdat)"))

    # Truncated, index at the end: remux without faststart (ftyp, mdat, moov), cut at 30 %:
    # there is no moov atom at all, so nothing can be read.
    with tempfile.TemporaryDirectory(prefix="omni-broken-") as tdir:
        remux = Path(tdir) / "moov_at_end.mp4"
        _ffmpeg_to(remux, ["-i", str(source_clip), "-map", "0", "-c", "copy"],
                   what="remux moov-at-end")
        data = remux.read_bytes()
    atoms = top_level_atoms(data)
    assert atoms.index("mdat") < atoms.index("moov"), atoms
    _atomic_bytes(out_dir / "truncated_no_moov.mp4", data[:int(len(data) * TRUNCATE_FRACTION)])
    rows.append(BrokenFile(
        "truncated_no_moov.mp4", "truncated: no moov atom (unreadable container)",
        f"first {TRUNCATE_FRACTION:.0%} of the bytes of talking/{source_clip.name} remuxed "
        "with the moov atom at the end (ftyp, partial mdat, no moov)"))

    n_video = min(len(frames), 75)
    write_mp4(out_dir / "no_audio.mp4", frames[:n_video], fps)
    rows.append(BrokenFile("no_audio.mp4", "no audio stream",
                           "H.264 video only (the first 3 s of a talking clip's frames)",
                           duration_s=n_video / fps, fps=fps, width=w, height=h))

    with tempfile.TemporaryDirectory(prefix="omni-broken-") as tdir:
        wav = write_wav(Path(tdir) / "speech.wav", audio, sample_rate)
        _ffmpeg_to(out_dir / "audio_only.mp4",
                   ["-i", str(wav), "-map", "0:a:0", "-c:a", "aac", "-b:a", "64k",
                    "-f", "mp4"], what="audio-only mp4")
        rows.append(BrokenFile(
            "audio_only.mp4", "no video stream",
            "AAC audio only in an .mp4 container (a two-person conversation)",
            duration_s=len(audio) / sample_rate))

        # VFR: frames piped at a nominal 25 fps, re-timed to 1 ms ticks with jittered
        # timestamps, encoded without frame duplication or dropping (-fps_mode vfr) in a 1 ms
        # encoder time base (the default 1/25 would round the jitter away).
        n = min(len(frames), VFR_FRAMES)
        last_ms = (n - 1) * 40 + 10 * ((n - 1) % 2) + 240 * (n - 1 >= 50)
        dur = (last_ms + 40) / 1000
        wav2 = write_wav(Path(tdir) / "vfr.wav", audio[:int(dur * sample_rate)], sample_rate)
        _ffmpeg_to(out_dir / "vfr.mp4",
                   ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}",
                    "-i", "pipe:0", "-i", str(wav2), "-map", "0:v:0", "-map", "1:a:0",
                    "-vf", f"settb=1/1000,setpts='{VFR_PTS_EXPR}'", "-fps_mode", "vfr",
                    "-enc_time_base:v", "1:1000",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt",
                    "yuv420p", "-video_track_timescale", "1000", "-c:a", "aac", "-b:a", "64k",
                    "-movflags", "+faststart"],
                   input=np.ascontiguousarray(frames[:n]).tobytes(), what="vfr mp4")
    rows.append(BrokenFile(
        "vfr.mp4", "variable frame rate (frame durations 30/50 ms and one 270 ms gap)",
        f"{n} frames with pts {VFR_PTS_EXPR} ms (timescale 1000), H.264 + AAC",
        duration_s=dur, width=w, height=h))
    return rows
