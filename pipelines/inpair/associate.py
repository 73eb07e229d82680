"""The ``associate`` step of in-pair curation (``visual`` stage): which face track belongs to
which diarized speaker, and the clip's status that follows.

For every (speaker, face track) pair a score says how well the face moves with that speaker's
speech; the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``, maximising) then
pairs speakers with faces one to one. Two backends fill the (speakers x tracks) matrix:

- ``syncnet`` (:func:`pair_scores_syncnet`): SyncNet's Sync-C, exactly as the evaluator
  computes it (:mod:`omni_core.models.syncnet`), restricted to the speaker's segments. Each
  track is cropped and embedded once over its whole span at 25 fps, and one windows x offsets
  distance matrix is computed; for a speaker, the windows whose 5 frames all lie inside that
  speaker's segments are *pooled* (not scored segment by segment and averaged) and Sync-C is
  read off their mean distance curve. Pooling weights each segment by its length, scores a
  short segment with the same number of offsets as a long one, and lets the shifted audio
  reach real neighbouring audio rather than the zero padding a per-segment cut would add.
- ``motion`` (:func:`pair_scores_motion`): an offline classical score needing no weights, the
  Pearson correlation between a face's mouth-region motion (frame-difference energy in the
  lower third of its box, smoothed) and a speaker's speech-energy envelope at the frame rate,
  signed by time: positive while that speaker talks, negative while only others talk. A face
  therefore wins the speaker whose turns are *when* it moves, not merely the loudest one.

:func:`assign` turns a matrix into an :class:`Assignment`: pairs, each pair's margin over its
best alternative (the same speaker with another face, or the same face with another speaker),
``ambiguous`` when any margin is below ``min_margin`` (such clips are kept out of the samples
and counted), and ``filtered`` with a reason when the best score is below the backend's
confidence floor (``min_sync_conf`` 3 for Sync-C, ``min_motion_corr`` for the correlation).

Inputs shared by both backends: ``frames`` (T, H, W, 3) RGB uint8 at ``fps``; ``tracks_boxes``
a list of (T, 4) per-frame boxes ``x0, y0, x1, y1`` with NaN rows where the face is missing
(what :func:`omni_core.models.syncnet.crop_face_track` takes); ``audio16k`` the clip's mono
16 kHz waveform; ``segments`` ``(speaker, start_s, end_s)`` tuples in clip time (or objects
with those attributes, e.g. :mod:`.audio`'s ``Turn`` and ``Segment``). Rows of the
matrix follow ``speakers`` (default :func:`speaker_order`: sorted labels), columns the tracks.
Pure functions: no Ray, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from omni_core.errors import OmniError
from omni_core.models.syncnet import (
    FPS as SYNC_FPS,
)
from omni_core.models.syncnet import (
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    WINDOW_FRAMES,
    SyncOptions,
    crop_face_track,
    frame_indices_for_fps,
    mfcc_features,
    offset_distances,
    sync_features,
    sync_from_distances,
)

if TYPE_CHECKING:
    from omni_core.models.syncnet import SyncNet

__all__ = [
    "AssociateOptions",
    "Assignment",
    "SpeakerSpan",
    "assign",
    "associate",
    "dense_boxes",
    "frame_activity",
    "merge_dense",
    "mouth_motion",
    "pair_scores",
    "pair_scores_motion",
    "pair_scores_syncnet",
    "speaker_order",
    "spans",
    "smooth_boxes",
    "speech_energy",
    "status_after_association",
    "status_before_association",
]

SpeakerSpan = tuple[str, float, float]  # (speaker, start_s, end_s) in clip time

BACKENDS = ("auto", "syncnet", "motion")
DEFAULT_MARGIN = {"syncnet": 1.0, "motion": 0.1}


@dataclass(frozen=True)
class AssociateOptions:
    """Every choice of speaker <-> face association; defaults documented per field.

    Attributes:
        backend: "syncnet" (Sync-C with SyncNet weights), "motion" (offline correlation of
            mouth motion with speech energy, no weights) or "auto" (the job's ``models``
            switch picks: syncnet where its checkpoint is present, else motion). The
            functions below take a concrete backend; without options they use syncnet.
        min_sync_conf: syncnet: a clip whose best Sync-C over all pairs is below this is
            filtered (3.0, the usual "is anyone in sync" floor of curation pipelines).
        min_margin: a chosen pair whose score exceeds its best alternative by less than this
            makes the clip ambiguous. ``None`` takes the backend's default: 1.0 Sync-C for
            syncnet (a wrong face typically scores 0-2 against speech), 0.1 correlation for
            motion.
        min_sync_windows: syncnet: fewer pooled 5-frame windows than this (10 = 0.4 s) for a
            speaker on a track leaves that pair unscored (NaN).
        sync: SyncNet protocol options (crop, smoothing, offsets); boxes come from the caller,
            hence ``detector="given"``.
        min_motion_corr: motion: a clip whose best correlation is below this is filtered
            (0.1: no face moves with the speech; the right face of the sample corpus scores
            0.2-0.9, a wrong one below 0.1).
        mouth_fraction: motion: the lower part of the face box taken as mouth region (1/3).
        mouth_inset: motion: fraction of the box width cut from each side of the region (0.15:
            cheeks and background at the box edges move with head turns, not with speech).
        mouth_size: motion: (width, height) the grey mouth region is resized to before
            differencing, so that faces of any size weigh the same (32 x 16).
        smooth_s: motion: moving-average window in seconds applied to the motion and energy
            signals (0.2 s = 5 frames at 25 fps; at least 1 frame, made odd).
        box_smooth_s: motion: each track's box is stabilised before the mouth region is cut:
            its size fixed to the track's median size and its centre median-filtered over this
            many seconds (2.0 s; 0 turns it off). Detector boxes jitter by a few pixels and
            change size from sample to sample; the shifting, rescaled region adds
            frame-difference energy that has nothing to do with speech. Measured on the sample
            corpus's one-person clips with LBP boxes: correlation 0.24 / -0.09 unstabilised,
            0.40 / 0.20 at 2 s, against 0.41 / 0.34 with the static ground-truth box;
            multi-person clips keep their margins either way.
    """

    backend: str = "auto"
    min_sync_conf: float = 3.0
    min_margin: float | None = None
    min_sync_windows: int = 10
    sync: SyncOptions = field(default_factory=lambda: SyncOptions(detector="given"))
    min_motion_corr: float = 0.1
    mouth_fraction: float = 1 / 3
    mouth_inset: float = 0.15
    mouth_size: tuple[int, int] = (32, 16)
    smooth_s: float = 0.2
    box_smooth_s: float = 2.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.min_margin is not None and self.min_margin < 0:
            raise ValueError(f"min_margin must be >= 0, got {self.min_margin}")
        if self.min_sync_windows < 1:
            raise ValueError(f"min_sync_windows must be >= 1, got {self.min_sync_windows}")
        if not 0 < self.mouth_fraction <= 1 or not 0 <= self.mouth_inset < 0.5:
            raise ValueError("need 0 < mouth_fraction <= 1 and 0 <= mouth_inset < 0.5")
        if min(self.mouth_size) < 1 or self.smooth_s < 0:
            raise ValueError("mouth_size must be positive and smooth_s >= 0")

    def concrete(self) -> str:
        if self.backend == "auto":
            raise OmniError("associate.backend 'auto' is decided by the job "
                            "(pipelines.inpair.models.resolve_models); give syncnet or motion")
        return self.backend

    @property
    def margin(self) -> float:
        """The ambiguity threshold in force (``min_margin`` or the backend's default)."""
        return DEFAULT_MARGIN[self.concrete()] if self.min_margin is None else self.min_margin

    @property
    def min_conf(self) -> float:
        """The confidence floor in force for this backend."""
        return self.min_sync_conf if self.concrete() == "syncnet" else self.min_motion_corr

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: the options of the paper's backend, for callers that give none
PAPER_OPTIONS = AssociateOptions(backend="syncnet")


@dataclass(frozen=True)
class Assignment:
    """Speakers paired with face tracks (row and column indices of the score matrix).

    ``margins[i]`` is ``scores[i]`` minus the best alternative of that pair (the speaker with
    any other track, the track with any other speaker; ``inf`` when there is none, e.g. one
    speaker and one face). ``best`` is the highest finite score of the matrix (NaN if none).
    ``filtered`` is None or the one-line reason the clip is dropped; ``ambiguous`` is True when
    some margin is below the threshold. Speakers or tracks left over (rectangular matrices,
    unscored pairs) are simply not in ``pairs``.
    """

    pairs: tuple[tuple[int, int], ...]
    scores: tuple[float, ...]
    margins: tuple[float, ...]
    best: float
    ambiguous: bool
    filtered: str | None

    @property
    def kept(self) -> bool:
        """True when the clip goes on to the samples (neither filtered nor ambiguous)."""
        return self.filtered is None and not self.ambiguous

    def track_of(self) -> dict[int, int]:
        """Speaker row -> track column."""
        return dict(self.pairs)

    def labelled(self, speakers: Sequence[str]) -> dict[str, int]:
        """Speaker label -> track column, with ``speakers`` the matrix's row labels."""
        return {speakers[s]: t for s, t in self.pairs}


# --------------------------------------------------------------------------------------------
# the assignment (pure)


def assign(scores: np.ndarray, options: AssociateOptions | None = None) -> Assignment:
    """Hungarian assignment maximising the total score; margins, ambiguity, filtering.

    NaN entries are pairs that could not be scored: never chosen (a speaker whose only
    possible face is unscored stays unassigned) and not counted as alternatives.
    """
    opt = options or PAPER_OPTIONS
    m = np.asarray(scores, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"scores must be a (speakers, tracks) matrix, got shape {m.shape}")
    finite = np.isfinite(m)
    best = float(m[finite].max()) if finite.any() else math.nan
    if m.size == 0 or not finite.any():
        what = "no speakers" if m.shape[0] == 0 else (
            "no face tracks" if m.shape[1] == 0 else "no speaker/face pair could be scored")
        return Assignment((), (), (), best, False, what)
    from scipy.optimize import linear_sum_assignment

    low = float(m[finite].min())
    span = float(m[finite].max()) - low
    filled = np.where(finite, m, low - 1e6 * (span + 1.0))  # unscored: never worth taking
    rows, cols = linear_sum_assignment(filled, maximize=True)
    pairs, chosen, margins = [], [], []
    for s, t in zip(rows.tolist(), cols.tolist(), strict=True):
        if not finite[s, t]:
            continue
        alts = np.concatenate([np.delete(m[s], t), np.delete(m[:, t], s)])
        alts = alts[np.isfinite(alts)]
        pairs.append((s, t))
        chosen.append(float(m[s, t]))
        margins.append(float(m[s, t] - alts.max()) if alts.size else math.inf)
    ambiguous = any(g < opt.margin for g in margins)
    filtered = None
    if best < opt.min_conf:
        what = "Sync-C" if opt.backend == "syncnet" else "motion correlation"
        filtered = f"best {what} {best:.3g} below {opt.min_conf:g}"
    return Assignment(tuple(pairs), tuple(chosen), tuple(margins), best, ambiguous, filtered)


# --------------------------------------------------------------------------------------------
# shared helpers


def spans(segments: Sequence[Any]) -> list[SpeakerSpan]:
    """``(speaker, start_s, end_s)`` tuples from tuples or objects with those attributes."""
    out = []
    for s in segments:
        if hasattr(s, "speaker"):
            out.append((str(s.speaker), float(s.start_s), float(s.end_s)))
        else:
            spk, a, b = s
            out.append((str(spk), float(a), float(b)))
    return out


def speaker_order(segments: Sequence[Any]) -> list[str]:
    """The matrix's default row labels: every speaker of ``segments``, sorted."""
    return sorted({s[0] for s in spans(segments)})


def dense_boxes(frame_indices: Sequence[int], boxes: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, 4) per-frame boxes of one track: linear interpolation between the sampled
    detections, NaN before the first and after the last (what the association's crops take)."""
    idx = np.asarray(frame_indices, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.full((n_frames, 4), np.nan)
    if len(idx) == 0:
        return out
    lo, hi = int(idx[0]), min(int(idx[-1]), n_frames - 1)
    t = np.arange(lo, hi + 1, dtype=np.float64)
    for c in range(4):
        out[lo:hi + 1, c] = np.interp(t, idx, b[:, c])
    return out


def merge_dense(tracks: Sequence[np.ndarray]) -> np.ndarray:
    """One person's per-frame boxes from its tracks' dense boxes (first track wins a frame)."""
    out = np.array(tracks[0], dtype=np.float64, copy=True)
    for other in tracks[1:]:
        free = ~np.isfinite(out[:, 0]) & np.isfinite(other[:, 0])
        out[free] = other[free]
    return out


def frame_activity(segments: Sequence[Any], speakers: Sequence[str], n_frames: int,
                   fps: float) -> np.ndarray:
    """(speakers, frames) bool: frame ``f`` (centre ``(f + 0.5) / fps``) is in a segment."""
    centre = (np.arange(n_frames) + 0.5) / fps
    out = np.zeros((len(speakers), n_frames), dtype=bool)
    row = {s: i for i, s in enumerate(speakers)}
    for spk, a, b in spans(segments):
        if spk in row:
            out[row[spk]] |= (centre >= a) & (centre < b)
    return out


def _check(frames: np.ndarray, fps: float, tracks_boxes: Sequence[np.ndarray],
           audio16k: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {f.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    boxes = [np.asarray(b, dtype=np.float64) for b in tracks_boxes]
    for b in boxes:
        if b.shape != (len(f), 4):
            raise ValueError(f"each track's boxes must be ({len(f)}, 4), got {b.shape}")
    x = np.asarray(audio16k, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio16k must be mono (n,), got {x.shape}")
    return f, boxes, x


# --------------------------------------------------------------------------------------------
# syncnet backend


def pair_scores_syncnet(
    frames: np.ndarray, fps: float, tracks_boxes: Sequence[np.ndarray], audio16k: np.ndarray,
    segments: Sequence[Any], model: SyncNet, options: AssociateOptions | None = None, *,
    speakers: Sequence[str] | None = None,
) -> np.ndarray:
    """(speakers, tracks) Sync-C of each face track over each speaker's segments only.

    Frames and boxes are brought to 25 fps (``ffmpeg -r 25`` slots) first. One network pass
    per track; the windows inside a speaker's segments are pooled into one distance curve
    (see the module docstring). NaN where a track has no box, is too short for SyncNet, or
    overlaps the speaker's segments by fewer than ``min_sync_windows`` windows.
    """
    opt = options or PAPER_OPTIONS
    sopt = opt.sync
    f, boxes, x = _check(frames, fps, tracks_boxes, audio16k)
    names = list(speakers) if speakers is not None else speaker_order(segments)
    out = np.full((len(names), len(boxes)), np.nan)
    if not len(f):
        return out
    if abs(fps - SYNC_FPS) > 1e-6:
        idx = frame_indices_for_fps(len(f), fps, SYNC_FPS)
        f = f[idx]
        boxes = [b[idx] for b in boxes]
    active = frame_activity(segments, names, len(f), SYNC_FPS)
    for k, b in enumerate(boxes):
        if not np.isfinite(b).all(axis=1).any():
            continue
        track = crop_face_track(f, b, sopt)
        seg = x[track.start * SAMPLES_PER_FRAME:track.stop * SAMPLES_PER_FRAME]
        # upstream's window count: min(frames, samples // 640) - 5
        n_win = min(len(track.crops), len(seg) // SAMPLES_PER_FRAME) - WINDOW_FRAMES
        if n_win < 1:
            continue
        lip, aud = sync_features(track.crops, mfcc_features(seg, SAMPLE_RATE, sopt), model,
                                 sopt, n_windows=n_win)
        dists = offset_distances(lip, aud, sopt.vshift)
        first = track.start + np.arange(n_win)  # window i covers frames first[i] .. + 4
        for i in range(len(names)):
            inside = np.ones(n_win, dtype=bool)
            for j in range(WINDOW_FRAMES):
                inside &= active[i, first + j]
            if int(inside.sum()) >= opt.min_sync_windows:
                res = sync_from_distances(dists[inside], sopt.vshift,
                                          framewise_kernel=sopt.framewise_kernel)
                out[i, k] = res.sync_c
    return out


# --------------------------------------------------------------------------------------------
# motion backend


def _smooth(x: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """NaN-aware centred moving average over ``seconds`` (odd number of frames, >= 1)."""
    n = max(1, int(round(seconds * fps)))
    n += 1 - n % 2
    if n == 1:
        return x.astype(np.float64)
    ok = np.isfinite(x)
    k = np.ones(n)
    num = np.convolve(np.where(ok, x, 0.0), k, mode="same")
    den = np.convolve(ok.astype(np.float64), k, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~ok] = np.nan
    return out


def smooth_boxes(boxes: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """Stabilised boxes: within every run of frames that have a box, the size is the run's
    median size and the centre is median-filtered over ``seconds`` (odd number of frames,
    edges replicated); NaN rows stay NaN."""
    from scipy.ndimage import median_filter

    b = np.array(boxes, dtype=np.float64, copy=True)
    n = max(1, int(round(seconds * fps)))
    n += 1 - n % 2
    if n == 1:
        return b
    ok = np.isfinite(b).all(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        run = b[start:stop]
        centre = median_filter((run[:, :2] + run[:, 2:]) / 2, size=(n, 1), mode="nearest")
        half = np.median(run[:, 2:] - run[:, :2], axis=0) / 2
        b[start:stop] = np.concatenate([centre - half, centre + half], axis=1)
    return b


def mouth_motion(frames: np.ndarray, boxes: np.ndarray,
                 options: AssociateOptions | None = None) -> np.ndarray:
    """(T,) frame-difference energy of the mouth region of one face track (unsmoothed).

    The region is the lower ``mouth_fraction`` of each frame's box, inset by ``mouth_inset``
    of its width on each side, in grey, resized to ``mouth_size``; the value at frame ``t`` is
    the mean absolute difference to frame ``t - 1``. NaN where either frame has no box.
    """
    import cv2

    opt = options or PAPER_OPTIONS
    b = np.asarray(boxes, dtype=np.float64)
    n, h, w = len(frames), frames.shape[1], frames.shape[2]
    out = np.full(n, np.nan)
    prev = None
    for t in range(n):
        cur = None
        if np.isfinite(b[t]).all():
            x0, y0, x1, y1 = b[t]
            bw = x1 - x0
            ya = int(np.clip(np.floor(y1 - (y1 - y0) * opt.mouth_fraction), 0, h))
            yb = int(np.clip(np.ceil(y1), 0, h))
            xa = int(np.clip(np.floor(x0 + bw * opt.mouth_inset), 0, w))
            xb = int(np.clip(np.ceil(x1 - bw * opt.mouth_inset), 0, w))
            if yb > ya and xb > xa:
                grey = cv2.cvtColor(np.ascontiguousarray(frames[t, ya:yb, xa:xb]),
                                    cv2.COLOR_RGB2GRAY)
                cur = cv2.resize(grey, opt.mouth_size, interpolation=cv2.INTER_AREA
                                 ).astype(np.float32)
        if cur is not None and prev is not None:
            out[t] = float(np.mean(np.abs(cur - prev)))
        prev = cur
    return out


def speech_energy(audio16k: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) RMS of the 16 kHz waveform over each video frame's span (0 past the end)."""
    x = np.asarray(audio16k, dtype=np.float64)
    edges = np.round(np.arange(n_frames + 1) * SAMPLE_RATE / fps).astype(np.int64)
    out = np.zeros(n_frames)
    for i in range(n_frames):
        seg = x[edges[i]:edges[i + 1]]
        if seg.size:
            out[i] = math.sqrt(float(np.mean(seg * seg)))
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return math.nan
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 1e-12 else 0.0


def pair_scores_motion(
    frames: np.ndarray, fps: float, tracks_boxes: Sequence[np.ndarray], audio16k: np.ndarray,
    segments: Sequence[Any], options: AssociateOptions | None = None, *,
    speakers: Sequence[str] | None = None,
) -> np.ndarray:
    """(speakers, tracks) correlation of each track's mouth motion with each speaker's speech.

    The speaker's target signal at frame rate is the smoothed speech energy ``E(t)`` signed by
    who talks: ``+E(t)`` on the speaker's frames, ``-E(t)`` on frames where only other
    speakers talk, 0 in silence. Pearson correlation with the smoothed :func:`mouth_motion`
    over the frames where the track has a box; NaN if fewer than 3 such frames.
    """
    opt = options or PAPER_OPTIONS
    f, boxes, x = _check(frames, fps, tracks_boxes, audio16k)
    names = list(speakers) if speakers is not None else speaker_order(segments)
    n = len(f)
    active = frame_activity(segments, names, n, fps)
    energy = _smooth(speech_energy(x, fps, n), fps, opt.smooth_s)
    anyone = active.any(axis=0)
    targets = [np.where(active[i], energy, np.where(anyone, -energy, 0.0))
               for i in range(len(names))]
    out = np.full((len(names), len(boxes)), np.nan)
    for k, b in enumerate(boxes):
        b = smooth_boxes(b, fps, opt.box_smooth_s)
        motion = _smooth(mouth_motion(f, b, opt), fps, opt.smooth_s)
        for i in range(len(names)):
            out[i, k] = _corr(motion, targets[i])
    return out


# --------------------------------------------------------------------------------------------
# one call for a stage


def pair_scores(
    frames: np.ndarray, fps: float, tracks_boxes: Sequence[np.ndarray], audio16k: np.ndarray,
    segments: Sequence[Any], options: AssociateOptions | None = None,
    model: SyncNet | None = None, *, speakers: Sequence[str] | None = None,
) -> np.ndarray:
    """The score matrix of ``options.backend`` (``model`` is required for syncnet)."""
    opt = options or PAPER_OPTIONS
    if opt.backend == "motion":
        return pair_scores_motion(frames, fps, tracks_boxes, audio16k, segments, opt,
                                  speakers=speakers)
    if model is None:
        raise ValueError("the syncnet backend needs a SyncNet model")
    return pair_scores_syncnet(frames, fps, tracks_boxes, audio16k, segments, model, opt,
                               speakers=speakers)


def associate(
    frames: np.ndarray, fps: float, tracks_boxes: Sequence[np.ndarray], audio16k: np.ndarray,
    segments: Sequence[Any], options: AssociateOptions | None = None,
    model: SyncNet | None = None,
) -> tuple[list[str], np.ndarray, Assignment]:
    """Speaker labels (rows), score matrix and assignment for one clip."""
    opt = options or PAPER_OPTIONS
    names = speaker_order(segments)
    scores = pair_scores(frames, fps, tracks_boxes, audio16k, segments, opt, model,
                         speakers=names)
    return names, scores, assign(scores, opt)


# --------------------------------------------------------------------------------------------
# a clip's status: which filter, if any, stops it (omni_core.manifests.CLIP_STATUS)


def status_before_association(speakers: Sequence[str], identities: Sequence[Any],
                              tracks: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    """``(status, reason)`` of a clip that cannot be associated: nobody speaks, or no face
    track passed the quality filters (the kinds of rejection named); None when it can."""
    from .faces import reject_kinds

    if not speakers:
        return "no_speech", "no words attributed to any speaker"
    if not identities:
        kinds = sorted({k for t in tracks for k in reject_kinds(t["reject_reason"])})
        why = f" (rejected: {', '.join(kinds)})" if kinds else ""
        return "no_faces", "no face track passed the quality filters" + why
    return None


def status_after_association(assignment: Assignment, names: Sequence[str], n_identities: int,
                             options: AssociateOptions) -> tuple[str, str] | None:
    """``(status, reason)`` of a clip the association stops: a filter fired, a speaker has no
    face, or the assignment is ambiguous; None when every speaker has their face."""
    if assignment.filtered:
        return "filtered", assignment.filtered
    if len(assignment.pairs) < len(names):
        lost = sorted(set(names) - {names[s] for s, _ in assignment.pairs})
        return "unmatched", (f"no face for speaker(s) {', '.join(lost)} ({len(names)} "
                             f"speakers, {n_identities} identities)")
    if assignment.ambiguous:
        return "ambiguous", (f"assignment margin {min(assignment.margins):.3g} below "
                             f"{options.margin:g}")
    return None
