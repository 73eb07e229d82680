"""The face-track pipeline around SyncNet, as ``joonson/syncnet_python`` runs it on a video.

Reference: ``run_pipeline.py`` (convert, detect, scene split, ``track_shot``, ``crop_video``)
and ``run_syncnet.py`` + ``SyncNetInstance.evaluate`` (per track) in
https://github.com/joonson/syncnet_python @ 6efbb1c. The PyPI package ``syncnet-python``
(0.2.3, MoChaBench's port of the same code) is the executable reference the equivalence test
(``tests/evaluation/metrics/test_sync_reference.py``) compares with.

With ``SyncOptions.media == "reference"`` (the default) every step is the upstream one:

1. ``ffmpeg -i VIDEO -qscale:v 2 -af aresample=async=1:first_pts=0 -r 25 video.avi``
   (MPEG-4 part 2, lossy; ``-async 1`` is that filter), then
   ``ffmpeg -i video.avi -qscale:v 2 -threads 1 -f image2 %06d.jpg``; the frames are those
   JPEGs as OpenCV decodes them.
2. 16 kHz mono pcm_s16le audio with ffmpeg's default resampler: from the AVI's own audio track
   (``audio_from="avi"``, run_pipeline: the AVI muxer re-encodes it, as MP3) or straight from
   the input's audio (``audio_from="source"``, the syncnet-python / MoChaBench pipeline).
3. S3FD on every frame (RGB), PySceneDetect's ``ContentDetector`` (defaults) on ``video.avi``
   for the shots; no cut -> one shot of the frames PySceneDetect read (:func:`scene_bounds`:
   OpenCV skips the AVI's empty packets, which ffmpeg's JPEG export fills, so a 24 fps input
   of 121 frames gives 128 JPEGs of which the last 7 belong to no shot; upstream too).
4. :func:`track_shot` per shot of at least ``min_track`` frames.
5. Per track the crops of ``crop_face_track`` written to an XVID AVI with OpenCV (lossy), the
   audio cut with ``ffmpeg -ss -to``, both muxed, then read back the way
   ``SyncNetInstance.evaluate`` reads them (``ffmpeg -f image2`` JPEGs, pcm_s16le 16 kHz).
6. SyncNet on those frames and samples (:func:`~.syncnet.sync_scores`).

``media="direct"`` (:func:`score_decoded`) keeps everything in memory instead: frames decoded
once at 25 fps (:func:`~.syncnet.frame_indices_for_fps`), audio through :mod:`omni_core.media`
(soxr), crops scored as cut, no shot split. Faster and codec-free, but not upstream's numbers.

The syncnet-python port differs from run_pipeline in two places, both options here:
``audio_from`` (it reads the input's audio, not the AVI's MP3 track) and ``tracker`` (after
an IoU miss it gives up the frame). Its ``min_track`` default is 50, run_pipeline's 100.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omni_core.errors import OmniError

from .syncnet import (
    FPS,
    SAMPLE_RATE,
    SyncNet,
    SyncOptions,
    SyncResult,
    crop_face_track,
    sync_scores,
)

__all__ = [
    "FaceTrackBoxes",
    "ReferenceMedia",
    "VideoSync",
    "crop_roundtrip",
    "iou",
    "read_jpegs",
    "read_wav_int16",
    "reference_media",
    "scene_bounds",
    "score_decoded",
    "score_video",
    "track_shot",
]

#: run_pipeline's ``iouThres`` (not a command-line option upstream).
TRACK_IOU = 0.5


# --------------------------------------------------------------------------------------------
# face tracking (run_pipeline.track_shot)


@dataclass(frozen=True)
class FaceTrackBoxes:
    """One face track: every frame from the first to the last detection, boxes interpolated."""

    frames: np.ndarray  # (n,) consecutive frame indices
    boxes: np.ndarray  # (n, 4) x0, y0, x1, y1
    n_detections: int

    def padded(self, n_frames: int) -> np.ndarray:
        """(n_frames, 4) boxes, NaN outside the track (what ``crop_face_track`` takes)."""
        out = np.full((n_frames, 4), np.nan)
        out[self.frames] = self.boxes
        return out


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """``bb_intersection_over_union``: no +1 pixel convention; 0 for two empty boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union != 0 else 0.0


