"""The ``references`` step of in-pair curation (``visual`` stage): each subject's identity and
timbre references, and their masks.

For every speaker the association paired with a face (a *subject*):

- **identity reference** (:func:`image_reference`): the best detection of the subject's face
  tracks (:func:`pick_keyframe`) is cut out as an aligned crop (:func:`aligned_crop`: a
  similarity transform that puts the five landmarks on ArcFace's template, widened by
  ``expand`` so that hair and chin are in, rotated upright). Where it was taken is the video
  mask ``M_v``: the clip frame index and the crop's bounding box in that frame. An optional,
  seeded augmentation (flip, colour jitter, scale; :func:`augment`) makes the reference differ
  from the target frame, as in-pair training wants; what was applied is recorded.
- **timbre reference** (:func:`timbre_span`): a clean stretch of 1-3 s (configurable) of the
  subject's own speech in the clip: inside one of its segments, away from every other
  speaker's segments, the window with the most voiced 20 ms frames. Its time span is the audio
  mask ``M_a``.

Both masks go into the ``references`` rows and into the sample, so the trainer can leave the
regions a reference was copied from out of its loss. Subjects are ordered left to right by
face position (:func:`subject_order`): subject k is ``<subK>`` and reference image ``<imgK>``.
Pure functions on arrays: no Ray, no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from omni_core.errors import OmniError
from omni_core.manifests import stable_id
from omni_core.models.face import similarity_matrix

__all__ = [
    "Assembly",
    "Keyframe",
    "ReferenceOptions",
    "aligned_crop",
    "assemble_references",
    "augment",
    "image_reference",
    "pick_keyframe",
    "subject_order",
    "timbre_span",
]

ARCFACE_SIZE = 112  # the template similarity_matrix maps landmarks onto


@dataclass(frozen=True)
class ReferenceOptions:
    """Every choice of the references stage (recorded with the run's config).

    Attributes:
        image_size: side of the square identity crop in pixels (512).
        expand: the crop side over the side of ArcFace's 112-pixel template region (1.6: the
            template covers brows to chin; twice that takes in hair, ears and neck).
        augment: apply :func:`augment` to identity crops (off by default: the released
            pipeline's augmentation is not documented; switch on for in-pair training).
        flip_p: augmentation: probability of a horizontal flip.
        jitter: augmentation: brightness, contrast and saturation are each scaled by a factor
            drawn uniformly from ``[1 - jitter, 1 + jitter]``.
        scale: augmentation: zoom factor range (crop side / expand); >1 zooms in.
        audio_min_s: a subject without a clean stretch at least this long has no timbre
            reference and the clip becomes ``no_reference`` (1.0 s).
        audio_max_s: the timbre reference is at most this long (3.0 s).
        audio_guard_s: keep this far from every other speaker's segment (0.1 s).
        voiced_db: a 20 ms frame counts as voiced when its RMS is within this many dB of the
            clip's loudest frame (-35 dB).
    """

    image_size: int = 512
    expand: float = 1.6
    augment: bool = False
    flip_p: float = 0.5
    jitter: float = 0.2
    scale: tuple[float, float] = (0.9, 1.1)
    audio_min_s: float = 1.0
    audio_max_s: float = 3.0
    audio_guard_s: float = 0.1
    voiced_db: float = -35.0

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError("references.image_size must be >= 16")
        if self.expand < 1.0:
            raise ValueError("references.expand must be >= 1")
        if not 0.0 <= self.flip_p <= 1.0 or not 0.0 <= self.jitter < 1.0:
            raise ValueError("references: flip_p must be in [0, 1] and jitter in [0, 1)")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError("references.scale must be (low, high) with 0 < low <= high")
        if not 0 < self.audio_min_s <= self.audio_max_s:
            raise ValueError("references: need 0 < audio_min_s <= audio_max_s")
        if self.audio_guard_s < 0:
            raise ValueError("references.audio_guard_s must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# faces


def subject_order(centres_x: Sequence[float]) -> list[int]:
    """Indices sorted left to right by face centre (ties: input order)."""
    return sorted(range(len(centres_x)), key=lambda i: (float(centres_x[i]), i))


@dataclass(frozen=True)
class Keyframe:
    """The detection chosen as identity reference: clip frame, box and landmarks."""

    frame_index: int
    box: np.ndarray  # (4,) x0, y0, x1, y1
    kps: np.ndarray  # (5, 2)
    score: float


def pick_keyframe(frame_indices: np.ndarray, boxes: np.ndarray, kps: np.ndarray,
                  det_scores: np.ndarray, sharpness: np.ndarray) -> Keyframe:
    """Among one person's detections (tracks concatenated), the one that is sharp enough (at
    least the median sharpness, NaN counting as not sharp) with the highest detector score
    times face side. Ties: the earliest."""
    n = len(frame_indices)
    if n == 0:
        raise OmniError("references: a subject without detections has no identity reference")
    sharp = np.asarray(sharpness, dtype=np.float64)
    ok = np.isfinite(sharp)
    if ok.any():
        ok &= sharp >= np.median(sharp[ok])
    else:
        ok = np.ones(n, dtype=bool)
    b = np.asarray(boxes, dtype=np.float64)
    side = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    value = np.where(ok, np.asarray(det_scores, np.float64) * side, -np.inf)
    best = max(range(n), key=lambda i: (value[i], -int(frame_indices[i])))
    return Keyframe(int(frame_indices[best]), b[best].astype(np.float32),
                    np.asarray(kps[best], np.float32).reshape(5, 2), float(value[best]))


def _crop_matrix(kps: np.ndarray, size: int, expand: float, zoom: float = 1.0) -> np.ndarray:
    """2x3 affine from frame pixels to the crop: ArcFace's similarity transform, then the
    112-pixel template scaled to ``size * zoom / expand`` and centred in the crop."""
    m = np.vstack([similarity_matrix(np.asarray(kps, np.float32), ARCFACE_SIZE), [0, 0, 1]])
    s = size * zoom / (expand * ARCFACE_SIZE)
    off = (size - ARCFACE_SIZE * s) / 2.0
    place = np.array([[s, 0, off], [0, s, off], [0, 0, 1]], dtype=np.float64)
    return (place @ m)[:2]


def aligned_crop(frame: np.ndarray, kps: np.ndarray, options: ReferenceOptions | None = None,
                 *, zoom: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The aligned identity crop (size x size RGB uint8, edges replicated where the crop leaves
    the frame) and its bounding box in the frame, clipped to it (``M_v``)."""
    opt = options or ReferenceOptions()
    m = _crop_matrix(kps, opt.image_size, opt.expand, zoom)
    if not np.isfinite(m).all():
        raise OmniError("references: degenerate face landmarks (all points coincide)")
    crop = cv2.warpAffine(np.ascontiguousarray(frame), m, (opt.image_size, opt.image_size),
                          flags=cv2.INTER_AREA if zoom * opt.image_size < 256 else
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inv = cv2.invertAffineTransform(m)
    s = float(opt.image_size)
    corners = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]]) @ inv.T
    h, w = frame.shape[:2]
    box = np.array([max(0.0, corners[:, 0].min()), max(0.0, corners[:, 1].min()),
                    min(float(w), corners[:, 0].max()), min(float(h), corners[:, 1].max())],
                   dtype=np.float32)
    return crop, box


