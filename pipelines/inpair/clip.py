"""The ``prepare`` stage of in-pair curation: shot boundaries, a speech-aligned clip plan
(step ``prepare``), and the cuts (step ``cut``).

Pure functions the DAG's prepare stage calls for one input video (no Ray here):

- :func:`plan_video` -- the ``prepare`` step: shots, speech and the clip plan of one probed
  input, inside the span where both picture and sound exist (edited files often have sound
  running on long after the picture, or starting after it);
- :func:`detect_shots` -- hard cuts (PySceneDetect's ContentDetector, or ffmpeg's scene
  score), returned as contiguous shots covering the whole video;
- :func:`speech_spans` -- a cheap energy voice-activity detector, only used to start clips
  where someone starts talking;
- :func:`plan_clips` -- clips of exactly ``clip_frames / fps`` seconds, each inside one shot
  (never across a cut), greedy left to right, non-overlapping, deterministic;
- :func:`cut_clip` -- re-encode one clip: exactly ``clip_frames`` frames at the target fps
  (H.264 yuv420p, deterministic x264 settings) with 16 kHz mono AAC, written atomically.

The defaults give the model's 121 frames at 24 fps (5.04 s) and 16 kHz mono speech. Times
are on the source's picture timeline (0 = its first video frame), as ``read_frames`` and
``load_audio`` count them.
"""

from __future__ import annotations

import bisect
import math
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

from omni_core.errors import MediaError
from omni_core.media import MediaInfo, load_audio, probe
from omni_core.media.audio import ALIGN_FILTER
from omni_core.media.ffmpeg import binary, run
from omni_core.media.guard import run_guarded

# Default shot threshold per backend. Both are on the low side of what is usually quoted
# (PySceneDetect's own default 27; 0.3-0.4 for ffmpeg): a missed cut puts two scenes into one
# training clip, while a false cut only shortens a shot. Measured on the sample corpus:
# cuts between two of its clips score 30-52 (ContentDetector) and 0.23-0.42 (ffmpeg, except
# two renders of the same face and layout, 0.03); frames inside a clip stay below 3 and 0.01.
SHOT_THRESHOLDS = {"pyscenedetect": 27.0, "ffmpeg": 0.15}
FFMPEG_SCENE_WIDTH = 320  # frames are scaled to this width before ffmpeg's scene score
X264_PRESET = "veryfast"
X264_THREADS = 2  # x264's output depends on its thread count: fixed, so bytes are reproducible


#: the highest target frame rate a clip may have (cameras and models stay far below)
MAX_FPS = 240.0
#: the shortest clip: one frame at 25 fps
MIN_CLIP_S = 0.04
#: sources below this frame rate are refused: a slide show stretched to the clip rate would
#: hold each picture for many frames, which is no talking video
MIN_VIDEO_FPS = 5.0


