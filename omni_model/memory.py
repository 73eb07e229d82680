"""A memory plan for training: per-GPU bytes of weights, gradients, optimizer state, EMA and
activations for a flavor, a sample size, a world size and the chosen strategies, and whether
it fits a given GPU (``omni train --plan``).

The states follow from what :mod:`omni_model.train` keeps (the model in float32 with bf16
autocast, AdamW, an EMA in float32):

- **weights** 4 B / parameter; under FSDP2 each rank holds 1 / world of them, but the trainer
  keeps a block gathered between its two calls of a step (``reshard_after_forward=False``), so
  at the end of the forward pass every block's full float32 weights are present (the
  **gathered weights** line, the largest cost FSDP2 does not remove here);
- **autocast copies**: under bf16 autocast every weight used in the forward pass is cast once
  and kept for the backward pass (2 B / parameter, unsharded);
- **gradients** 4 B and **optimizer** 8 B (AdamW's two moments) per *trainable* parameter, and
  an **EMA** of 4 B; sharded by FSDP2; under DDP with more than one worker its gradient
  buckets add 4 B per trainable parameter;
- with **LoRA** only the adapters have gradients, optimizer state and EMA; in a bf16 run the
  frozen base's linear weights are kept in bf16 (``lora.base_dtype: auto``: 2 B / parameter,
  and no autocast copy of them);
- **activations** (divided by the sequence-parallel degree: each GPU holds its share of every
  sample's tokens; the all-to-all buffers are transient and not counted): the bytes of every
  tensor autograd saves for the backward pass, counted by
  running the model's own code on the ``meta`` device (no memory, no arithmetic) under
  saved-tensor hooks, with attention saving what the flash kernel keeps (q, k, v, the output
  and a float32 log-sum-exp; never the L x L scores). Counted for one and two blocks per stream,
  so the per-block and outside-block parts are exact for the configuration and extend to any
  depth; with activation checkpointing a block keeps only its inputs, and one block's full
  activations are live while it is recomputed.

A fixed ``reserve`` (default 10% of the GPU: the CUDA context, the caching allocator's
fragmentation, communication buffers) is kept free. :func:`measure_cpu_step` measures the
allocator's peak over a real training step on the CPU (float32, torch's profiler) to check the
plan (tests: within 15%).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from omni_core.errors import OmniError

from .flavors import Flavor, build_model, get_flavor
from .lora import LoRAConfig, apply_lora
from .model import ModelArgs

GIB = 2**30
BYTES = {"bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class Strategy:
    world: int = 1
    fsdp: bool = False
    #: LoRA rank (adapters on every projection of every block); None: full fine-tuning
    lora_rank: int | None = None
    checkpointing: bool = False
    #: Ulysses sequence parallelism: every token-wise activation split over this many GPUs
    sequence_parallel: int = 1
    precision: str = "bf16"  # "fp32": no autocast (the CPU path)
    ema: bool = True
    micro_batch: int = 1

    def describe(self) -> str:
        parts = [f"{self.world} GPU{'s' if self.world > 1 else ''}",
                 "FSDP2" if self.fsdp else ("DDP" if self.world > 1 else "one process"),
                 f"LoRA r{self.lora_rank}" if self.lora_rank else "full",
                 "act. ckpt" if self.checkpointing else "no act. ckpt",
                 *([f"sequence-parallel {self.sequence_parallel}"]
                   if self.sequence_parallel > 1 else []), self.precision,
                 f"micro-batch {self.micro_batch}"]
        return ", ".join(parts)


@dataclass
class MemoryPlan:
    flavor: str
    strategy: Strategy
    video_tokens: int
    audio_tokens: int
    params: int
    trainable: int
    parts: dict[str, float] = field(default_factory=dict)  # bytes per GPU
    note: str = ""

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def fits(self, gpu_gib: float, reserve: float = 0.10) -> bool:
        return self.total <= gpu_gib * GIB * (1.0 - reserve)

    def lines(self, gpu_gib: float | None = None, reserve: float = 0.10) -> list[str]:
        out = [f"{self.flavor}: {self.params / 1e9:.2f}B parameters ({self.trainable / 1e6:,.1f}M "
               f"trainable), {self.video_tokens:,} video + {self.audio_tokens:,} audio tokens "
               f"per sample; {self.strategy.describe()}"]
        for k, v in self.parts.items():
            out.append(f"  {k:<18} {v / GIB:9.1f} GiB")
        out.append(f"  {'total per GPU':<18} {self.total / GIB:9.1f} GiB")
        if gpu_gib is not None:
            ok = self.fits(gpu_gib, reserve)
            out.append(f"  {'fits ' + f'{gpu_gib:g} GiB':<18} {'yes' if ok else 'NO'} "
                       f"({100 * self.total / (gpu_gib * GIB):.0f}% of the GPU, "
                       f"{100 * reserve:.0f}% kept free)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"flavor": self.flavor, "strategy": vars(self.strategy),
                "video_tokens": self.video_tokens, "audio_tokens": self.audio_tokens,
                "params": self.params, "trainable": self.trainable,
                "parts_gib": {k: v / GIB for k, v in self.parts.items()},
                "total_gib": self.total / GIB}


# -------------------------------------------------------------------------------- activations


class _FlashLike(torch.autograd.Function):
    """Attention that saves what the flash kernel saves (q, k, v, out, float32 logsumexp)."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = q.new_empty(q.shape[0], q.shape[1], q.shape[2], v.shape[-1])
        lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], dtype=torch.float32,
                          device=q.device)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        q, k, v, _, _ = ctx.saved_tensors
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)