def augment(crop: np.ndarray, rng: np.random.Generator,
            options: ReferenceOptions | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """A seeded flip / colour jitter / zoom of an identity crop, and what was applied.

    Zoom is about the crop centre (out: replicated edges), then a horizontal flip with
    probability ``flip_p``, then brightness, contrast and saturation factors.
    """
    opt = options or ReferenceOptions()
    img = crop.astype(np.float32)
    zoom = float(rng.uniform(*opt.scale))
    flip = bool(rng.random() < opt.flip_p)
    b, c, s = (float(rng.uniform(1 - opt.jitter, 1 + opt.jitter)) for _ in range(3))
    size = crop.shape[0]
    if zoom != 1.0:
        m = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), 0.0, zoom)
        img = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    if flip:
        img = img[:, ::-1]
    img = img * b
    img = (img - img.mean()) * c + img.mean()
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = grey[..., None] + (img - grey[..., None]) * s
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out, {"flip": flip, "zoom": round(zoom, 4), "brightness": round(b, 4),
                 "contrast": round(c, 4), "saturation": round(s, 4)}


def image_reference(frame: np.ndarray, keyframe: Keyframe, options: ReferenceOptions,
                    seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """Crop, mask box and applied augmentation (None when off) of one subject."""
    crop, box = aligned_crop(frame, keyframe.kps, options)
    if not options.augment:
        return crop, box, None
    out, applied = augment(crop, np.random.default_rng(seed), options)
    return out, box, applied


# --------------------------------------------------------------------------------------------
# voices


def _voiced_frames(audio: np.ndarray, sample_rate: int, floor_db: float) -> np.ndarray:
    hop = max(1, int(round(0.02 * sample_rate)))
    n = len(audio) // hop
    if n == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(np.square(audio[: n * hop].astype(np.float64)).reshape(n, hop),
                          axis=1))
    top = float(rms.max())
    if top <= 0:
        return np.zeros(n, dtype=bool)
    return 20.0 * np.log10(np.maximum(rms, 1e-12) / top) >= floor_db