def track_shot(
    boxes_per_frame: Sequence[Sequence[Sequence[float]]], options: SyncOptions,
    first_frame: int = 0,
) -> list[FaceTrackBoxes]:
    """Face tracks of one shot, linked the way ``run_pipeline.track_shot`` links them.

    ``boxes_per_frame[k]``: the boxes of frame ``first_frame + k`` in detector order (best
    score first). Tracks are built one at a time: a pass over the frames starts the track with
    the first unused box, then takes the first box per frame whose IoU with the track's last box
    exceeds ``track_iou`` while the frame gap is at most ``max_gap``; used boxes leave the pool
    and passes repeat until one finds no box at all. Upstream removes boxes from the list it is
    iterating, so the box after a taken one is not looked at in that pass; that is kept.
    ``tracker="joonson"`` tries the next box of the frame after an IoU miss;
    ``"mochabench"`` (syncnet-python 0.2.3) skips the rest of that frame. A frame gap above
    ``max_gap`` ends the pass's use of that frame in both.

    A track is kept when it has more than ``min_track`` detections and the mean width or
    height of its boxes (linearly interpolated over every frame of its span, as ``interp1d``)
    exceeds ``min_face_size``.
    """
    from scipy.interpolate import interp1d

    pool = [[(first_frame + k, np.asarray(b[:4], np.float64)) for b in boxes]
            for k, boxes in enumerate(boxes_per_frame)]
    tracks: list[FaceTrackBoxes] = []
    while True:
        track: list[tuple[int, np.ndarray]] = []
        for faces in pool:
            i = 0
            while i < len(faces):
                frame, box = faces[i]
                if not track:
                    track.append(faces.pop(i))
                elif frame - track[-1][0] <= options.max_gap:
                    if iou(box, track[-1][1]) > options.track_iou:
                        track.append(faces.pop(i))
                    elif options.tracker == "mochabench":
                        break
                else:
                    break
                i += 1  # after a pop this skips a box, as upstream's list iterator does
        if not track:
            return tracks
        if len(track) <= options.min_track:
            continue
        frames = np.array([f for f, _ in track])
        boxes = np.stack([b for _, b in track])
        span = np.arange(frames[0], frames[-1] + 1)
        interp = np.stack([interp1d(frames, boxes[:, k])(span) for k in range(4)], axis=1)
        size = max(np.mean(interp[:, 2] - interp[:, 0]), np.mean(interp[:, 3] - interp[:, 1]))
        if size > options.min_face_size:
            tracks.append(FaceTrackBoxes(span, interp, len(track)))


# --------------------------------------------------------------------------------------------
# upstream's media handling


def _ffmpeg(args: Sequence[str], what: str) -> None:
    from omni_core.media.ffmpeg import binary, run

    run([binary("ffmpeg"), "-nostdin", "-y", "-v", "error", *args], timeout=600, what=what)


def read_wav_int16(path: str | Path) -> np.ndarray:
    """Samples of a pcm_s16le wav as ``scipy.io.wavfile.read`` gives them (int16, mono)."""
    from scipy.io import wavfile

    rate, data = wavfile.read(str(path))
    if rate != SAMPLE_RATE or data.dtype != np.int16 or data.ndim != 1:
        raise OmniError(f"sync: {path} is not 16 kHz mono int16 ({rate} Hz, {data.dtype}, "
                        f"shape {data.shape})")
    return data


def read_jpegs(folder: Path) -> np.ndarray:
    """(T, H, W, 3) RGB frames from ``%06d.jpg`` files decoded by OpenCV (sorted by name)."""
    import cv2

    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise OmniError(f"sync: ffmpeg wrote no frame into {folder}")
    return np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files])