def _flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                     kv_sharded: bool = True, kv_stream: str | None = None) -> torch.Tensor:
    return _FlashLike.apply(q, k, v).flatten(2)


@contextlib.contextmanager
def _counting(params: set[int]):
    """Saved-tensor hooks that add up the bytes autograd keeps (each storage once; the
    model's own parameters not counted)."""
    seen: dict[int, tuple[torch.Tensor, int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t
        if id(base) not in params and id(t) not in params:
            size = base.numel() * base.element_size()
            old = seen.get(id(base))
            seen[id(base)] = (base, max(size, old[1] if old else 0))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield seen


def _trace(args: ModelArgs, grid: tuple[int, int, int], n_refs: int, audio_len: int,
           voice: int, micro_batch: int, dtype: torch.dtype, lora: LoRAConfig | None) -> int:
    """Bytes saved for backward by one forward pass of ``args`` on the meta device."""
    from . import model as model_mod

    m = build_model(args, "meta")
    if lora is not None:
        apply_lora(m, lora)
    else:
        for p in m.parameters():
            p.requires_grad_(True)
    m = m.to(dtype)
    params = {id(p) for p in m.parameters()}
    f, h, w = grid
    pt, ph, pw = args.patch
    video = torch.empty(micro_batch, args.video_channels, (f + n_refs) * pt, h * ph, w * pw,
                        device="meta", dtype=dtype)
    audio = torch.empty(micro_batch, audio_len + n_refs * voice, args.audio_channels,
                        device="meta", dtype=dtype)
    text = torch.empty(micro_batch, args.text_len, args.text_dim, device="meta", dtype=dtype)
    t = torch.empty(micro_batch, device="meta", dtype=dtype)
    real = model_mod.attention
    model_mod.attention = _flash_attention
    try:
        with _counting(params) as seen:
            m(video, audio, t, text, text, n_image_refs=n_refs * pt,
              voice_lengths=(voice,) * n_refs)
    finally:
        model_mod.attention = real
    return sum(size for _, size in seen.values())


def activation_bytes(args: ModelArgs, grid: tuple[int, int, int], audio_len: int, *,
                     n_refs: int = 2, voice: int = 31, micro_batch: int = 1,
                     precision: str = "bf16", checkpointing: bool = False,
                     lora: LoRAConfig | None = None) -> float:
    """The activations one micro-batch keeps for the backward pass (see the module
    docstring): traced at one and two blocks per stream, extended to ``args.layers``."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    one = _trace(replace(args, layers=1), grid, n_refs, audio_len, voice, micro_batch, dtype,
                 _lora_for(lora, 1))
    two = _trace(replace(args, layers=2), grid, n_refs, audio_len, voice, micro_batch, dtype,
                 _lora_for(lora, 2))
    block, outside = two - one, one - (two - one)
    if not checkpointing:
        return outside + args.layers * block
    f, h, w = grid
    pt, ph, pw = args.patch
    tokens_v = (f + n_refs) * pt * h * ph * w * pw // math.prod(args.patch)
    tokens_a = audio_len + n_refs * voice
    inputs = micro_batch * (tokens_v + tokens_a) * args.dim * BYTES[precision]
    return outside + args.layers * inputs + block


def _lora_for(lora: LoRAConfig | None, layers: int) -> LoRAConfig | None:
    if lora is None or lora.blocks is None:
        return lora
    return replace(lora, blocks=[b for b in lora.blocks if b < layers] or None)


# -------------------------------------------------------------------------------- the plan


def plan_memory(flavor: str | Flavor, strategy: Strategy, *, frames: int | None = None,
                height: int | None = None, width: int | None = None,
                n_refs: int = 1) -> MemoryPlan:
    """The per-GPU memory of training ``flavor`` on samples of its geometry (or ``frames``,
    ``height``, ``width`` pixels) with ``n_refs`` identities."""
    fl = get_flavor(flavor) if isinstance(flavor, str) else flavor
    geo = fl.geometry
    if any(v is not None for v in (frames, height, width)):
        geo = replace(geo, frames=frames or geo.frames, height=height or geo.height,
                      width=width or geo.width)
    s = strategy
    if s.world < 1 or s.micro_batch < 1:
        raise OmniError("world and micro_batch must be >= 1")
    if s.sequence_parallel > 1 and s.sequence_parallel != s.world:
        raise OmniError(f"sequence_parallel {s.sequence_parallel} runs on {s.sequence_parallel} "
                        f"GPUs, not {s.world}")
    if s.precision not in BYTES:
        raise OmniError(f"precision is bf16 or fp32, got {s.precision!r}")
    lora = LoRAConfig(enabled=True, rank=s.lora_rank, alpha=float(s.lora_rank)) \
        if s.lora_rank else None
    meta = build_model(fl.args, "meta")
    params = sum(p.numel() for p in meta.parameters())
    linear = sum(p.numel() for m in meta.modules() if isinstance(m, torch.nn.Linear)
                 for p in m.parameters(recurse=False))
    if lora is not None:
        apply_lora(meta, lora)
        trainable = sum(p.numel() for p in meta.parameters() if p.requires_grad)
    else:
        trainable = params
    shard = s.world if s.fsdp else 1
    parts: dict[str, float] = {}
    if lora is not None and s.precision == "bf16":
        # the frozen base's linear weights in bf16 (lora.base_dtype auto on a GPU), the rest
        # of the base and the adapters in float32; only the float32 rest is cast by autocast
        parts["weights"] = (2.0 * linear + 4.0 * (params - linear) + 4.0 * trainable) / shard
        parts["autocast copies"] = 2.0 * (params - linear)
    else:
        parts["weights"] = 4.0 * (params + (trainable if lora is not None else 0)) / shard
        if s.precision == "bf16":
            parts["autocast copies"] = 2.0 * params
    if s.fsdp and s.world > 1:
        parts["gathered weights"] = parts["weights"] * (s.world - 1)
    parts["gradients"] = 4.0 * trainable / shard
    if s.world > 1 and not s.fsdp:
        parts["DDP buckets"] = 4.0 * trainable
    parts["optimizer"] = 8.0 * trainable / shard
    if s.ema:
        parts["EMA"] = 4.0 * trainable / shard
    h, w = geo.latent_size
    grid = (geo.latent_frames, h // fl.args.patch[1], w // fl.args.patch[2])
    parts["activations"] = activation_bytes(
        fl.args, grid, geo.audio_latents, n_refs=n_refs, voice=geo.voice_latents,
        micro_batch=s.micro_batch, precision=s.precision, checkpointing=s.checkpointing,
        lora=lora) / s.sequence_parallel
    vt, at = geo.tokens(n_refs)
    return MemoryPlan(fl.name, s, vt, at, params, trainable, parts)


# -------------------------------------------------------------------------------- the check


def measure_cpu_step(flavor: str, *, micro_batch: int, frames: int, height: int, width: int,
                     n_refs: int = 1, lora_rank: int | None = None, checkpointing: bool = False,
                     seed: int = 0) -> dict[str, Any]:
    """Run one real training step (model built, forward, backward, AdamW, EMA) of ``flavor``
    in float32 on the CPU under torch's profiler and return the peak of the bytes torch's
    allocator held (``peak_bytes``; the inputs excluded) and the breakdown at the peak by the
    profiler's categories. Allocator bytes, not the resident set: the C library keeps freed
    pages, which would add noise that is not the plan's."""
    import json
    import tempfile
    import warnings

    from torch.profiler import ProfilerActivity, profile

    fl = get_flavor(flavor)
    geo = replace(fl.geometry, frames=frames, height=height, width=width)
    args = fl.args
    g = torch.Generator().manual_seed(seed)
    h, w = geo.latent_size
    pt = args.patch[0]
    video = torch.randn(micro_batch, args.video_channels, (geo.latent_frames + n_refs) * pt,
                        h, w, generator=g)
    audio = torch.randn(micro_batch, geo.audio_latents + n_refs * geo.voice_latents,
                        args.audio_channels, generator=g)
    text = torch.randn(micro_batch, args.text_len, args.text_dim, generator=g)
    t = torch.full((micro_batch,), 500.0)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        model = build_model(args, "cpu", seed=seed)
        if lora_rank:
            apply_lora(model, LoRAConfig(enabled=True, rank=lora_rank, alpha=float(lora_rank)))
        model.gradient_checkpointing = checkpointing
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=1e-4)
        ema = [p.detach().float().clone() for p in trainable]
        pv, pa = model(video, audio, t, text, text, n_image_refs=n_refs * pt,
                       voice_lengths=(geo.voice_latents,) * n_refs)
        (pv.square().mean() + pa.square().mean()).backward()
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema, trainable, strict=True):
                e.lerp_(p, 0.01)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the timeline's export is deprecated
        prof.export_memory_timeline(f"{tmp}/timeline.json", device="cpu")
        times, sizes = json.loads(open(f"{tmp}/timeline.json").read())
    totals = [sum(s) for s in sizes]
    peak = max(range(len(totals)), key=totals.__getitem__) if totals else 0
    return {"peak_bytes": float(totals[peak]) if totals else 0.0,
            "at_peak": [float(x) for x in sizes[peak]] if totals else []}


def plan_from_config(cfg: Any, world: int | None = None) -> MemoryPlan:
    """The plan of a :class:`~omni_model.train.TrainConfig` (its flavor, FSDP2, activation
    checkpointing, LoRA, micro-batch, precision, EMA) on ``world`` GPUs (default: its
    ``ray.workers``, at least 1)."""
    if cfg.lora.enabled and (cfg.lora.blocks is not None or cfg.lora.targets != [
            "self_attn.*", "cross_attn.*", "ffn.*"] or cfg.lora.streams != ["video", "audio"]):
        lora_note = "(plan: adapters on every projection of both streams)"
    else:
        lora_note = ""
    s = Strategy(world=world or max(1, cfg.ray.workers), fsdp=cfg.fsdp,
                 lora_rank=cfg.lora.rank if cfg.lora.enabled else None,
                 checkpointing=cfg.activation_checkpointing,
                 sequence_parallel=cfg.sequence_parallel,
                 precision="bf16" if cfg.precision == "bf16" else "fp32",
                 ema=cfg.ema_decay > 0, micro_batch=cfg.micro_batch)
    plan = plan_memory(cfg.flavor, s)
    plan.note = lora_note
    return plan
