"""LoRA: low-rank adapters on the blocks' projections, for fine-tuning the released model on
a few GPUs.

A targeted ``nn.Linear`` ``W`` becomes ``W x + (alpha / rank) * B A dropout(x)`` with ``A``
(rank x in) Kaiming-uniform and ``B`` (out x rank) zero, so the adapted model starts exactly
as the base one. Only ``A`` and ``B`` train; the base weights are frozen (no gradients, no
optimizer state: AdamW's 16 bytes per parameter are paid for the adapters only).

:class:`LoRAConfig` picks the streams, the blocks and the projections (``fnmatch`` patterns
on a block's module names: ``self_attn.q``, ``cross_attn.k_fusion``, ``ffn.0``, ...).
:func:`apply_lora` wraps them; :func:`adapter_state` is what a checkpoint keeps
(``adapters.safetensors``: the ``A``/``B`` tensors under their module paths);
:func:`load_adapters` puts them back; :func:`merge_lora` folds them into the base weights
(``W += scale * B A``) and unwraps, which gives the same outputs to float tolerance and a
plain model again (``omni train merge``).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from omni_core.errors import OmniError

#: every projection of a block: its self-attention, its text + other-stream cross-attention
#: and its FFN
ALL_TARGETS = ("self_attn.*", "cross_attn.*", "ffn.*")
STREAMS = ("video", "audio")


@dataclass
class LoRAConfig:
    """``enabled``: train adapters instead of the whole model. ``rank``, ``alpha`` (the
    update is scaled by alpha / rank), ``dropout`` (on the adapter's input); ``streams``,
    ``blocks`` (indices; null: all) and ``targets`` (patterns of the block's projections)
    choose where."""

    enabled: bool = False
    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.0
    streams: list[str] = field(default_factory=lambda: list(STREAMS))
    blocks: list[int] | None = None
    targets: list[str] = field(default_factory=lambda: list(ALL_TARGETS))
    #: the frozen base's linear weights while training: ``auto`` = bfloat16 when the run
    #: trains in bf16 on a GPU (half the memory, and no autocast copy), else float32
    base_dtype: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"lora.rank must be an integer >= 1, got {self.rank!r}")
        if not self.alpha > 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout!r}")
        bad = [s for s in self.streams if s not in STREAMS]
        if bad or not self.streams:
            raise ValueError(f"lora.streams must be a non-empty subset of {list(STREAMS)}, "
                             f"got {self.streams!r}")
        if not self.targets:
            raise ValueError("lora.targets is empty: name the projections to adapt")
        if self.base_dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"lora.base_dtype is auto, float32 or bfloat16, got "
                             f"{self.base_dtype!r}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = alpha / rank
        w = base.weight
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=w.dtype,
                                               device=w.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=w.dtype,
                                               device=w.device))
        bound = 1.0 / math.sqrt(base.in_features)  # kaiming_uniform(a=sqrt(5)), as nn.Linear
        with torch.no_grad():
            self.lora_a.copy_((torch.rand(self.lora_a.shape, generator=generator) * 2 - 1)
                              * bound)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:  # what code that reads ``.weight`` (dtypes) sees
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (self.dropout(x) @ self.lora_a.t().to(x.dtype)) @ self.lora_b.t().to(x.dtype)
        return self.base(x) + update * self.scale

    def merged(self) -> nn.Linear:
        """The base layer with the update folded in (a new module; this one is unchanged)."""
        base = self.base
        out = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                        device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            delta = (self.lora_b.float() @ self.lora_a.float()) * self.scale
            out.weight.copy_((base.weight.float() + delta).to(base.weight.dtype))
            if base.bias is not None:
                out.bias.copy_(base.bias)
        return out


def _targets(model: nn.Module, cfg: LoRAConfig) -> list[tuple[nn.Module, str, str]]:
    """(parent module, attribute, full name) of every ``nn.Linear`` the config targets."""
    found = []
    for stream in cfg.streams:
        blocks = getattr(model, f"{stream}_model").blocks
        idx = range(len(blocks)) if cfg.blocks is None else cfg.blocks
        for i in idx:
            if not 0 <= i < len(blocks):
                raise OmniError(f"lora.blocks: block {i} does not exist ({len(blocks)} blocks)")
            for name, mod in blocks[i].named_modules():
                if isinstance(mod, nn.Linear) and any(fnmatch.fnmatchcase(name, t)
                                                      for t in cfg.targets):
                    parent_name, _, attr = name.rpartition(".")
                    parent = blocks[i].get_submodule(parent_name) if parent_name else blocks[i]
                    found.append((parent, attr, f"{stream}_model.blocks.{i}.{name}"))
    if not found:
        raise OmniError(f"lora.targets {cfg.targets} match no projection of the blocks (e.g. "
                        "self_attn.q, cross_attn.k_fusion, ffn.0)")
    return found


def apply_lora(model: nn.Module, cfg: LoRAConfig, seed: int = 0) -> list[str]:
    """Freeze every parameter of ``model`` and wrap the targeted projections in
    :class:`LoRALinear` (adapters seeded); returns the adapted modules' names."""
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    names = []
    for parent, attr, name in _targets(model, cfg):
        base = getattr(parent, attr)
        if isinstance(base, LoRALinear):
            raise OmniError(f"{name} already has an adapter")
        setattr(parent, attr, LoRALinear(base, cfg.rank, cfg.alpha, cfg.dropout, g))
        names.append(name)
    return names


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors (``<module>.lora_a`` / ``.lora_b``), detached."""
    return {k: v.detach() for k, v in model.state_dict().items()
            if k.endswith((".lora_a", ".lora_b"))}


def load_adapters(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Put saved adapters into a model :func:`apply_lora` prepared the same way (the same
    modules, ranks and shapes), or say what differs."""
    mine = adapter_state(model)
    if set(mine) != set(state):
        missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
        raise OmniError(f"the adapters do not fit this model's LoRA layout (missing "
                        f"{missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected "
                        f"{extra[:3]}{'...' if len(extra) > 3 else ''}): use the lora config "
                        "they were trained with")
    for k, v in state.items():
        if tuple(v.shape) != tuple(mine[k].shape):
            raise OmniError(f"adapter {k}: shape {tuple(v.shape)}, the model's "
                            f"{tuple(mine[k].shape)} (another rank?)")
    model.load_state_dict(dict(state), strict=False)


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base weight and unwrap it (in place); returns how many."""
    n = 0
    for mod in list(model.modules()):
        for attr, child in list(mod.named_children()):
            if isinstance(child, LoRALinear):
                setattr(mod, attr, child.merged())
                n += 1
    for p in model.parameters():
        p.requires_grad_(True)
    return n


def frozen_linear_to(model: nn.Module, dtype: torch.dtype) -> int:
    """Cast the frozen ``nn.Linear`` weights and biases of ``model`` (the base under LoRA) to
    ``dtype``; norms, modulations and the adapters keep theirs. Returns the values cast."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            for p in m.parameters(recurse=False):
                if not p.requires_grad and p.dtype != dtype:
                    p.data = p.data.to(dtype)
                    n += p.numel()
    return n