@dataclass
class ReferenceMedia:
    """What run_pipeline works on: 25 fps frames (RGB), 16 kHz int16 audio and their files."""

    frames: np.ndarray = field(repr=False)
    audio: np.ndarray = field(repr=False)
    avi: Path
    wav: Path


def reference_media(video: str | Path, audio: str | Path | None, workdir: str | Path,
                    options: SyncOptions) -> ReferenceMedia:
    """Convert and decode a video as run_pipeline does (module docstring, steps 1-2).

    ``audio``: where the audio is when not in ``video`` (``None`` or the video itself: its own
    track). With ``audio_from="avi"`` a separate audio file is muxed into the AVI, so it goes
    through the same re-encoding as a video's own track would.
    """
    work = Path(workdir)
    (work / "frames").mkdir(parents=True, exist_ok=True)
    avi, wav = work / "video.avi", work / "audio.wav"
    separate = audio is not None and Path(audio).resolve() != Path(video).resolve()
    inputs = ["-i", str(video)] + (["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0"]
                                   if separate and options.audio_from == "avi" else [])
    _ffmpeg([*inputs, "-qscale:v", "2", "-af", "aresample=async=1:first_pts=0",
             "-r", str(FPS), str(avi)], f"{video}: 25 fps AVI")
    _ffmpeg(["-i", str(avi), "-qscale:v", "2", "-threads", "1", "-f", "image2",
             str(work / "frames" / "%06d.jpg")], f"{video}: frames")
    src = avi if options.audio_from == "avi" else Path(audio if separate else video)
    _ffmpeg(["-i", str(src), "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar",
             str(SAMPLE_RATE), str(wav)], f"{src}: 16 kHz audio")
    return ReferenceMedia(read_jpegs(work / "frames"), read_wav_int16(wav), avi, wav)


def scene_bounds(avi: str | Path, n_frames: int) -> list[tuple[int, int]]:
    """``[start, end)`` frames of the shots PySceneDetect's ``ContentDetector`` (defaults)
    finds in ``avi`` (run_pipeline.scene_detect); without a cut, one shot of the frames it read.

    PySceneDetect decodes with OpenCV, which skips the AVI's empty (dropped-frame) packets that
    ffmpeg's JPEG export fills with repeats, so it can see fewer frames than there are JPEGs;
    like upstream, frames past what it read belong to no shot and are never tracked.
    """
    import logging

    from scenedetect import ContentDetector, SceneManager, open_video

    # its INFO line per video ("Detecting scenes...") would flood an eval's output
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)
    video = open_video(str(avi), backend="opencv")
    manager = SceneManager()
    manager.add_detector(ContentDetector())
    n_read = manager.detect_scenes(video=video)
    scenes = manager.get_scene_list()
    if not scenes:
        return [(0, min(n_read, n_frames))]
    return [(int(a.frame_num), min(int(b.frame_num), n_frames)) for a, b in scenes]


