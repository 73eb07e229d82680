"""InternVid's ViCLIP-L: a video ViT-L/14 and a CLIP text transformer, with CLIP's tokenizer.

The ViCLIP metric (``evaluation.metrics.viclip``, VBench ``overall_consistency``) scores the
cosine of the two towers' features. The video tower runs all 8 x 256 patch tokens of a clip
behind one class token, with spatial and temporal position embeddings; the text tower reads
CLIP BPE tokens (:mod:`.clip_bpe`) in a 32-token context.

Checkpoint: ``viclip-l-internvid-10m-flt``: ``ViClip-InternVid-10M-FLT.pth`` (``torch.save``
of ``{"model": state_dict, ...}`` with ``vision_encoder.*``, ``text_encoder.*`` and ``temp``)
and ``bpe_simple_vocab_16e6.txt.gz``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import WeightsError
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

from .clip_bpe import BPETokenizer, train_bpe_merges
from .clip_vit import LayerNorm, TextConfig, TextTransformer, Transformer, VisionConfig
from .torch_archive import read_torch_archive

__all__ = [
    "BPE_FILE",
    "CKPT_FILE",
    "DEBUG_BPE_TEXT",
    "ViCLIPConfig",
    "ViCLIPModel",
    "VideoVisionTransformer",
]

CKPT_FILE = "ViClip-InternVid-10M-FLT.pth"
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"


@dataclass(frozen=True)
class ViCLIPConfig:
    """ViCLIP geometry; ViCLIP-L (InternVid-10M-FLT) by default."""

    vision: VisionConfig = VisionConfig()
    num_frames: int = 8
    text: TextConfig = TextConfig()

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> ViCLIPConfig:
        v = "vision_encoder."
        conv = sd[f"{v}conv1.weight"]
        if conv.ndim != 5 or conv.shape[2] != 1:
            raise WeightsError(f"vision_encoder.conv1.weight {tuple(conv.shape)}: expected a "
                               f"(width, 3, 1, patch, patch) Conv3d with temporal kernel 1")
        flat = {f"{v}conv1.weight": conv[:, :, 0], **{k: t for k, t in sd.items() if k.startswith(v)
                                                      and k != f"{v}conv1.weight"}}
        return cls(
            vision=VisionConfig.from_state_dict(flat, prefix=v),
            num_frames=int(sd[f"{v}temporal_positional_embedding"].shape[1]),
            text=TextConfig.from_state_dict(sd, prefix="text_encoder."),
        )


class VideoVisionTransformer(nn.Module):
    """ViCLIP's video ViT: per-frame patches with spatial and temporal position embeddings,
    all frames in one token sequence behind one class token; the projected class token.

    Parameter names and shapes are upstream's (``conv1`` is a Conv3d with temporal kernel 1,
    ``temporal_positional_embedding`` is ``(1, num_frames, width)``).
    """

    def __init__(self, cfg: VisionConfig, num_frames: int) -> None:
        super().__init__()
        self.cfg, self.num_frames = cfg, num_frames
        w, p = cfg.width, cfg.patch_size
        scale = w**-0.5
        self.conv1 = nn.Conv3d(3, w, (1, p, p), (1, p, p), bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid**2 + 1, w))
        self.temporal_positional_embedding = nn.Parameter(0.02 * torch.randn(1, num_frames, w))
        self.ln_pre = LayerNorm(w)
        self.transformer = Transformer(w, cfg.layers, cfg.heads)
        self.ln_post = LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, cfg.output_dim))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, S, S)`` normalised frames -> ``(B, output_dim)`` (not normalised).

        ``T`` must be ``num_frames``, or 1 (then the mean temporal embedding is used, as
        upstream does for images).
        """
        b, t = video.shape[:2]
        if t not in (1, self.num_frames):
            raise ValueError(f"ViCLIP takes {self.num_frames} frames (or 1), got {t}")
        x = self.conv1(video.transpose(1, 2))  # B, W, T, g, g
        x = x.flatten(3).permute(0, 2, 3, 1)  # B, T, g*g, W
        x = x + self.positional_embedding[1:].to(x.dtype)
        temporal = self.temporal_positional_embedding
        temporal = temporal.mean(1, keepdim=True) if t == 1 else temporal
        x = x + temporal.to(x.dtype).unsqueeze(2)  # (1, T, 1, W)
        x = x.transpose(1, 2).reshape(b, -1, x.shape[-1])  # patch-major: (n t) as upstream
        cls = (self.class_embedding + self.positional_embedding[0]).to(x.dtype)
        x = torch.cat([cls.expand(b, 1, -1), x], dim=1)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


