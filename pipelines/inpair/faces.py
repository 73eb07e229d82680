"""Stage 3 of in-pair curation: faces -> tracks -> identities of one clip (no Ray here).

:func:`analyze_faces` samples a clip's frames at ``sample_fps``, detects faces on them (SCRFD
from an insightface pack, or the classical LBP cascade of :mod:`omni_core.models.face` for
offline demos), links detections across samples by box IoU (``omni_core.models.syncnet.
track_faces``), embeds every detection with ArcFace (one recogniser pass per clip,
:func:`omni_core.models.face.embed_images`), applies the quality filters (face size, track
length, blur) and clusters the tracks that pass into identities: average-linkage
agglomerative clustering on embedding cosine, where two tracks seen in the same frame are
never merged (two faces at once are two people). :func:`track_rows` / :func:`identity_rows`
turn a result into ``face_tracks`` / ``identities`` rows with deterministic ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np

from omni_core.errors import OmniError
from omni_core.manifests import stable_id
from omni_core.models.face import (
    FaceModel,
    IdSimOptions,
    cosine_matrix,
    embed_images,
    face_model_class,
)
from omni_core.models.syncnet import SyncOptions, frame_indices_for_fps, track_faces

__all__ = [
    "FaceOptions",
    "FaceResult",
    "Identity",
    "Track",
    "analyze_faces",
    "cluster_tracks",
    "face_sharpness",
    "identity_rows",
    "reject_kinds",
    "track_id",
    "track_rows",
]


@dataclass(frozen=True)
class FaceOptions:
    """Every choice of the faces stage (recorded with the run's config)."""

    #: ``scrfd``: the insightface pack's SCRFD detector (reference). ``lbp``: scikit-image's
    #: LBP frontal-face cascade (ships with scikit-image; finds real frontal faces offline, the
    #: lite profile's). ``auto``: the job's ``models`` switch picks (scrfd where the pack's
    #: checkpoints are present, else lbp).
    backend: Literal["auto", "scrfd", "lbp"] = "auto"
    #: what embeds the faces: ``arcface`` (the pack's ArcFace from the weights folder),
    #: ``twin`` (the pack's ArcFace debug twin, random weights: it keeps the identities of one
    #: clip apart through the tracks and the frame rule, but its embeddings carry no identity
    #: across clips) or ``auto`` (arcface where the pack is present, else twin).
    embedder: Literal["auto", "arcface", "twin"] = "auto"
    #: frames per second of the clip that are analysed (sampled like ``ffmpeg -r``).
    sample_fps: float = 5.0
    #: SCRFD input (width, height); insightface's ``FaceAnalysis.prepare`` default.
    det_size: tuple[int, int] = (640, 640)
    #: SCRFD score threshold (insightface's default).
    det_thresh: float = 0.5
    #: SCRFD: a frame with no face is detected again with a grey border of a quarter of its
    #: size on every side (the evaluator's FaceSim-Arc retry; boxes come back in the frame's
    #: pixels). At 640 x 640 SCRFD misses faces larger than its biggest anchors: each of the
    #: release's close-up reference photos scores under 0.1 without it and is found with it
    #: (tests/omni_core/models/test_face_scrfd.py); close-up talking heads are common.
    pad_retry: bool = True
    #: a track whose smallest box side is below this is rejected (``small_face``).
    min_face_px: float = 100.0
    #: a track covering less time than this is rejected (``short_track``); the span is from
    #: its first to its last sample plus one sampling period.
    min_track_s: float = 1.0
    #: a track whose median sharpness (variance of the Laplacian of the grey face crop
    #: resized to ``sharpness_size`` square, :func:`face_sharpness`) is below this is rejected
    #: (``blurred``). Measured on the sample corpus (LBP boxes, every 5th frame): real face
    #: detections 72-360, track medians 96-266; the same frames Gaussian-blurred with
    #: sigma 1.0 give 39-82, sigma 1.5 22-45, sigma 2 14-26. 50 keeps every real face track
    #: and rejects sigma >= 1.5 blur.
    min_sharpness: float = 50.0
    sharpness_size: int = 112
    #: a detection joins the track whose last box overlaps it by more than this IoU ...
    track_iou: float = 0.5
    #: ... if that box is at most this many seconds old (at least one sample; 1 s as
    #: syncnet_python's tracker, 25 missed frames at 25 fps).
    max_gap_s: float = 1.0
    #: the insightface pack whose ArcFace embeds the faces (and whose SCRFD detects them).
    pack: str = "buffalo_l"
    #: two clusters of tracks are one person when the mean cosine between their members'
    #: embeddings is at least this (and no two of their tracks share a frame). Not measured
    #: here (no real ArcFace weights offline): a conservative same-person level for ArcFace
    #: cosines; a missed merge only splits a person, the frame rule keeps people apart.
    identity_threshold: float = 0.4

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "scrfd", "lbp"):
            raise ValueError(f"faces.backend must be auto, scrfd or lbp, got {self.backend!r}")
        if self.embedder not in ("auto", "arcface", "twin"):
            raise ValueError(f"faces.embedder must be auto, arcface or twin, got "
                             f"{self.embedder!r}")
        if (self.backend, self.embedder) == ("scrfd", "twin"):
            raise ValueError("faces.embedder twin loads the pack's debug twins, SCRFD included: "
                             "use it with faces.backend lbp")
        if self.sample_fps <= 0:
            raise ValueError("faces.sample_fps must be positive")
        if self.min_face_px < 0 or self.min_track_s < 0 or self.min_sharpness < 0:
            raise ValueError("faces: min_face_px, min_track_s and min_sharpness must be >= 0")
        if self.sharpness_size < 8:
            raise ValueError("faces.sharpness_size must be >= 8")
        if not 0.0 < self.track_iou < 1.0:
            raise ValueError("faces.track_iou must be in (0, 1)")
        if self.max_gap_s < 0:
            raise ValueError("faces.max_gap_s must be >= 0")
        if not -1.0 <= self.identity_threshold <= 1.0:
            raise ValueError("faces.identity_threshold must be in [-1, 1]")
        face_model_class(self.pack)  # an unknown pack fails here, not in an actor
        IdSimOptions(detector="scrfd" if self.backend == "auto" else self.backend,
                     det_size=tuple(self.det_size), det_thresh=self.det_thresh)  # same checks

    def detection_options(self) -> IdSimOptions:
        """The detector settings in :mod:`omni_core.models.face`'s terms (the padding retry
        for SCRFD only). A job decides ``auto`` before it starts; a caller that gives ``auto``
        with a pack gets the pack's SCRFD."""
        detector = "scrfd" if self.backend == "auto" else self.backend
        return IdSimOptions(detector=detector, det_size=tuple(self.det_size),
                            det_thresh=self.det_thresh,
                            pad_retry=self.pad_retry and detector == "scrfd")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Track:
    """One face followed across sampled frames, with its quality verdict."""

    frame_indices: np.ndarray  # (n,) int64 clip frame of each detection
    boxes: np.ndarray  # (n, 4) float32 x0, y0, x1, y1 in frame pixels
    det_scores: np.ndarray  # (n,) float32
    kps: np.ndarray  # (n, 5, 2) float32 landmarks (eyes, nose, mouth corners) in frame pixels
    sharpness: np.ndarray  # (n,) float64 per detection (nan: empty crop)
    embedding: np.ndarray  # (d,) float32 mean of the L2-normalised embeddings, L2-normalised
    duration_s: float
    passed: bool = False
    reject_reason: str | None = None
    identity: int | None = None  # index into FaceResult.identities

    @property
    def min_face_px(self) -> float:
        """The smallest box side over the track."""
        return float(np.min(np.minimum(self.boxes[:, 2] - self.boxes[:, 0],
                                       self.boxes[:, 3] - self.boxes[:, 1])))

    @property
    def median_sharpness(self) -> float | None:
        s = self.sharpness[np.isfinite(self.sharpness)]
        return float(np.median(s)) if s.size else None