def timbre_span(audio16k: np.ndarray, segments: Sequence[tuple[str, float, float]],
                speaker: str, options: ReferenceOptions | None = None,
                sample_rate: int = 16000) -> tuple[float, float] | None:
    """The timbre reference span ``(start_s, end_s)`` of ``speaker`` in clip time, or None.

    Candidates are the speaker's segments minus every other speaker's segments widened by
    ``audio_guard_s``; in each candidate at least ``audio_min_s`` long, the window of
    ``min(length, audio_max_s)`` with the most voiced 20 ms frames is taken (hop 20 ms; ties:
    the earliest). The best window over all candidates wins (more voiced frames, then longer,
    then earlier). Times are multiples of 20 ms.
    """
    opt = options or ReferenceOptions()
    hop = 0.02
    voiced = _voiced_frames(np.asarray(audio16k, np.float32).reshape(-1), sample_rate,
                            opt.voiced_db)
    total = len(voiced) * hop
    own = sorted((a, b) for s, a, b in segments if s == speaker)
    others = [(a - opt.audio_guard_s, b + opt.audio_guard_s)
              for s, a, b in segments if s != speaker]
    best: tuple[int, float, float, float] | None = None  # (voiced, length, -start, start)
    for a, b in own:
        pieces = [(max(0.0, a), min(b, total))]
        for oa, ob in others:
            nxt = []
            for pa, pb in pieces:
                if ob <= pa or oa >= pb:
                    nxt.append((pa, pb))
                    continue
                if oa > pa:
                    nxt.append((pa, oa))
                if ob < pb:
                    nxt.append((ob, pb))
            pieces = nxt
        for pa, pb in pieces:
            fa, fb = int(math.ceil(pa / hop - 1e-9)), int(math.floor(pb / hop + 1e-9))
            n_frames = fb - fa
            if n_frames * hop < opt.audio_min_s - 1e-9:
                continue
            width = min(n_frames, int(round(opt.audio_max_s / hop)))
            csum = np.concatenate([[0], np.cumsum(voiced[fa:fb].astype(np.int64))])
            counts = csum[width:] - csum[:-width] if width else np.zeros(1, np.int64)
            k = int(np.argmax(counts))  # first maximum: the earliest
            cand = (int(counts[k]), width * hop, -(fa + k) * hop, (fa + k) * hop)
            if best is None or cand[:3] > best[:3]:
                best = cand
    if best is None or best[0] == 0:
        return None
    start = round(best[3], 3)
    return start, round(start + best[1], 3)