@dataclass
class ClipOptions:
    """How inputs are cut into clips (the ``clip`` section of the in-pair config).

    clip_frames, fps: every clip has exactly ``clip_frames`` frames at ``fps`` (the target
        rate, whatever the source's): 121 at 24 fps = 5.04 s by default, the model's input.
    sample_rate: the clip's audio rate (mono), 16 kHz.
    shot_backend: ``pyscenedetect`` (ContentDetector on HSV differences, OpenCV decoding) or
        ``ffmpeg`` (the ``select`` filter's scene score).
    shot_threshold: cut threshold of that backend; None uses :data:`SHOT_THRESHOLDS`
        (27 for PySceneDetect's content value, 0.15 for ffmpeg's score in [0, 1]).
    min_shot_s: a cut closer than this to the previous one is ignored (flashes, fast
        transitions); 0.5 s.
    align_to_speech: start each clip at a speech onset when one fits in the shot.
    max_clips_per_shot: at most this many clips from one shot (None: as many as fit).
    hop_s: the hop policy. None: the next clip of a shot may start where the previous one
        ended (then snaps to the next speech onset); a number: the next clip may start no
        earlier than ``hop_s`` after the previous start. Must be at least the clip length
        (clips never overlap).
    crf, audio_bitrate: H.264 quality (x264 CRF) and AAC bitrate of the written clips.
    """

    clip_frames: int = 121
    fps: float = 24.0
    sample_rate: int = 16000
    shot_backend: Literal["pyscenedetect", "ffmpeg"] = "pyscenedetect"
    shot_threshold: float | None = None
    min_shot_s: float = 0.5
    align_to_speech: bool = True
    max_clips_per_shot: int | None = None
    hop_s: float | None = None
    crf: int = 18
    audio_bitrate: str = "96k"

    def __post_init__(self) -> None:
        if self.clip_frames < 1:
            raise ValueError(f"clip_frames must be >= 1, got {self.clip_frames}")
        if not (math.isfinite(self.fps) and 0 < self.fps <= MAX_FPS):
            raise ValueError(f"fps must be a number in (0, {MAX_FPS:g}], got {self.fps}")
        if self.clip_s < MIN_CLIP_S:
            # a clip of (almost) no time would make the plan of one video endless
            raise ValueError(f"a clip of {self.clip_frames} frame(s) at {self.fps:g} fps "
                             f"lasts {self.clip_s:.4g} s; at least {MIN_CLIP_S:g} s needed")
        if self.sample_rate < 1:
            raise ValueError(f"sample_rate must be >= 1, got {self.sample_rate}")
        if self.shot_backend not in SHOT_THRESHOLDS:
            raise ValueError(f"shot_backend {self.shot_backend!r} is not one of "
                             f"{sorted(SHOT_THRESHOLDS)}")
        if self.shot_threshold is not None and not self.shot_threshold > 0:
            raise ValueError(f"shot_threshold must be > 0, got {self.shot_threshold}")
        for name in ("min_shot_s", "hop_s", "shot_threshold"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if self.min_shot_s < 0:
            raise ValueError(f"min_shot_s must be >= 0, got {self.min_shot_s}")
        if self.max_clips_per_shot is not None and self.max_clips_per_shot < 1:
            raise ValueError(f"max_clips_per_shot must be >= 1 or null, got "
                             f"{self.max_clips_per_shot}")
        if self.hop_s is not None and self.hop_s < self.clip_s - 1e-9:
            raise ValueError(f"hop_s {self.hop_s} is shorter than a clip ({self.clip_s:.4f} s): "
                             "clips would overlap")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")

    @property
    def clip_s(self) -> float:
        """Duration of one clip in seconds (``clip_frames / fps``)."""
        return self.clip_frames / self.fps

    @property
    def threshold(self) -> float:
        """The shot threshold in effect for the chosen backend."""
        if self.shot_threshold is not None:
            return self.shot_threshold
        return SHOT_THRESHOLDS[self.shot_backend]


@dataclass(frozen=True)
class ClipSpan:
    """One planned clip: ``[start_s, end_s)`` of the source, inside shot ``shot_index``."""

    shot_index: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


# ----------------------------------------------------------------------------- plan one input


def plan_video(path: str | os.PathLike, info: MediaInfo, options: ClipOptions | None = None
               ) -> tuple[list[tuple[float, float]], list[ClipSpan]]:
    """The ``prepare`` step for one input and its :func:`~omni_core.media.probe` result:
    ``(shots, clips)``.

    Shots are detected over the picture and then cut to the span where sound exists too
    (:meth:`~omni_core.media.MediaInfo.av_span`; a shot outside it becomes empty, so shot
    indices stay those of the video); clips are planned over them, aligned to the speech of
    that span. A source without both streams, or whose frame rate is below
    :data:`MIN_VIDEO_FPS`, is a MediaError.
    """
    opts = options or ClipOptions()
    span = info.av_span()
    if span is None:
        raise MediaError(f"{path}: a clip needs both a video and an audio stream")
    fps = info.fps or info.nominal_fps or 0.0
    if fps < MIN_VIDEO_FPS:
        raise MediaError(f"{path}: frame rate {fps:.1f} fps is below the minimum of "
                         f"{MIN_VIDEO_FPS:g} fps")
    a, b = span
    shots = [(min(max(s, a), b), min(max(e, a), b)) for s, e in detect_shots(path, info, opts)]
    speech = speech_spans(load_audio(path, opts.sample_rate, duration_s=b), opts.sample_rate)
    return shots, plan_clips(shots, speech, opts)


# ----------------------------------------------------------------------------- shots


def detect_shots(path: str | os.PathLike, info: MediaInfo,
                 options: ClipOptions | None = None) -> list[tuple[float, float]]:
    """Shots of a video as contiguous ``(start_s, end_s)`` spans from 0 to the end of its
    picture.

    A cut's time is the timestamp of the first frame of the new shot, on the picture's
    timeline. ``info`` is the input's :func:`~omni_core.media.probe` result. A video without
    cuts is one shot.
    """
    opts = options or ClipOptions()
    if not info.has_video:
        raise MediaError(f"{path}: no video stream, no shots to detect")
    duration = float(info.video_duration_s or info.duration_s)
    timeout = 120.0 + 2.0 * duration  # generous: a hung decoder is what this bounds
    if opts.shot_backend == "pyscenedetect":
        fps = info.fps or info.nominal_fps or 25.0
        min_frames = max(1, round(opts.min_shot_s * fps))
        cuts = run_guarded(_pyscenedetect_cuts, str(path), opts.threshold, min_frames,
                           timeout=timeout, what=f"{path}: shot detection")
    else:
        times, scores = ffmpeg_scene_scores(path, timeout=timeout)
        first = info.video_start_s or 0.0  # ffmpeg counts from the file's start
        cuts = [t - first for t, s in zip(times, scores, strict=True) if s > opts.threshold]
    return shots_from_cuts(cuts, duration, opts.min_shot_s)


def shots_from_cuts(cuts: Sequence[float], duration_s: float,
                    min_shot_s: float = 0.0) -> list[tuple[float, float]]:
    """Contiguous shots covering ``[0, duration_s]`` from cut times (any order).

    Cuts at or outside the ends are dropped, and so is a cut closer than ``min_shot_s`` to
    the previous kept one (the same rule as PySceneDetect's ``min_scene_len``).
    """
    bounds = [0.0]
    for t in sorted(float(c) for c in cuts):
        if 0.0 < t < duration_s and t - bounds[-1] >= min_shot_s and t > bounds[-1]:
            bounds.append(t)
    bounds.append(float(duration_s))
    return [(_r(a), _r(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _pyscenedetect_cuts(path: str, threshold: float, min_frames: int) -> list[float]:
    """Cut times from PySceneDetect's ContentDetector (runs in the guarded decode worker)."""
    from scenedetect import ContentDetector, SceneManager, open_video

    try:
        video = open_video(path, backend="opencv")
    except Exception as exc:  # OpenCV's own errors: say it in one line
        raise MediaError(f"{path}: OpenCV cannot open it ({type(exc).__name__}: {exc})") from exc
    manager = SceneManager()
    manager.auto_downscale = True
    manager.add_detector(ContentDetector(threshold=threshold, min_scene_len=min_frames))
    manager.detect_scenes(video=video)
    scenes = manager.get_scene_list(start_in_scene=True)
    return [float(start.get_seconds()) for start, _ in scenes[1:]]


_PTS = re.compile(r"pts_time:\s*(\S+)")
_SCORE = re.compile(r"lavfi\.scene_score=\s*(\S+)")


def ffmpeg_scene_scores(path: str | os.PathLike, *, timeout: float | None = 600.0
                        ) -> tuple[list[float], list[float]]:
    """Timestamp and scene score (0-1, vs. the previous frame) of every video frame.

    ffmpeg's ``select`` filter computes the score; ``metadata=print`` writes it per frame.
    Frames are scaled to :data:`FFMPEG_SCENE_WIDTH` first (cheaper, less sensitive to noise).
    """
    p = str(path)
    graph = (f"scale={FFMPEG_SCENE_WIDTH}:-2,select='gte(scene\\,0)',"
             "metadata=mode=print:file=-")
    out = run([binary("ffmpeg"), "-nostdin", "-hide_banner", "-v", "error", "-i", p,
               "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", graph, "-f", "null", "-"],
              timeout=timeout, what=f"{p}: scene scores")
    return parse_scene_scores(out.decode("utf-8", "replace"))


def parse_scene_scores(text: str) -> tuple[list[float], list[float]]:
    """(times, scores) from ``metadata=print`` output: a ``frame:.. pts_time:T`` line, then
    ``lavfi.scene_score=S``. Frames without a parseable time or score are skipped."""
    times: list[float] = []
    scores: list[float] = []
    t: float | None = None
    for line in text.splitlines():
        m = _PTS.search(line)
        if m:
            t = _finite(m.group(1))
            continue
        m = _SCORE.search(line)
        if m and t is not None:
            s = _finite(m.group(1))
            if s is not None:
                times.append(t)
                scores.append(s)
            t = None
    return times, scores


def _finite(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


# ----------------------------------------------------------------------------- speech


def speech_spans(
    waveform: np.ndarray,
    sample_rate: int = 16000,
    *,
    frame_s: float = 0.02,
    hop_s: float = 0.01,
    margin_db: float = 12.0,
    floor_window_s: float = 5.0,
    headroom_db: float = 10.0,
    min_margin_db: float = 4.0,
    min_level_db: float = -55.0,
    hangover_s: float = 0.2,
    min_speech_s: float = 0.15,
) -> list[tuple[float, float]]:
    """Speech as ``(start_s, end_s)`` spans: a cheap, deterministic energy detector.

    Frame RMS (``frame_s`` windows every ``hop_s``) in dBFS is compared with a threshold
    ``margin_db`` above an adaptive noise floor: the minimum of the 50 ms-smoothed level over
    a sliding ``floor_window_s`` window. The threshold is capped at ``headroom_db`` below the
    loud speech level (99th percentile), so a loud floor (low SNR) cannot hide most speech,
    but stays ``min_margin_db`` above the floor, so steady noise alone is not speech, and
    never goes under ``min_level_db``, so near-silence is never speech. A run stays active for
    ``hangover_s`` after the level drops (bridging pauses between words); runs shorter than
    ``min_speech_s`` (clicks) are dropped. Onsets are frame starts, accurate to ``hop_s``.
    Energy only: noise whose level swings like syllables (rumble) can pass as speech, which
    costs nothing here: it is only used to align clip starts; diarization comes later.
    """
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    win = max(1, int(round(frame_s * sample_rate)))
    hop = max(1, int(round(hop_s * sample_rate)))
    if x.ndim != 1 or x.size < win:
        return []
    # frame energies from a running sum of squares: O(n) memory, whatever the length
    power = np.concatenate([[0.0], np.cumsum(x * x)])
    first = np.arange(0, x.size - win + 1, hop)
    rms = np.sqrt(np.maximum(power[first + win] - power[first], 0.0) / win)
    db = 20.0 * np.log10(np.maximum(rms, 1e-5))  # -100 dBFS floor for digital silence
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    smooth = uniform_filter1d(db, size=max(1, int(round(0.05 / hop_s))), mode="nearest")
    floor = minimum_filter1d(smooth, size=max(1, int(round(floor_window_s / hop_s))),
                             mode="nearest")
    loud = float(np.percentile(db, 99))
    threshold = np.maximum(np.minimum(floor + margin_db, loud - headroom_db),
                           floor + min_margin_db)
    threshold = np.maximum(threshold, min_level_db)
    active = db > threshold
    if not active.any():
        return []
    # runs of active frames: [starts[i], ends[i]) in frame indices
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    total_s = x.size / sample_rate
    spans: list[list[float]] = []  # [start, end with hangover, voiced end]
    for a, b in zip(starts, ends, strict=True):
        s = a * hop / sample_rate
        voiced_end = min(((b - 1) * hop + win) / sample_rate, total_s)
        e = min(voiced_end + hangover_s, total_s)
        if spans and s <= spans[-1][1]:
            spans[-1][1:] = [max(spans[-1][1], e), voiced_end]
        else:
            spans.append([s, e, voiced_end])
    return [(_r(s), _r(e)) for s, e, v in spans if v - s >= min_speech_s]


# ----------------------------------------------------------------------------- plan


def plan_clips(shots: Sequence[tuple[float, float]], speech: Sequence[tuple[float, float]],
               options: ClipOptions | None = None) -> list[ClipSpan]:
    """Clips of exactly ``options.clip_s`` seconds, each inside one shot, in time order.

    Per shot, greedily left to right from a cursor (the shot start, then the end of the last
    clip, or its start + ``hop_s``): with ``align_to_speech`` the clip starts at the first
    speech onset at or after the cursor; if the clip would run past the shot end it is shifted
    back to end there (still starting at or after the cursor); with no onset left, or without
    alignment, it starts at the cursor. Shots shorter than a clip give no clip (the caller
    counts them as filtered). Clips never overlap and never cross a cut.
    """
    opts = options or ClipOptions()
    dur = opts.clip_s
    eps = 1e-6
    onsets = sorted(float(s) for s, _ in speech) if opts.align_to_speech else []
    out: list[ClipSpan] = []
    for index, (s0, s1) in enumerate(shots):
        s0, s1 = float(s0), float(s1)
        last_start = s1 - dur  # latest start that keeps the clip inside the shot
        cursor, n = s0, 0
        while last_start >= cursor - eps:
            if opts.max_clips_per_shot is not None and n >= opts.max_clips_per_shot:
                break
            start = cursor
            i = bisect.bisect_left(onsets, cursor - eps)
            if i < len(onsets) and onsets[i] < s1:
                start = max(min(onsets[i], last_start), cursor)
            start = _r(start)
            end = _r(start + dur)
            out.append(ClipSpan(index, start, end))
            n += 1
            cursor = end if opts.hop_s is None else max(end, start + opts.hop_s)
    return out


# ----------------------------------------------------------------------------- cut


def cut_clip(src: str | os.PathLike, span: ClipSpan, out_path: str | os.PathLike,
             options: ClipOptions | None = None, *, info: MediaInfo | None = None,
             timeout: float | None = 300.0) -> MediaInfo:
    """Re-encode ``span`` of ``src`` to ``out_path`` (mp4) and return the written file's probe.

    Exactly ``clip_frames`` frames at ``fps`` (ffmpeg's fps filter from the span start; the
    span is seeked frame-accurately), H.264 yuv420p with fixed x264 settings (preset, CRF,
    2 threads) and the audio of the same span resampled (soxr) to ``sample_rate`` mono (the
    channel mean, as :func:`~omni_core.media.load_audio` downmixes) in AAC, padded with
    silence if the source's audio ends early. The span is on the source's picture timeline
    and the clip starts both streams at its first frame (sound that starts late is preceded
    by silence, as :func:`~omni_core.media.load_audio` reads it); a rotated source is cut
    upright (ffmpeg applies the display rotation), so the clip carries none. Same input, same
    bytes. The file appears only when complete (temp file + rename). ``info`` (the source's
    probe) saves probing it again. A source without audio or video, or a span outside the
    part where both exist, is a MediaError.
    """
    opts = options or ClipOptions()
    src = str(src)
    out = Path(out_path)
    info = info or probe(src, timeout=timeout)
    if not info.has_video:
        raise MediaError(f"{src}: no video stream; a clip needs video")
    if not info.has_audio:
        raise MediaError(f"{src}: no audio stream; a clip needs the speech")
    if abs(span.duration_s - opts.clip_s) > 0.5 / opts.fps:
        raise ValueError(f"clip span lasts {span.duration_s:.4f} s, not {opts.clip_s:.4f} s "
                         f"({opts.clip_frames} frames at {opts.fps:g} fps)")
    a, b = info.av_span() or (0.0, info.duration_s)
    if span.start_s < a - 1.0 / opts.fps or span.end_s > b + 1.0 / opts.fps:
        raise MediaError(f"{src}: clip {span.start_s:.3f}-{span.end_s:.3f} s lies outside "
                         f"the video where it has sound ({a:.3f}-{b:.3f} s)")
    channels = info.channels or 1

    n_samples = int(round(opts.clip_s * opts.sample_rate))
    rate = Fraction(opts.fps).limit_denominator(1001)  # 24 -> 24/1, 29.97002997 -> 30000/1001
    vf = (f"fps=fps={rate.numerator}/{rate.denominator}:start_time=0,"
          f"trim=end_frame={opts.clip_frames},crop=w=trunc(iw/2)*2:h=trunc(ih/2)*2,format=yuv420p")
    af = []
    if channels > 1:  # the channel mean; ffmpeg's -ac 1 would use a -3 dB matrix instead
        af.append("pan=mono|c0=" + "+".join(f"{1 / channels:.8f}*c{i}" for i in range(channels)))
    af += [f"aresample={opts.sample_rate}:resampler=soxr", ALIGN_FILTER,
           f"apad=whole_len={n_samples}", f"atrim=end_sample={n_samples}"]
    out.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own per writer (a retried task may run beside a stale one); ffmpeg
    # creates it, so it gets the usual permissions
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.mp4")
    args = [binary("ffmpeg"), "-nostdin", "-y", "-hide_banner", "-loglevel", "error",
            # ffmpeg's -ss counts from the file's start, the picture may start later
            "-ss", f"{span.start_s + (info.video_start_s or 0.0):.6f}",
            "-t", f"{opts.clip_s:.6f}", "-i", src,
            "-map", "0:v:0", "-map", "0:a:0", "-sn", "-dn",
            "-map_metadata", "-1", "-map_chapters", "-1",
            "-vf", vf, "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(opts.crf),
            "-threads", str(X264_THREADS), "-pix_fmt", "yuv420p",
            "-af", ",".join(af), "-ar", str(opts.sample_rate), "-ac", "1",
            "-c:a", "aac", "-b:a", opts.audio_bitrate,
            "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            "-movflags", "+faststart", "-f", "mp4", str(tmp)]
    try:
        run(args, timeout=timeout, what=f"{src}: cut {span.start_s:.3f}-{span.end_s:.3f} s")
        got = probe(tmp)
        if got.n_frames != opts.clip_frames or not got.has_audio:
            raise MediaError(f"{src}: cut {span.start_s:.3f}-{span.end_s:.3f} s gave "
                             f"{got.n_frames} frames{'' if got.has_audio else ' and no audio'}"
                             f", expected {opts.clip_frames}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return replace(got, path=str(out))


def _r(t: float) -> float:
    """Times are kept to the microsecond: stable ids and comparisons without float noise."""
    return round(float(t), 6)
