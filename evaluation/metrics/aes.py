"""AES: VBench ``aesthetic_quality`` (LAION aesthetic predictor on OpenAI CLIP ViT-L/14).

Protocol (VBench ``vbench/aesthetic_quality.py`` + ``utils.clip_transform``), as the paper ran it:

1. every frame of the video, RGB;
2. VBench's tensor ``clip_transform(224)``: bicubic resize of the shorter side to 224 on float32
   0..255 frames (no rounding back to uint8, no antialias with VBench's torchvision < 0.16),
   center crop 224, ``/255``, CLIP mean/std (:func:`~.clip_vit.clip_preprocess`);
3. ``clip_model.encode_image`` -> float32 -> L2 normalise;
4. LAION linear head ``nn.Linear(768, 1)`` -> per-frame score, divided by 10 (no clamp);
5. the video's score is the mean over its frames (0..1; the paper's values are about 0.6).

VBench loads CLIP with ``clip.load``, which keeps the checkpoint's fp16 weights on CUDA and
casts to fp32 on CPU; :attr:`AESOptions.precision` ``"auto"`` does the same.

Checkpoints: ``openai-clip-vit-l-14`` (OpenAI ships ``ViT-L-14.pt`` as a TorchScript archive;
its tensors are read with a restricted unpickler, see :func:`~.clip_vit.torchscript_state_dict`,
so no TorchScript code or pickled callable runs) and ``laion-aesthetic-vit-l-14-linear``
(``sa_0_4_vit_l_14_linear.pth``, a plain ``{"weight", "bias"}`` state dict).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import WeightsError
from omni_core.weights import (
    PretrainedComponent,
    Registry,
    load_state_dict_strict,
    load_torch_checkpoint,
    require,
)

from ..models.clip_vit import (
    VisionConfig,
    VisionTransformer,
    clip_preprocess,
    is_torchscript_archive,
    torchscript_state_dict,
)
from ..registry import Metric, MetricSpec, Output, register

__all__ = [
    "DIRECTION",
    "VERSION",
    "AESOptions",
    "AESResult",
    "AestheticModel",
    "score_frames",
]

VERSION = "1"
DIRECTION = "higher"

CLIP_FILE = "ViT-L-14.pt"
HEAD_ENTRY = "laion-aesthetic-vit-l-14-linear"
HEAD_FILE = "sa_0_4_vit_l_14_linear.pth"


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

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "fp16"):
            raise ValueError(f"precision must be auto, fp32 or fp16, got {self.precision!r}")
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


class AestheticModel(PretrainedComponent, nn.Module):
    """OpenAI CLIP image tower (``visual.*`` keys) + the LAION aesthetic linear head.

    Two manifest entries: the CLIP checkpoint (``weights_entry``) and the head
    (:data:`HEAD_ENTRY`), resolved together by :meth:`from_pretrained`.
    """

    weights_entry = "openai-clip-vit-l-14"
    weights_files = (CLIP_FILE,)
    #: Every manifest entry this component reads (for provenance records).
    weights_entries = ("openai-clip-vit-l-14", HEAD_ENTRY)

    def __init__(self, vision: VisionConfig | None = None) -> None:
        nn.Module.__init__(self)
        cfg = vision or VisionConfig()
        self.visual = VisionTransformer(cfg)
        self.head = nn.Linear(cfg.output_dim, 1)
        self.head_path: Path | None = None
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @classmethod
    def from_pretrained(
        cls,
        root: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        *,
        registry: Registry | None = None,
        **kw: Any,
    ) -> Self:
        """Load CLIP ViT-L/14 and the LAION head from the local weights folder."""
        head = require(HEAD_ENTRY, HEAD_FILE, root, registry=registry)
        return super().from_pretrained(root, device, registry=registry, head_path=head, **kw)

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        clip_path = paths[CLIP_FILE]
        if is_torchscript_archive(clip_path):
            full = torchscript_state_dict(clip_path)
        else:  # a plain state dict of the same model (e.g. re-saved by open_clip tools)
            full = load_torch_checkpoint(clip_path)
        visual = {k[len("visual.") :]: v for k, v in full.items() if k.startswith("visual.")}
        if not visual:
            raise WeightsError(f"{clip_path} has no 'visual.*' tensors: not an OpenAI CLIP model")
        try:
            cfg = VisionConfig.from_state_dict(visual, prefix="")
        except KeyError as exc:
            raise WeightsError(f"{clip_path}: CLIP image tower lacks {exc}") from None
        model = cls(cfg)
        load_state_dict_strict(model.visual, visual, f"{clip_path} (visual.*)", cast=True)
        head_path = Path(kw["head_path"])
        load_state_dict_strict(model.head, load_torch_checkpoint(head_path), str(head_path),
                               cast=True)
        model.head_path = head_path
        return model.to(device).eval()

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"vision": VisionConfig()}  # OpenAI CLIP ViT-L/14 at 224 px

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        cfg = kw.get("vision") or VisionConfig(
            width=64, layers=2, heads=1, patch_size=32, image_size=224, output_dim=32
        )
        model = cls(cfg)
        with torch.no_grad():
            # fp16-representable tower weights, like OpenAI's fp16 archive: switching
            # precision (which casts the tower in place) is then lossless, as for real weights
            for p in model.visual.parameters():
                p.copy_(p.half().float())
            model.head.weight.normal_(0.0, 0.5)  # a realistic offset: scores near ~0.6
            model.head.bias.fill_(6.0)
        return model.to(device).eval()

    def describe(self) -> str:
        base = super().describe()
        if self.is_debug or self.head_path is None:
            return base
        return f"{base} + {HEAD_ENTRY} from {self.head_path.parent}"

    def resolve_dtype(self, precision: str) -> torch.dtype:
        if precision == "fp16" or (precision == "auto" and self.device.type == "cuda"):
            return torch.float16
        return torch.float32

    @torch.inference_mode()
    def image_features(self, images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """L2-normalised float32 CLIP features of preprocessed ``(N, 3, S, S)`` images."""
        if self.visual.dtype != dtype:
            # like clip.load: the whole tower in that dtype (LayerNorm still computes in
            # fp32). Lossless both ways for OpenAI's weights, which are stored in fp16.
            self.visual.to(dtype)
        feats = self.visual(images.to(self.device, dtype)).to(torch.float32)
        return F.normalize(feats, dim=-1, p=2)

    @torch.inference_mode()
    def frame_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Raw LAION scores (0..10 scale) of normalised features."""
        return self.head(features.to(self.head.weight.dtype)).squeeze(-1)


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
        self.model = self.load(AestheticModel)

    def compute(self, inp) -> dict:
        return {"aes": float(score_frames(inp.frames(), self.model, self.options).score)}
