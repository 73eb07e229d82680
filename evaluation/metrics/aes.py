"""AES: VBench ``aesthetic_quality`` (LAION aesthetic predictor on OpenAI CLIP ViT-L/14).

Protocol (VBench ``vbench/aesthetic_quality.py`` + ``utils.clip_transform``), as the paper ran it:

1. every frame of the video, RGB;
2. VBench's tensor ``clip_transform(224)``: bicubic resize of the shorter side to 224 on float32
   0..255 frames (no rounding back to uint8, no antialias with VBench's torchvision < 0.16),
   center crop 224, ``/255``, CLIP mean/std
   (:func:`~evaluation.models.clip_vit.clip_preprocess`);
3. ``clip_model.encode_image`` -> float32 -> L2 normalise;
4. LAION linear head ``nn.Linear(768, 1)`` -> per-frame score, divided by 10 (no clamp);
5. the video's score is the mean over its frames (0..1; the paper's values are about 0.6).

VBench loads CLIP with ``clip.load``, which keeps the checkpoint's fp16 weights on CUDA and
casts to fp32 on CPU; :attr:`AESOptions.precision` ``"auto"`` does the same.

The network and its checkpoints: :mod:`evaluation.models.laion_aesthetic`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ..models.clip_vit import clip_preprocess
from ..models.laion_aesthetic import AestheticModel, ImprovedAestheticModel
from ..registry import Metric, MetricSpec, Output, register

__all__ = [
    "DIRECTION",
    "VERSION",
    "AESOptions",
    "AESResult",
    "score_frames",
]

VERSION = "1"
DIRECTION = "higher"


@dataclass(frozen=True)
class AESOptions:
    """Protocol choices of the AES metric (defaults: VBench ``aesthetic_quality``)."""

    #: Side of the square CLIP input (ViT-L/14 at 224 px).
    image_size: int = 224
    #: Antialiased bicubic resize. VBench pinned torchvision < 0.16, whose tensor ``Resize``
    #: did not antialias; torchvision >= 0.17 would (a small but real difference).
    antialias: bool = False
    #: Divisor of the raw LAION score (0..10 scale -> 0..1, VBench).
    score_scale: float = 10.0
    #: ``auto``: fp16 CLIP on CUDA, fp32 on CPU (what ``clip.load`` gives VBench); or force
    #: ``fp32`` / ``fp16``. The linear head always runs in fp32 on fp32 features.
    precision: Literal["auto", "fp32", "fp16"] = "auto"
    #: Frames per forward pass (memory only: the numbers do not depend on it).
    batch_size: int = 32
    #: ``laion``: the LAION linear head (VBench, the paper). ``improved``: the improved
    #: aesthetic predictor's MLP (``ImprovedAestheticModel``) on the same features; its numbers
    #: are not VBench's.
    head: Literal["laion", "improved"] = "laion"

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "fp16"):
            raise ValueError(f"precision must be auto, fp32 or fp16, got {self.precision!r}")
        if self.head not in ("laion", "improved"):
            raise ValueError(f"head must be laion or improved, got {self.head!r}")
        if self.batch_size < 1 or self.image_size < 1 or self.score_scale <= 0:
            raise ValueError("batch_size, image_size and score_scale must be positive")


@dataclass(frozen=True)
class AESResult:
    """A video's AES (mean over frames) and the per-frame scores it came from."""

    score: float
    per_frame: tuple[float, ...] = field(repr=False)
    precision: str = "fp32"

    @property
    def n_frames(self) -> int:
        return len(self.per_frame)


def score_frames(
    frames: np.ndarray,
    model: AestheticModel,
    options: AESOptions | None = None,
) -> AESResult:
    """AES of one video: ``frames`` are all its RGB frames, ``(N, H, W, 3)`` uint8."""
    opt = options or AESOptions()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, H, W, 3) frame array, got {frames.shape}")
    dtype = model.resolve_dtype(opt.precision)
    scores = []
    for start in range(0, frames.shape[0], opt.batch_size):
        x = clip_preprocess(
            frames[start : start + opt.batch_size],
            opt.image_size,
            quantize=False,
            antialias=opt.antialias,
            batch_size=opt.batch_size,
        )
        scores.append(model.frame_scores(model.image_features(x, dtype)) / opt.score_scale)
    per_frame = torch.cat(scores).cpu().numpy().astype(np.float64)
    return AESResult(
        score=float(per_frame.mean()),
        per_frame=tuple(float(s) for s in per_frame),
        precision="fp16" if dtype == torch.float16 else "fp32",
    )


# --------------------------------------------------------------------------------------------
# registration with the evaluation harness


@register
class AES(Metric):
    spec = MetricSpec(
        name="aes", version=VERSION, needs=("frames",),
        outputs=(Output("aes", "AES", DIRECTION),),
        doc="LAION aesthetic head on CLIP ViT-L/14 features of every frame, /10, mean")
    Options = AESOptions

    def setup(self) -> None:
        self.model = self.load(ImprovedAestheticModel if self.options.head == "improved"
                               else AestheticModel)

    def compute(self, inp) -> dict:
        return {"aes": float(score_frames(inp.frames(), self.model, self.options).score)}
