"""OpenAI-CLIP-style building blocks shared by the AES and ViCLIP networks.

Both run a CLIP ViT (AES: OpenAI CLIP ViT-L/14, :mod:`.laion_aesthetic`; ViCLIP: a video
ViT-L/14 plus a CLIP text transformer, :mod:`.viclip`) on VBench's ``clip_transform``. This
module holds our own implementation of:

* :func:`clip_preprocess`: VBench's tensor pipeline (bicubic resize of the shorter side,
  center crop, /255, CLIP mean/std), with the two dtype paths VBench actually takes;
* :class:`VisionTransformer` and :class:`TextTransformer`, whose parameter names and shapes
  are those of OpenAI CLIP (``conv1``, ``class_embedding``, ``transformer.resblocks.N.attn.
  in_proj_weight``, ``ln_final``, ``text_projection`` ...), so upstream state dicts load
  strictly without renaming.

CLIP's tokenizer is :mod:`.clip_bpe`; the reader of OpenAI's TorchScript archive is
:mod:`.torch_archive`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import WeightsError

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "LayerNorm",
    "QuickGELU",
    "ResidualAttentionBlock",
    "SelfAttention",
    "TextConfig",
    "TextTransformer",
    "Transformer",
    "VisionConfig",
    "VisionTransformer",
    "clip_preprocess",
    "count_layers",
    "resized_size",
]

#: OpenAI CLIP normalisation (VBench ``clip_transform``).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------------------------
# preprocessing


def resized_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) after torchvision ``Resize(short)``: shorter side to ``short``, the other
    ``int(short * long / short_side)`` (truncated, as torchvision does)."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def clip_preprocess(
    frames: np.ndarray | torch.Tensor,
    size: int = 224,
    *,
    quantize: bool,
    antialias: bool = False,
    batch_size: int = 64,
) -> torch.Tensor:
    """VBench ``clip_transform(size)`` on RGB frames ``(N, H, W, 3)`` uint8 -> ``(N, 3, s, s)``.

    VBench applies torchvision's *tensor* transforms, not PIL: ``Resize(size, BICUBIC)``,
    ``CenterCrop(size)``, ``x.float() / 255``, ``Normalize(CLIP_MEAN, CLIP_STD)``. What goes in
    differs per metric, and it changes the numbers slightly:

    * ``quantize=False``: AES (``load_video`` hands over ``torch.Tensor(buffer)``, float32
      0..255): the bicubic output keeps its overshoot and fractions;
    * ``quantize=True``: ViCLIP (decord's torch bridge hands over uint8): torchvision clamps
      the bicubic output to 0..255 and rounds it back to uint8.

    ``antialias=False`` is what VBench's pinned torchvision (<0.16) did on tensors; newer
    torchvision defaults to ``True``. Frames are processed ``batch_size`` at a time (memory
    only; the numbers do not depend on it).
    """
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB frames (N, H, W, 3), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("no frames to preprocess")
    h, w = int(x.shape[1]), int(x.shape[2])
    nh, nw = resized_size(h, w, size)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    out = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size].permute(0, 3, 1, 2).to(torch.float32)
        if (nh, nw) != (h, w):
            chunk = F.interpolate(
                chunk, size=(nh, nw), mode="bicubic", align_corners=False, antialias=antialias
            )
        if quantize:
            chunk = chunk.clamp(0, 255).round()
        chunk = chunk[:, :, top : top + size, left : left + size]
        out.append((chunk / 255.0 - mean) / std)
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# transformer blocks (OpenAI CLIP parameter names)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the activations' dtype (OpenAI CLIP's fp16 rule)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters.

    ``in_proj_weight``/``in_proj_bias`` pack q, k, v (in that order) and ``out_proj`` is a
    Linear, exactly the layout of the upstream checkpoints; the maths is scaled dot-product
    attention, batch first.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        mask = None if attn_mask is None else attn_mask.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))


class _MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` (QuickGELU MLP, 4x)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = _MLP(width)
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


def count_layers(sd: Mapping[str, Any], prefix: str) -> int:
    """Number of ``<prefix>transformer.resblocks.N.`` blocks in a state dict."""
    head = f"{prefix}transformer.resblocks."
    ids = {int(k[len(head) :].split(".")[0]) for k in sd if k.startswith(head)}
    if not ids:
        raise WeightsError(f"state dict has no '{head}*' keys")
    return max(ids) + 1


# --------------------------------------------------------------------------------------------
# image tower


@dataclass(frozen=True)
class VisionConfig:
    """Geometry of an OpenAI CLIP ViT; ViT-L/14 at 224 px by default."""

    width: int = 1024
    layers: int = 24
    heads: int = 16
    patch_size: int = 14
    image_size: int = 224
    output_dim: int = 768

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_state_dict(
        cls, sd: Mapping[str, torch.Tensor], prefix: str = "visual."
    ) -> VisionConfig:
        """Infer the geometry from the weights, as OpenAI's ``build_model`` does (heads =
        width / 64)."""
        conv = sd[f"{prefix}conv1.weight"]
        width, patch = int(conv.shape[0]), int(conv.shape[-1])
        grid = round((sd[f"{prefix}positional_embedding"].shape[0] - 1) ** 0.5)
        return cls(
            width=width,
            layers=count_layers(sd, prefix),
            heads=max(1, width // 64),
            patch_size=patch,
            image_size=grid * patch,
            output_dim=int(sd[f"{prefix}proj"].shape[1]),
        )


class VisionTransformer(nn.Module):
    """OpenAI CLIP image encoder (``model.visual``): the projected class token."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        scale = w**-0.5
        self.conv1 = nn.Conv2d(3, w, cfg.patch_size, cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid**2 + 1, w))
        self.ln_pre = LayerNorm(w)
        self.transformer = Transformer(w, cfg.layers, cfg.heads)
        self.ln_post = LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, cfg.output_dim))

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` normalised images -> ``(N, output_dim)`` (not normalised)."""
        x = self.conv1(images.to(self.dtype)).flatten(2).transpose(1, 2)  # N, grid^2, width
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


# --------------------------------------------------------------------------------------------
# text tower


@dataclass(frozen=True)
class TextConfig:
    """Geometry of a CLIP text transformer; ViCLIP-L's (CLIP-L text, context 32) by default."""

    vocab_size: int = 49408
    context_length: int = 32
    width: int = 768
    heads: int = 12
    layers: int = 12
    embed_dim: int = 768

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], prefix: str = "") -> TextConfig:
        width = int(sd[f"{prefix}ln_final.weight"].shape[0])
        return cls(
            vocab_size=int(sd[f"{prefix}token_embedding.weight"].shape[0]),
            context_length=int(sd[f"{prefix}positional_embedding"].shape[0]),
            width=width,
            heads=max(1, width // 64),
            layers=count_layers(sd, prefix),
            embed_dim=int(sd[f"{prefix}text_projection"].shape[1]),
        )


class TextTransformer(nn.Module):
    """CLIP text encoder: causal transformer, features of the EOT token (the highest id)."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(cfg.context_length, cfg.width))
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads)
        self.ln_final = LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(cfg.width**-0.5 * torch.randn(cfg.width, cfg.embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        mask = torch.full((cfg.context_length, cfg.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, context_length)`` token ids -> ``(N, embed_dim)`` (not normalised).

        No padding mask, only the causal one, as upstream: tokens after EOT cannot reach it.
        """
        if tokens.shape[-1] != self.cfg.context_length:
            raise ValueError(
                f"expected {self.cfg.context_length} tokens per text, got {tokens.shape[-1]}"
            )
        x = self.token_embedding(tokens) + self.positional_embedding.to(
            self.token_embedding.weight.dtype
        )
        x = self.ln_final(self.transformer(x, self.attn_mask))
        eot = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return eot @ self.text_projection