@dataclass(frozen=True)
class Identity:
    """One person of the clip: the tracks clustered together and their mean embedding."""

    tracks: tuple[int, ...]  # indices into FaceResult.tracks
    embedding: np.ndarray  # (d,) float32, L2-normalised


@dataclass(frozen=True)
class FaceResult:
    """Everything :func:`analyze_faces` found in one clip."""

    tracks: list[Track]
    identities: list[Identity]
    sampled: np.ndarray = field(repr=False)  # clip frame indices that were analysed
    options: FaceOptions = field(default_factory=FaceOptions)


# --------------------------------------------------------------------------------------------
# measurements


def face_sharpness(frame: np.ndarray, box: np.ndarray, size: int = 112) -> float:
    """Variance of the Laplacian of the grey face crop resized to ``size`` square (so that the
    number does not grow with the face's pixel size); ``nan`` when the box misses the frame."""
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return float("nan")
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def cluster_tracks(embeddings: np.ndarray, cannot_link: np.ndarray,
                   threshold: float) -> list[list[int]]:
    """Average-linkage agglomerative clustering on cosine similarity, deterministic.

    Repeatedly merges the two clusters with the highest mean pairwise cosine (ties: the pair
    that comes first in index order) while it is ``>= threshold`` and no member of one is
    ``cannot_link`` with a member of the other. Returns clusters of sorted indices, ordered by
    their smallest index.
    """
    n = len(embeddings)
    if n == 0:
        return []
    sim = cosine_matrix(embeddings, embeddings)
    clusters = [[i] for i in range(n)]
    while len(clusters) > 1:
        best, best_sim = None, -np.inf
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                ca, cb = clusters[a], clusters[b]
                if cannot_link[np.ix_(ca, cb)].any():
                    continue
                s = float(sim[np.ix_(ca, cb)].mean())
                if s >= threshold and s > best_sim:
                    best, best_sim = (a, b), s
        if best is None:
            break
        a, b = best
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
    return sorted(clusters, key=lambda c: c[0])


