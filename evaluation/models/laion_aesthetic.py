"""The AES network: OpenAI CLIP ViT-L/14's image tower + the LAION aesthetic linear head.

The AES metric (``evaluation.metrics.aes``) feeds it VBench-preprocessed frames
(:func:`~.clip_vit.clip_preprocess`) and averages its per-frame scores.
:class:`ImprovedAestheticModel` swaps the head for the improved aesthetic predictor's MLP
(``AESOptions.head="improved"``): the same L2-normalised ViT-L/14 features, the same 1..10
scale, not VBench's number.

Checkpoints: ``openai-clip-vit-l-14`` (OpenAI ships ``ViT-L-14.pt`` as a TorchScript archive;
its tensors are read with a restricted unpickler, see
:func:`~.torch_archive.torchscript_state_dict`, so no TorchScript code or pickled callable runs)
and ``laion-aesthetic-vit-l-14-linear`` (``sa_0_4_vit_l_14_linear.pth``, a plain
``{"weight", "bias"}`` state dict) or ``improved-aesthetic-vit-l-14-mlp``
(``sac+logos+ava1-l14-linearMSE.pth``, the MLP's ``layers.*`` state dict).

VBench loads CLIP with ``clip.load``, which keeps the checkpoint's fp16 weights on CUDA and
casts to fp32 on CPU; :meth:`AestheticModel.resolve_dtype` with ``"auto"`` does the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import WeightsError
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

from .clip_vit import VisionConfig, VisionTransformer
from .torch_archive import is_torchscript_archive, torchscript_state_dict

__all__ = [
    "CLIP_FILE",
    "HEAD_ENTRY",
    "HEAD_FILE",
    "IMPROVED_ENTRY",
    "IMPROVED_FILE",
    "AestheticModel",
    "ImprovedAestheticHead",
    "ImprovedAestheticModel",
]

CLIP_FILE = "ViT-L-14.pt"
HEAD_ENTRY = "laion-aesthetic-vit-l-14-linear"
HEAD_FILE = "sa_0_4_vit_l_14_linear.pth"
IMPROVED_ENTRY = "improved-aesthetic-vit-l-14-mlp"
IMPROVED_FILE = "sac+logos+ava1-l14-linearMSE.pth"


class ImprovedAestheticHead(nn.Module):
    """The improved aesthetic predictor's MLP (christophschuhmann/improved-aesthetic-predictor,
    ``MLP(768)``): linear layers 768-1024-128-64-16-1 with dropout 0.2, 0.2, 0.1 after the
    first three and no activation (upstream comments its ReLUs out), so in eval mode it is one
    affine map. State-dict keys ``layers.{0,2,4,6,7}.{weight,bias}``."""

    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class AestheticModel(PretrainedComponent, nn.Module):
    """OpenAI CLIP image tower (``visual.*`` keys) + the LAION aesthetic linear head.

    Two manifest entries: the CLIP checkpoint (``weights_entry``) and the head
    (:data:`HEAD_ENTRY`, an ``extra_weights`` entry).
    """

    weights_entry = "openai-clip-vit-l-14"
    weights_files = (CLIP_FILE,)
    #: The head's manifest entry and file.
    head_entry: ClassVar[str] = HEAD_ENTRY
    head_file: ClassVar[str] = HEAD_FILE
    extra_weights = {HEAD_ENTRY: (HEAD_FILE,)}
    #: Every manifest entry this component reads (for provenance records).
    weights_entries = ("openai-clip-vit-l-14", HEAD_ENTRY)

    def __init__(self, vision: VisionConfig | None = None) -> None:
        nn.Module.__init__(self)
        cfg = vision or VisionConfig()
        self.visual = VisionTransformer(cfg)
        self.head = self.make_head(cfg.output_dim)
        self.head_path: Path | None = None
        self.eval()

    @staticmethod
    def make_head(dim: int) -> nn.Module:
        """The head on ``dim``-d features: LAION's ``nn.Linear(dim, 1)``."""
        return nn.Linear(dim, 1)

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

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
        head_path = paths[f"{cls.head_entry}/{cls.head_file}"]
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
            cls._debug_head(model.head)
        return model.to(device).eval()

    @staticmethod
    def _debug_head(head: nn.Module) -> None:
        head.weight.normal_(0.0, 0.5)  # a realistic offset: scores near ~0.6
        head.bias.fill_(6.0)

    def describe(self) -> str:
        base = super().describe()
        if self.is_debug or self.head_path is None:
            return base
        return f"{base} + {self.head_entry} from {self.head_path.parent}"

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
        return self.head(features.to(next(self.head.parameters()).dtype)).squeeze(-1)


class ImprovedAestheticModel(AestheticModel):
    """OpenAI CLIP ViT-L/14's image tower + the improved aesthetic predictor's MLP
    (:class:`ImprovedAestheticHead`, ``sac+logos+ava1-l14-linearMSE.pth``) on the same
    L2-normalised features."""

    head_entry = IMPROVED_ENTRY
    head_file = IMPROVED_FILE
    extra_weights = {IMPROVED_ENTRY: (IMPROVED_FILE,)}
    weights_entries = ("openai-clip-vit-l-14", IMPROVED_ENTRY)

    @staticmethod
    def make_head(dim: int) -> nn.Module:
        return ImprovedAestheticHead(dim)

    @staticmethod
    def _debug_head(head: nn.Module) -> None:
        head.layers[-1].bias.fill_(6.0)  # torch's default init, centred near ~0.6 as well