# --------------------------------------------------------------------------------------------
# a clip's references: every subject's identity crop and timbre span, the rows and the media


@dataclass
class Assembly:
    """A clip's references. ``subjects`` (subject order): anchor, speaker, identity and
    reference ids, mask frame, box and span; ``rows``: its ``references`` rows; ``media``:
    ``(relative path, image or waveform)`` to write; ``no_reference``: why the clip has none
    (a subject without a clean timbre span), else None."""

    subjects: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    media: list[tuple[str, np.ndarray]]
    no_reference: str | None = None


def assemble_references(clip_id: str, video_id: str, frames: np.ndarray, audio: np.ndarray,
                        sample_rate: int, result: Any, assignment: Any, names: Sequence[str],
                        segments: Sequence[tuple[str, float, float]],
                        identity_ids: Sequence[str], options: ReferenceOptions) -> Assembly:
    """Every subject of an associated clip (``result``: its faces, ``assignment``: speaker ->
    identity pairs), ordered left to right: the identity crop at its keyframe, the timbre
    span, ids derived from the identity and what was taken, and the files under
    ``references/<video>/<clip>/``."""
    pairs = list(assignment.pairs)
    centres = []
    for _, t in pairs:
        boxes = np.concatenate([result.tracks[k].boxes for k in result.identities[t].tracks])
        centres.append(float(np.median((boxes[:, 0] + boxes[:, 2]) / 2)))
    subjects: list[dict[str, Any]] = []
    media: list[tuple[str, np.ndarray]] = []
    rows: list[dict[str, Any]] = []
    folder = f"references/{video_id}/{clip_id}"
    for k, i in enumerate(subject_order(centres), start=1):
        s, t = pairs[i]
        tracks = [result.tracks[j] for j in result.identities[t].tracks]
        key = pick_keyframe(np.concatenate([x.frame_indices for x in tracks]),
                            np.concatenate([x.boxes for x in tracks]),
                            np.concatenate([x.kps for x in tracks]),
                            np.concatenate([x.det_scores for x in tracks]),
                            np.concatenate([x.sharpness for x in tracks]))
        span = timbre_span(audio, segments, names[s], options, sample_rate)
        if span is None:
            return Assembly([], [], [], f"speaker {names[s]} has no clean stretch of "
                            f"{options.audio_min_s:g} s away from other speakers")
        identity_id = identity_ids[t]
        image_id = stable_id(identity_id, "image", key.frame_index)
        crop, box, applied = image_reference(frames[key.frame_index], key, options,
                                             seed=int(image_id[:8], 16))
        audio_id = stable_id(identity_id, "audio", *span)
        png, wav_rel = f"{folder}/{image_id}.png", f"{folder}/{audio_id}.wav"
        wav = audio[round(span[0] * sample_rate):round(span[1] * sample_rate)]
        media += [(png, crop), (wav_rel, wav)]
        sub = {"anchor": f"<sub{k}>", "speaker": names[s], "identity_id": identity_id,
               "image_reference_id": image_id, "audio_reference_id": audio_id,
               "image_path": png, "frame_index": key.frame_index,
               "box": [float(v) for v in box], "span": [float(span[0]), float(span[1])],
               "augment": None if applied is None else json.dumps(applied, sort_keys=True)}
        subjects.append(sub)
        rows.append({"reference_id": image_id, "identity_id": identity_id, "kind": "image",
                     "path": png, "source_clip_id": clip_id, "frame_index": key.frame_index,
                     "box": sub["box"], "start_s": None, "end_s": None,
                     "augment": sub["augment"]})
        rows.append({"reference_id": audio_id, "identity_id": identity_id, "kind": "audio",
                     "path": wav_rel, "source_clip_id": clip_id, "frame_index": None,
                     "box": None, "start_s": sub["span"][0], "end_s": sub["span"][1],
                     "augment": None})
    return Assembly(subjects, rows, media)