# --------------------------------------------------------------------------------------------
# the stage


def _check_frames(frames: np.ndarray, fps: float) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise OmniError(f"faces: expected RGB uint8 frames (T, H, W, 3), got {arr.dtype} "
                        f"{arr.shape}")
    if not fps > 0:
        raise OmniError(f"faces: fps must be positive, got {fps}")
    return arr


def _verdict(track: Track, opts: FaceOptions) -> tuple[bool, str | None]:
    reasons = []
    if track.min_face_px < opts.min_face_px:
        reasons.append(f"small_face ({track.min_face_px:.0f} px < {opts.min_face_px:g} px)")
    if track.duration_s < opts.min_track_s:
        reasons.append(f"short_track ({track.duration_s:.2f} s < {opts.min_track_s:g} s)")
    sharp = track.median_sharpness
    if sharp is None or sharp < opts.min_sharpness:
        shown = "none" if sharp is None else f"{sharp:.1f}"
        reasons.append(f"blurred (sharpness {shown} < {opts.min_sharpness:g})")
    return (not reasons), ("; ".join(reasons) or None)


def reject_kinds(reason: str | None) -> list[str]:
    """The kinds of a ``reject_reason`` (``small_face``, ``short_track``, ``blurred``): the first
    word of each ``"; "``-joined part, in order, once each."""
    if not isinstance(reason, str) or not reason:  # None, or NaN read back from Parquet
        return []
    kinds = [p.strip().split(" ", 1)[0] for p in reason.split(";")]
    return list(dict.fromkeys(k for k in kinds if k))