#: Sentences the debug twin's tiny BPE vocabulary is learned from.
DEBUG_BPE_TEXT = (
    "a man and a woman talk to the camera in a bright room. the person on the left speaks "
    "first, then the other one answers with a smile. two people sit at a table and discuss "
    "the weather, the news and their plans for the weekend."
)


class ViCLIPModel(PretrainedComponent, nn.Module):
    """InternVid ViCLIP: :class:`VideoVisionTransformer` + CLIP :class:`TextTransformer`
    (upstream keys ``vision_encoder.*``, ``text_encoder.*``, ``temp``) and its tokenizer."""

    weights_entry = "viclip-l-internvid-10m-flt"
    weights_files = (CKPT_FILE, BPE_FILE)

    def __init__(self, cfg: ViCLIPConfig, tokenizer: BPETokenizer) -> None:
        nn.Module.__init__(self)
        if tokenizer.vocab_size > cfg.text.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens, the text tower "
                             f"{cfg.text.vocab_size}")
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.vision_encoder = VideoVisionTransformer(cfg.vision, cfg.num_frames)
        self.text_encoder = TextTransformer(cfg.text)
        self.temp = nn.Parameter(torch.tensor(1 / 100.0))  # training only; kept for the keys
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.temp.device

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        path = paths[CKPT_FILE]
        try:
            ckpt: Any = load_torch_checkpoint(path)
        except WeightsError:
            # the file may pickle training config objects next to the weights, which
            # weights_only refuses; the restricted reader keeps only tensors and containers
            ckpt = read_torch_archive(path)
        state = ckpt.get("model", ckpt) if isinstance(ckpt, Mapping) else None
        if not isinstance(state, Mapping) or "vision_encoder.conv1.weight" not in state:
            raise WeightsError(f"{path} holds no ViCLIP state dict ('model' with "
                               f"'vision_encoder.*' keys)")
        try:
            cfg = ViCLIPConfig.from_state_dict(state)
        except KeyError as exc:
            raise WeightsError(f"{path}: ViCLIP state dict lacks {exc}") from None
        model = cls(cfg, BPETokenizer.from_file(paths[BPE_FILE]))
        load_state_dict_strict(model, state, str(path), cast=True)
        return model.to(device).eval()

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"config": ViCLIPConfig()}  # ViCLIP-L/14, 8 frames, CLIP-L text

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        tokenizer = kw.get("tokenizer") or BPETokenizer(train_bpe_merges([DEBUG_BPE_TEXT], 64))
        cfg = kw.get("config") or ViCLIPConfig(
            vision=VisionConfig(width=64, layers=2, heads=1, patch_size=32, image_size=224,
                                output_dim=32),
            num_frames=8,
            text=TextConfig(vocab_size=tokenizer.vocab_size, context_length=32, width=64,
                            heads=1, layers=2, embed_dim=32),
        )
        return cls(cfg, tokenizer).to(device).eval()

    @torch.inference_mode()
    def video_features(self, video: torch.Tensor) -> torch.Tensor:
        """L2-normalised features of preprocessed ``(B, T, 3, S, S)`` clips."""
        feats = self.vision_encoder(video.to(self.device, torch.float32))
        return F.normalize(feats.float(), dim=-1)

    @torch.inference_mode()
    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised features of ``(N, context_length)`` token ids."""
        return F.normalize(self.text_encoder(tokens.to(self.device)).float(), dim=-1)