def crop_roundtrip(crops_rgb: np.ndarray, wav: str | Path, start: int, stop: int,
                   workdir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``crop_video`` + the reading half of ``SyncNetInstance.evaluate`` for one track.

    The crops go into an XVID AVI at 25 fps through OpenCV; ``[start / 25, stop / 25)`` s of
    ``wav`` is cut with ``ffmpeg -ss -to`` and muxed in unchanged; the AVI is then read back as
    ffmpeg's ``image2`` JPEGs (RGB here) and 16 kHz pcm_s16le samples.
    """
    import cv2

    work = Path(workdir)
    (work / "frames").mkdir(parents=True, exist_ok=True)
    size = (int(crops_rgb.shape[2]), int(crops_rgb.shape[1]))
    writer = cv2.VideoWriter(str(work / "t.avi"), cv2.VideoWriter_fourcc(*"XVID"), FPS, size)
    if not writer.isOpened():
        raise OmniError("sync: OpenCV cannot write an XVID AVI (opencv built without ffmpeg?)")
    for crop in crops_rgb:
        writer.write(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    writer.release()
    cut, avi = work / "audio_cut.wav", work / "track.avi"
    _ffmpeg(["-i", str(wav), "-ss", f"{start / FPS:.3f}", "-to", f"{stop / FPS:.3f}", str(cut)],
            "sync: track audio")
    _ffmpeg(["-i", str(work / "t.avi"), "-i", str(cut), "-c:v", "copy", "-c:a", "copy",
             str(avi)], "sync: track AVI")
    _ffmpeg(["-i", str(avi), "-threads", "1", "-f", "image2", str(work / "frames" / "%06d.jpg")],
            "sync: track frames")
    _ffmpeg(["-i", str(avi), "-af", "aresample=async=1:first_pts=0", "-ac", "1", "-vn",
             "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE), str(work / "audio.wav")],
            "sync: track audio")
    return read_jpegs(work / "frames"), read_wav_int16(work / "audio.wav")


# --------------------------------------------------------------------------------------------
# the whole video

#: a face detector: RGB frames -> per frame, boxes (x0, y0, x1, y1[, score]) best first
Detector = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class VideoSync:
    """Everything one video's Sync-C / Sync-D came from (for tests and debugging)."""

    n_frames: int
    detections: list[np.ndarray] = field(repr=False)
    scenes: list[tuple[int, int]]
    tracks: list[FaceTrackBoxes] = field(repr=False)
    results: list[SyncResult] = field(repr=False)


def _tracks(detections: list[np.ndarray], scenes: list[tuple[int, int]],
            options: SyncOptions) -> list[FaceTrackBoxes]:
    tracks: list[FaceTrackBoxes] = []
    for a, b in scenes:
        if b - a >= options.min_track:
            tracks.extend(track_shot(detections[a:b], options, first_frame=a))
    return tracks


def score_video(
    video: str | Path, audio: str | Path | None, model: SyncNet, detector: Detector,
    options: SyncOptions, workdir: str | Path | None = None,
) -> VideoSync:
    """Upstream's whole pipeline on a video file (``options.media == "reference"``): convert,
    detect, split into shots, track, crop through XVID and score every face track.

    ``workdir`` keeps upstream's intermediate files where given; otherwise a temporary folder
    is used and removed.
    """
    if options.media != "reference":
        raise ValueError("score_video runs the reference media steps; for media='direct' "
                         "decode the frames and call score_decoded")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="omni-sync-") as tmp:
            return score_video(video, audio, model, detector, options, tmp)
    work = Path(workdir)
    media = reference_media(video, audio, work, options)
    frames = media.frames
    scenes = scene_bounds(media.avi, len(frames)) if options.scene_split else [(0, len(frames))]
    detections = detector(frames)
    tracks = _tracks(detections, scenes, options)
    results = []
    for k, tr in enumerate(tracks):
        cut = crop_face_track(frames, tr.padded(len(frames)), options)
        crops, pcm = crop_roundtrip(cut.crops, media.wav, cut.start, cut.stop,
                                    work / f"track{k:05d}")
        results.append(sync_scores(crops, pcm.astype(np.float32) / 32768.0, SAMPLE_RATE, model,
                                   options, track_start=cut.start))
    return VideoSync(len(frames), detections, scenes, tracks, results)


def score_decoded(
    frames: np.ndarray, audio: np.ndarray, sample_rate: int, model: SyncNet,
    detector: Detector, options: SyncOptions,
) -> VideoSync:
    """``media="direct"``: the same detection, tracking and scoring on frames already at
    25 fps (:func:`~.syncnet.frame_indices_for_fps`) and mono float audio, crops scored as cut,
    the whole clip one shot."""
    from .syncnet import sync_scores_from_boxes

    if sample_rate != SAMPLE_RATE:
        from omni_core.media.audio import resample

        audio = resample(np.asarray(audio, np.float32), sample_rate, SAMPLE_RATE)
    scenes = [(0, len(frames))]
    detections = detector(frames)
    tracks = _tracks(detections, scenes, options)
    results = [sync_scores_from_boxes(frames, tr.padded(len(frames)), audio, SAMPLE_RATE, model,
                                      options) for tr in tracks]
    return VideoSync(len(frames), detections, scenes, tracks, results)