def analyze_faces(frames: np.ndarray, fps: float, model: FaceModel,
                  options: FaceOptions | None = None) -> FaceResult:
    """Face tracks and identities of one clip.

    ``frames``: the clip's frames (T, H, W, 3) RGB uint8 at ``fps``; ``model``: the
    insightface pack (its ArcFace embeds the faces; its SCRFD detects them unless
    ``options.backend`` is ``lbp``). Tracks are ordered by first frame, then left edge.
    """
    opts = options or FaceOptions(backend="scrfd")
    arr = _check_frames(frames, fps)
    if arr.shape[0] == 0:
        return FaceResult([], [], np.zeros(0, np.int64), opts)
    sampled = np.unique(frame_indices_for_fps(arr.shape[0], fps, opts.sample_fps))
    found = embed_images([arr[i] for i in sampled], model, opts.detection_options(),
                         largest_only=False)

    max_gap = max(1, int(round(opts.max_gap_s * opts.sample_fps)))
    linked = track_faces([[f.box for f in faces] for faces in found],
                         SyncOptions(detector="given", min_track=1, max_gap=max_gap,
                                     track_iou=opts.track_iou))
    period = 1.0 / min(opts.sample_fps, fps)
    tracks: list[Track] = []
    for boxes in linked:
        steps = np.flatnonzero(np.isfinite(boxes[:, 0]))
        dets = []
        for s in steps:  # the detection whose box track_faces copied into this track
            hit = next(f for f in found[s] if np.array_equal(f.box.astype(np.float64), boxes[s]))
            dets.append(hit)
        idx = sampled[steps].astype(np.int64)
        box_arr = np.stack([d.box for d in dets]).astype(np.float32)
        emb = np.mean([_unit(d.embedding) for d in dets], axis=0)  # type: ignore[arg-type]
        track = Track(
            frame_indices=idx, boxes=box_arr,
            det_scores=np.array([d.score for d in dets], dtype=np.float32),
            kps=np.stack([np.asarray(d.kps, np.float32).reshape(5, 2) for d in dets]),
            sharpness=np.array([face_sharpness(arr[i], b, opts.sharpness_size)
                                for i, b in zip(idx, box_arr, strict=True)]),
            embedding=_unit(emb).astype(np.float32),
            duration_s=float((idx[-1] - idx[0]) / fps + period))
        ok, reason = _verdict(track, opts)
        tracks.append(replace(track, passed=ok, reject_reason=reason))
    tracks.sort(key=lambda t: (int(t.frame_indices[0]), float(t.boxes[0, 0]),
                               float(t.boxes[0, 1])))

    passed = [k for k, t in enumerate(tracks) if t.passed]
    steps_of = [set(t.frame_indices.tolist()) for t in tracks]
    cannot = np.array([[a != b and bool(steps_of[a] & steps_of[b]) for b in passed]
                       for a in passed], dtype=bool).reshape(len(passed), len(passed))
    embs = (np.stack([tracks[k].embedding for k in passed]) if passed
            else np.zeros((0, 1), np.float32))
    identities: list[Identity] = []
    for members in cluster_tracks(embs, cannot, opts.identity_threshold):
        ks = tuple(passed[m] for m in members)
        mean = _unit(np.mean([tracks[k].embedding for k in ks], axis=0)).astype(np.float32)
        for k in ks:
            tracks[k] = replace(tracks[k], identity=len(identities))
        identities.append(Identity(tracks=ks, embedding=mean))
    return FaceResult(tracks, identities, sampled.astype(np.int64), opts)


# --------------------------------------------------------------------------------------------
# manifest rows


def track_id(clip_id: str, track: Track) -> str:
    """``stable_id(clip_id, "face", first frame, first box)``: the same track, the same id."""
    return stable_id(clip_id, "face", int(track.frame_indices[0]),
                     *(round(float(v), 1) for v in track.boxes[0]))


def _identity_id(clip_id: str, result: FaceResult, identity: Identity) -> str:
    return stable_id(clip_id, "identity",
                     *sorted(track_id(clip_id, result.tracks[k]) for k in identity.tracks))


def track_rows(clip_id: str, result: FaceResult) -> list[dict[str, Any]]:
    """``face_tracks`` rows of one clip."""
    ids = [_identity_id(clip_id, result, ident) for ident in result.identities]
    rows = []
    for t in result.tracks:
        sharp = t.median_sharpness
        rows.append({
            "track_id": track_id(clip_id, t),
            "clip_id": clip_id,
            "frame_indices": [int(i) for i in t.frame_indices],
            "boxes": [[float(v) for v in b] for b in t.boxes],
            "det_scores": [float(s) for s in t.det_scores],
            "min_face_px": t.min_face_px,
            "sharpness": sharp,
            "embedding": [float(v) for v in t.embedding],
            "identity_id": None if t.identity is None else ids[t.identity],
            "passed": bool(t.passed),
            "reject_reason": t.reject_reason,
        })
    return rows


def identity_rows(clip_id: str, result: FaceResult) -> list[dict[str, Any]]:
    """``identities`` rows of one clip (speaker, association score and margin are filled by
    the association)."""
    return [{
        "identity_id": _identity_id(clip_id, result, ident),
        "clip_id": clip_id,
        "track_ids": [track_id(clip_id, result.tracks[k]) for k in ident.tracks],
        "speaker": None,
        "sync_confidence": None,
        "margin": None,
        "embedding": [float(v) for v in ident.embedding],
    } for ident in result.identities]
