"""ArcFace ID-Sim: how much the faces in a generated video look like the reference images.

Protocol (the FaceSim-Arc script of ConsisID, ``eval/get_facesim_fid.py``, reused unchanged by
OpenS2V-Eval, ``eval/get_facesim.py``; both run insightface's ``FaceAnalysis``):

1. sample ``num_frames`` frames with ``np.linspace(0, n - 1, num_frames, dtype=int)`` (the
   indices are *truncated*, not rounded: :func:`frame_indices`);
2. in every frame and in every reference image detect faces with SCRFD (insightface
   ``det_size=(320, 320)``, threshold 0.5, NMS 0.4), on the BGR image as insightface expects;
   when nothing is found, pad the image by 25 % on each side with grey (128) and detect again;
3. keep the largest face (box area); align it with a 5-point similarity transform onto the
   ArcFace template, 112x112 (:func:`~omni_core.models.face.align_face`, equal to
   insightface's ``norm_crop``),
   feed ``(x - 127.5) / 127.5`` to ArcFace (insightface's ``ArcFaceONNX``) and take the 512-d
   embedding;
4. per frame, ``max(0, cos(reference, frame))``; frames without a face are skipped (and
   counted); the score is the mean over the remaining frames, and 0.0 when none remains.

Multi-person instances (the paper's "M" column): every reference is matched, in each frame, to
its best face (the maximal cosine among all detected faces), clipped at 0, averaged over the
frames that have a face, then averaged over the references.

The models (SCRFD + ArcFace packs, the LBP backend, alignment, detection with the padding
retry, embedding) live in :mod:`omni_core.models.face`, shared with the curation pipelines,
together with :class:`~omni_core.models.face.IdSimOptions`; this module holds the protocol
(frame sampling, aggregation, S and M scores) and the registered metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from omni_core.errors import OmniError
from omni_core.media import sample_indices
from omni_core.models.face import (
    FaceModel,
    IdSimOptions,
    cosine_matrix,
    embed_images,
    embed_reference,
    face_model_class,
)

from ..registry import Metric, MetricSpec, Output, register

__all__ = [
    "DIRECTION",
    "VERSION",
    "IdSimResult",
    "aggregate",
    "frame_indices",
    "id_sim",
    "id_sim_multi",
    "id_sim_single",
]

VERSION = "1"
DIRECTION = "higher"


@dataclass(frozen=True, eq=False)
class IdSimResult:
    """One video's ID-Sim and what it was made of."""

    score: float
    mode: Literal["single", "multi"]
    per_reference: tuple[float, ...]  # mean over frames with a face, per reference
    frame_scores: np.ndarray  # (n_references, n_frames), clipped; NaN where skipped
    faces_per_frame: tuple[int, ...]  # detected faces per sampled frame
    n_frames: int
    n_frames_skipped: int  # frames without any face
    reference_padded: tuple[bool, ...] = field(default=())  # reference face needed padding

    def details(self) -> dict[str, Any]:
        """JSON-friendly per-frame details for debugging and reports."""
        fs = [[None if math.isnan(v) else round(float(v), 6) for v in row]
              for row in self.frame_scores]
        return {"mode": self.mode, "per_reference": list(self.per_reference),
                "frame_scores": fs, "faces_per_frame": list(self.faces_per_frame),
                "n_frames": self.n_frames, "n_frames_skipped": self.n_frames_skipped,
                "reference_padded": list(self.reference_padded)}


# --------------------------------------------------------------------------------------------
# protocol math (no model)


def frame_indices(n_frames: int, options: IdSimOptions | None = None) -> np.ndarray:
    """The frames ID-Sim scores: ``np.linspace(0, n - 1, num_frames, dtype=int)`` (truncated,
    as both reference scripts; fewer frames than ``num_frames`` repeat indices)."""
    opts = options or IdSimOptions()
    if n_frames <= 0:
        raise OmniError("ID-Sim: the video has no frames")
    if opts.num_frames is None:
        return np.arange(n_frames, dtype=np.int64)
    return sample_indices(n_frames, opts.num_frames, "linspace")


def aggregate(
    reference_embeddings: np.ndarray,
    frame_embeddings: Sequence[np.ndarray],
    options: IdSimOptions | None = None,
    mode: Literal["single", "multi"] = "single",
    reference_padded: tuple[bool, ...] = (),
) -> IdSimResult:
    """ID-Sim from embeddings: ``reference_embeddings`` (R, d); ``frame_embeddings`` one
    (n_i, d) array per sampled frame (n_i = 0: no face, the frame is skipped).

    Each reference takes, per frame, its best face (max cosine; in single mode each frame holds
    only its largest face), clipped at 0; frames are averaged per reference, then references.
    """
    opts = options or IdSimOptions()
    refs = np.atleast_2d(np.asarray(reference_embeddings, dtype=np.float64))
    n_refs, n_frames = refs.shape[0], len(frame_embeddings)
    scores = np.full((n_refs, n_frames), np.nan)
    faces = []
    for j, emb in enumerate(frame_embeddings):
        emb = np.asarray(emb, dtype=np.float64).reshape(-1, refs.shape[1])
        faces.append(int(emb.shape[0]))
        if emb.shape[0] == 0:
            continue
        best = cosine_matrix(refs, emb).max(axis=1)
        scores[:, j] = np.maximum(best, 0.0) if opts.clip_negative else best
    kept = ~np.isnan(scores[0]) if n_frames else np.zeros(0, dtype=bool)
    if kept.any():
        per_ref = tuple(float(v) for v in scores[:, kept].mean(axis=1))
        score = float(np.mean(per_ref))
    else:
        per_ref = tuple(float(opts.no_face_score) for _ in range(n_refs))
        score = float(opts.no_face_score)
    return IdSimResult(score=score, mode=mode, per_reference=per_ref, frame_scores=scores,
                       faces_per_frame=tuple(faces), n_frames=n_frames,
                       n_frames_skipped=int(n_frames - kept.sum()),
                       reference_padded=tuple(reference_padded))


# --------------------------------------------------------------------------------------------
# scoring


def _check_pack(model: FaceModel, opts: IdSimOptions) -> None:
    if model.pack != opts.pack:
        raise ValueError(f"IdSimOptions.pack is {opts.pack!r} but the model is {model.pack!r}; "
                         f"load it with face_model_class({opts.pack!r})")


def _frames_list(frames: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    out = list(frames)
    if not out:
        raise OmniError("ID-Sim: no frames to score")
    return out


def id_sim_single(frames: np.ndarray | Sequence[np.ndarray], reference: np.ndarray,
                  model: FaceModel, options: IdSimOptions | None = None) -> IdSimResult:
    """Single-person ID-Sim of already-sampled RGB ``frames`` (see :func:`frame_indices`)
    against one RGB reference image: largest face per frame."""
    opts = options or IdSimOptions()
    _check_pack(model, opts)
    ref = embed_reference(reference, model, opts)
    per_frame = embed_images(_frames_list(frames), model, opts, largest_only=True)
    embs = [np.stack([f.embedding for f in fs]) if fs else np.zeros((0, ref.embedding.size))
            for fs in per_frame]
    return aggregate(ref.embedding[None], embs, opts, "single", (ref.padded,))


def id_sim_multi(frames: np.ndarray | Sequence[np.ndarray], references: Sequence[np.ndarray],
                 model: FaceModel, options: IdSimOptions | None = None) -> IdSimResult:
    """Multi-person ID-Sim: every reference matched to its best face in each frame."""
    opts = options or IdSimOptions()
    _check_pack(model, opts)
    if not references:
        raise OmniError("ID-Sim: no reference images")
    refs = [embed_reference(r, model, opts) for r in references]
    per_frame = embed_images(_frames_list(frames), model, opts, largest_only=False)
    dim = refs[0].embedding.size
    embs = [np.stack([f.embedding for f in fs]) if fs else np.zeros((0, dim))
            for fs in per_frame]
    return aggregate(np.stack([r.embedding for r in refs]), embs, opts, "multi",
                     tuple(r.padded for r in refs))


def id_sim(frames: np.ndarray | Sequence[np.ndarray], references: Sequence[np.ndarray],
           model: FaceModel, options: IdSimOptions | None = None) -> IdSimResult:
    """ID-Sim S (one reference) or M (several references)."""
    if len(references) == 1:
        return id_sim_single(frames, references[0], model, options)
    return id_sim_multi(frames, references, model, options)


# --------------------------------------------------------------------------------------------
# registration with the evaluation harness


@register
class IdSim(Metric):
    spec = MetricSpec(
        name="id_sim", version=VERSION, needs=("frames", "ref_images"),
        outputs=(Output("id_sim", "ID-Sim", DIRECTION, split=True),),
        doc="ArcFace cosine between each reference face and the generated faces, clipped at 0, "
            "mean over sampled frames; S and M instances reported apart")
    Options = IdSimOptions

    def setup(self) -> None:
        self.model = self.load(face_model_class(self.options.pack))

    def compute(self, inp) -> dict:
        idx = frame_indices(inp.info.n_frames, self.options)
        res = id_sim(inp.frames(tuple(int(i) for i in idx)), inp.reference_images(),
                     self.model, self.options)
        if not np.isfinite(res.score):
            return {"id_sim_reason": "no face in any sampled frame (no_face_score=nan)"}
        return {"id_sim": float(res.score)}
