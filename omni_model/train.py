"""Progressive multi-task training of the dual-stream model, on one process or Ray Train.

``omni train --config configs/train/<flavor>.yaml --stage 1|2|3 [--resume]``: the stage's
latent folder (``stages.<n>.data``, written by ``omni latents``) is streamed in seeded,
shape-bucketed micro-batches; each optimizer step accumulates ``global_batch / (micro_batch x
workers)`` micro-batches. The loss is flow matching per stream (:mod:`omni_model.flow`),
masked by ``1 - M`` in stage 1, with condition dropout. Each micro-batch trains the task of
its samples (``Batch.task``, from the latent index: the curation's sample table decides, and
stage 3's deals R2AV : RV2AV : RA2V = 4 : 3 : 3; :mod:`omni_model.tasks`).

Every random draw of a step (noise levels, noise, dropout) comes from a generator seeded by
(seed, stage, step, rank, micro-batch), and the data order from (seed, epoch), so a run
resumed from a checkpoint continues bit for bit like one never stopped: checkpoints hold the
model, the optimizer, the EMA weights and the data position, written to a temporary folder
and renamed into place (``OUT/stage<n>/checkpoints/step-<k>``).

A stage starts from ``init``: a released checkpoint (``.safetensors`` / ``.pt`` in the
release layout, via :mod:`omni_model.adapter`), or a checkpoint folder of the previous stage
(its EMA weights by default), or nothing (random init, the ``debug`` and ``small`` flavors).

Each step prints (and appends to ``metrics.jsonl``) one line: loss per stream and per task,
gradient norm, tokens/s, TFLOP/s, MFU against ``peak_tflops``, the data-loading share and
peak accelerator memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from omni_core.config import to_dict
from omni_core.errors import OmniError
from omni_core.heldout import refusal_lines
from omni_core.ray_helpers import RayConfig
from omni_core.weights import safe_torch_load

from .data import LatentDataset, Position, prefetch
from .flavors import build_model, forward_flops, get_flavor
from .flow import FlowMatching, masked_mse
from .lora import LoRAConfig, adapter_state, apply_lora, frozen_linear_to, load_adapters
from .previews import PreviewConfig, Previewer, Scorer, append_record
from .tasks import Dropout, StreamWeights, build_inputs


@dataclass
class StageConfig:
    data: str | None = None  # latent folder or URL (s3://...: omni latents --out)
    steps: int = 10000
    masked_loss: bool = False


def _default_stages() -> dict[str, StageConfig]:
    """The paper's: 1 in-pair (masked loss), 2 cross-pair, 3 omni-task (its latent folder's
    sample table holds the 4 : 3 : 3 task mix)."""
    return {"1": StageConfig(steps=10000, masked_loss=True),
            "2": StageConfig(steps=20000),
            "3": StageConfig(steps=20000)}


@dataclass
class OptimConfig:
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0


@dataclass
class DataCacheConfig:
    """Each rank's node-local cache of the shards of a latent set at a URL
    (``stages.<n>.data: s3://...``; :class:`~omni_model.shard_cache.ShardCache`): it
    downloads the shards its micro-batches need as they come and deletes the least recently
    used to stay within ``max_gb`` (and ``max_shards`` when above 0). Unused for a local
    folder."""

    #: default: ``$OMNI_CACHE/latents/<hash of the URL>/rank-<k>`` (omni_core.storage)
    folder: str | None = None
    max_gb: float = 8.0
    max_shards: int = 0

    def folder_for(self, rank: int) -> str | None:
        return None if self.folder is None else str(Path(self.folder) / f"rank-{rank}")


@dataclass
class TrainRayConfig(RayConfig):
    """``workers: 0`` trains in this process; ``workers: N`` runs a Ray Train TorchTrainer
    with N workers (DDP; ``use_gpu`` gives each one GPU; gloo on CPUs)."""

    workers: int = 0
    use_gpu: bool = False
    cpus_per_worker: float = 1.0


@dataclass
class TrainConfig:
    flavor: str = "debug"
    out: str = "out/train"
    #: release checkpoint file, a weights entry (``ovi``, ``dreamid-omni``: from the weights
    #: folder), or a previous stage's checkpoint dir
    init: str | None = None
    init_weights: str = "ema"  # from a checkpoint dir: "ema" or "model"
    seed: int = 0
    global_batch: int = 32
    micro_batch: int = 1
    stages: dict[str, StageConfig] = field(default_factory=_default_stages)
    flow: FlowMatching = field(default_factory=FlowMatching)
    dropout: Dropout = field(default_factory=Dropout)
    loss: StreamWeights = field(default_factory=StreamWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema_decay: float = 0.9999  # 0 turns EMA off
    precision: str = "bf16"  # autocast dtype on a GPU ("fp32": none); CPUs run fp32
    compile: bool = False
    activation_checkpointing: bool = False
    fsdp: bool = False  # FSDP2 (fully_shard per block) instead of DDP; GPU workers only
    #: Ulysses sequence parallelism over this many ranks (omni_model.sequence_parallel): each
    #: sample's tokens split over them; 1: off; else it must equal the number of workers
    sequence_parallel: int = 1
    prefetch: int = 2  # micro-batches read ahead by a background thread (0: none)
    data_cache: DataCacheConfig = field(default_factory=DataCacheConfig)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    peak_tflops: float | None = 989.0  # per device, dense bf16 (H100 SXM); None: no MFU
    #: benchmarks (folders or their heldout.parquet, from `omni benchmark build`) whose
    #: held-out identities must not be trained on: latent samples showing one are left out,
    #: each an error row (OUT/stage<n>/errors.parquet, stage ``heldout``); a latent folder
    #: whose every sample is held out is an error
    heldout: list[str] = field(default_factory=list)
    #: LoRA fine-tuning (omni_model.lora): the base frozen, adapters trained and saved alone
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    #: samples during training (omni_model.previews): fixed instances with the EMA weights
    previews: PreviewConfig = field(default_factory=PreviewConfig)
    device: str = "auto"  # auto: cuda when available
    progress: bool = True
    ray: TrainRayConfig = field(default_factory=TrainRayConfig)

    def stage(self, n: int) -> StageConfig:
        try:
            return self.stages[str(n)]
        except KeyError:
            raise OmniError(f"no stage {n} in the config (stages: {', '.join(self.stages)})"
                            ) from None


# --------------------------------------------------------------------------------------------
# distributed helpers


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _seed_of(*parts: Any) -> int:
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# checkpoints


def stage_dir(cfg: TrainConfig, stage: int) -> Path:
    return Path(cfg.out) / f"stage{stage}"


def checkpoints(cfg: TrainConfig, stage: int) -> list[Path]:
    """Complete checkpoints of ``stage``, oldest first."""
    root = stage_dir(cfg, stage) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if (p / "trainer.json").is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def _save_checkpoint(path: Path, model: torch.nn.Module, ema: dict[str, torch.Tensor] | None,
                     optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int,
                     rank: int) -> None:
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd, osd = get_state_dict(model, optimizer, options=opts)
    lora = bool(state.get("config", {}).get("lora", {}).get("enabled"))
    if lora:  # the adapters only: the base is the init (trainer.json says which)
        msd = {k: v for k, v in msd.items() if k.endswith((".lora_a", ".lora_b"))}
    ema_full = {k: _full(v).cpu() for k, v in ema.items()} if ema is not None else None
    if rank != 0:
        return
    tmp = path.parent / f".tmp-{path.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in msd.items()},
              str(tmp / ("adapters.safetensors" if lora else "model.safetensors")))
    if ema_full is not None:
        save_file({k: v.contiguous() for k, v in ema_full.items()},
                  str(tmp / "ema.safetensors"))
    torch.save(osd, tmp / "optimizer.pt")
    (tmp / "trainer.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    old = sorted((p for p in path.parent.glob("step-*") if p != path),
                 key=lambda p: int(p.name.split("-")[1]))
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)


def _full(t: torch.Tensor) -> torch.Tensor:
    """A whole tensor from a (possibly FSDP-sharded) DTensor."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``full`` laid out as ``like``: distributed the same way when ``like`` is a DTensor."""
    if hasattr(like, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full, like.device_mesh, like.placements)
    return full


def _load_weights(model: torch.nn.Module, source: str, which: str) -> str:
    """Initial weights from a release file, a checkpoint folder or a weights entry
    (:func:`omni_model.adapter.checkpoint_state`); returns a description."""
    from .adapter import checkpoint_state

    sd, what = checkpoint_state(source, model.state_dict(), which)
    model.load_state_dict(sd, strict=True)
    return what


# --------------------------------------------------------------------------------------------
# the loop


@dataclass
class StepLog:
    step: int
    loss: float
    loss_video: float
    loss_audio: float
    task_loss: dict[str, float]
    grad_norm: float
    lr: float
    tokens_per_s: float
    tflops: float
    mfu: float | None
    data_share: float
    peak_mem_gib: float | None
    position: dict[str, int]

    def line(self, total: int) -> str:
        tasks = " ".join(f"{k} {v:.4f}" for k, v in sorted(self.task_loss.items()))
        mfu = "n/a" if self.mfu is None else f"{100 * self.mfu:.1f}%"
        mem = "" if self.peak_mem_gib is None else f" | mem {self.peak_mem_gib:.1f} GiB"
        return (f"step {self.step}/{total} | loss {self.loss:.4f} (video {self.loss_video:.4f}"
                f" audio {self.loss_audio:.4f}) | {tasks} | grad {self.grad_norm:.3f} | "
                f"lr {self.lr:.2e} | {self.tokens_per_s:,.0f} tok/s | {self.tflops:.3f} "
                f"TFLOP/s | MFU {mfu} | data {100 * self.data_share:.0f}%{mem}")


def train_loop(cfg: TrainConfig, stage: int, resume: bool = False,
               report: Any = None, score: Scorer | None = None) -> dict[str, Any]:
    """Train ``stage`` in this process (one rank of a group when torch.distributed is
    initialised); ``report(dict)`` is called with every step's metrics on every rank (Ray
    Train's ``report``); ``score`` gives each preview its quick score (rank 0). Returns the
    last step's log and the final checkpoint path."""
    rank, world = _dist()
    flavor = get_flavor(cfg.flavor)
    st = cfg.stage(stage)
    if not st.data:
        raise OmniError(f"stage {stage} has no latent folder: set stages.{stage}.data")
    device = _device(cfg)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    sp = cfg.sequence_parallel
    if sp > 1 and sp != world:
        raise OmniError(f"sequence_parallel {sp} needs {sp} workers (ray.workers), this run "
                        f"has {world}: the tokens of each sample are split over all of them")
    # data-parallel rank and size: under sequence parallelism every rank sees the same samples
    dp_rank, dp_world = (0, 1) if sp > 1 else (rank, world)
    accum, rem = divmod(cfg.global_batch, cfg.micro_batch * dp_world)
    if rem or accum < 1:
        raise OmniError(f"global_batch {cfg.global_batch} is not a multiple of micro_batch "
                        f"{cfg.micro_batch} x {dp_world} data-parallel workers")
    out = stage_dir(cfg, stage)
    out.mkdir(parents=True, exist_ok=True)
    dc = cfg.data_cache
    data = LatentDataset(st.data, cfg.micro_batch, flavor.args.text_len, seed=cfg.seed,
                         rank=dp_rank, world=dp_world, cache_dir=dc.folder_for(rank),
                         cache_bytes=int(dc.max_gb * 2**30), cache_shards=dc.max_shards)
    refused = refuse_heldout(data, cfg.heldout)
    if rank == 0 and cfg.heldout:
        _write_refusals(out / "errors.parquet", refused)
        for line in refusal_lines(refused, len(data.index) + len(refused), str(st.data)):
            print(line, file=sys.stderr, flush=True)

    model = build_model(flavor.args, "cpu", seed=cfg.seed)
    start_step, position = 0, Position()
    done = checkpoints(cfg, stage) if resume else []
    init_note = "random init"
    if cfg.init:  # (a LoRA run resumes onto its base too: the checkpoint holds adapters only)
        if not done or cfg.lora.enabled:
            init_note = _load_weights(model, cfg.init, cfg.init_weights)
    if cfg.lora.enabled:
        adapted = apply_lora(model, cfg.lora, seed=_seed_of(cfg.seed, "lora"))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        init_note += (f"; LoRA rank {cfg.lora.rank} on {len(adapted)} projections: "
                      f"{trainable:,} of {sum(p.numel() for p in model.parameters()):,} "
                      "parameters train")
    model.to(device)
    if cfg.lora.enabled and lora_base_bf16(cfg, device):
        cast = frozen_linear_to(model, torch.bfloat16)
        init_note += f"; frozen base in bf16 ({cast:,} values)"
    model.gradient_checkpointing = cfg.activation_checkpointing
    wrapped: torch.nn.Module = model
    if world > 1 and cfg.fsdp:
        from torch.distributed.fsdp import fully_shard

        # each block is called twice per step (its self part, then its cross + FFN part):
        # keep it gathered between the two calls of the forward pass
        for stream in (model.video_model, model.audio_model):
            for blk in stream.blocks:
                fully_shard(blk, reshard_after_forward=False)
        fully_shard(model)
    elif world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device.index]
                                          if device.type == "cuda" else None)
    # EMA of every state tensor in float32, sharded like the model under FSDP
    # (of the adapters only when LoRA trains: the base does not move)
    tracked = adapter_state(model) if cfg.lora.enabled else model.state_dict()
    ema = ({k: v.detach().float().clone() for k, v in tracked.items()}
           if cfg.ema_decay > 0 else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.optim.lr, betas=cfg.optim.betas,
                                  eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay)
    if done:
        from safetensors.torch import load_file
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        last = done[-1]
        state = json.loads((last / "trainer.json").read_text())
        osd = safe_torch_load(last / "optimizer.pt")
        if cfg.lora.enabled:
            if not (last / "adapters.safetensors").is_file():
                raise OmniError(f"{last} is a full checkpoint; resume it with lora.enabled "
                                "false (or start a LoRA run in another out folder)")
            load_adapters(model, load_file(str(last / "adapters.safetensors")))
            msd = model.state_dict()
        else:
            if not (last / "model.safetensors").is_file():
                raise OmniError(f"{last} holds LoRA adapters; resume it with its lora config")
            msd = load_file(str(last / "model.safetensors"))
        set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=osd,
                       options=StateDictOptions(full_state_dict=True))
        if ema is not None and (last / "ema.safetensors").is_file():
            saved = load_file(str(last / "ema.safetensors"))
            ema = {k: _shard_like(saved[k].to(device), v) for k, v in ema.items()}
        start_step = int(state["step"])
        position = Position(**state["position"])
        init_note = f"resumed from {last}" + (f" (LoRA adapters on {cfg.init or 'random init'})"
                                              if cfg.lora.enabled else "")
    fwd = torch.compile(wrapped) if cfg.compile else wrapped

    if sp > 1:
        from .sequence_parallel import sequence_parallel

        def split_tokens() -> Any:
            return sequence_parallel()
    else:
        split_tokens = contextlib.nullcontext
    batches = prefetch(data.iterate(position), cfg.prefetch)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if device.type == "cuda" and cfg.precision == "bf16"
                else contextlib.nullcontext())
    metrics_path = out / "metrics.jsonl"
    if rank == 0:
        _truncate_metrics(metrics_path, start_step)
        _truncate_metrics(out / "previews.jsonl", start_step)
        split = f" (sequence-parallel: each sample's tokens over {sp})" if sp > 1 else ""
        print(f"train: flavor {cfg.flavor}, stage {stage}, {st.steps} steps, {world} worker(s)"
              f"{split} x micro-batch {cfg.micro_batch} x {accum} accumulation = global batch "
              f"{cfg.global_batch}; {init_note}; device {device}", flush=True)
        if data.cache is not None:
            print(f"train: data {data.folder}: each rank streams its shards through a cache of "
                  f"{dc.max_gb:g} GB{f' / {dc.max_shards} shards' if dc.max_shards else ''} "
                  f"(rank 0: {data.cache.folder})", flush=True)
    previewer = None
    if cfg.previews.every:
        if world > 1 and cfg.fsdp:
            raise OmniError("previews during training are not available with FSDP2 yet "
                            "(the EMA weights are sharded): set previews.every=0")
        if rank == 0:
            previewer = Previewer(cfg.previews, cfg.flavor, device)
    bar = _progress(cfg, rank, start_step, st.steps)
    last_log: StepLog | None = None
    lw = cfg.loss
    try:
        for step in range(start_step, st.steps):
            t0 = time.perf_counter()
            data_s = 0.0
            tokens = 0
            flops = 0.0
            sums = {"loss": 0.0, "video": 0.0, "audio": 0.0}
            task_loss: dict[str, list[float]] = {}
            for micro in range(accum):
                td = time.perf_counter()
                position, batch = next(batches)
                batch = batch.to(device)
                data_s += time.perf_counter() - td
                gen = torch.Generator().manual_seed(_seed_of(cfg.seed, stage, step, dp_rank,
                                                             micro))
                b = batch.size
                sigma = cfg.flow.sample_sigma(b, gen)
                noise_v = torch.randn(batch.video.shape, generator=gen).to(device)
                noise_a = torch.randn(batch.audio.shape, generator=gen).to(device)
                task = batch.task
                inp = build_inputs(batch, sigma.to(device), noise_v, noise_a, task=task,
                                   masked_loss=st.masked_loss, dropout=cfg.dropout,
                                   null_text=data.null("empty", b).to(device), generator=gen)
                with autocast, split_tokens():
                    pv, pa = fwd(inp.video, inp.audio, sigma.to(device) * 1000.0, inp.text_video,
                                 inp.text_audio, n_image_refs=inp.n_image_refs,
                                 voice_lengths=inp.voice_lengths)
                f_t = batch.video.shape[2]
                la = batch.audio.shape[1]
                w = cfg.flow.weight(sigma).to(device)
                loss_v = masked_mse(pv[:, :, :f_t], inp.target_video, inp.loss_mask_video, w)
                loss_a = masked_mse(pa[:, :la], inp.target_audio, inp.loss_mask_audio, w)
                wv, wa = lw.of(task)
                loss = (wv * loss_v + wa * loss_a) / accum
                loss.backward()
                sums["loss"] += loss.item()
                sums["video"] += loss_v.item() / accum
                sums["audio"] += loss_a.item() / accum
                task_loss.setdefault(task, []).append((wv * loss_v + wa * loss_a).item())
                lv_tok = math.prod(inp.video.shape[2:]) // math.prod(flavor.args.patch)
                la_tok = inp.audio.shape[1]
                tokens += b * (lv_tok + la_tok)
                flops += 3.0 * b * forward_flops(flavor.args, lv_tok, la_tok)
            lr = cfg.optim.lr * min(1.0, (step + 1) / cfg.optim.warmup_steps) \
                if cfg.optim.warmup_steps else cfg.optim.lr
            for g in optimizer.param_groups:
                g["lr"] = lr
            grad = torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad],
                cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                with torch.no_grad():
                    current = model.state_dict()
                    for k, e in ema.items():
                        e.lerp_(current[k].detach().float(), 1.0 - cfg.ema_decay)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            stats = _reduce([sums["loss"], sums["video"], sums["audio"], tokens, flops, data_s],
                            device, world)
            tflops = stats[4] / sp / dt / world / 1e12  # (every SP rank counts every token)
            last_log = StepLog(
                step=step + 1, loss=stats[0] / world, loss_video=stats[1] / world,
                loss_audio=stats[2] / world,
                task_loss={k: sum(v) / len(v) for k, v in task_loss.items()},
                grad_norm=float(grad), lr=lr, tokens_per_s=stats[3] / sp / dt,
                tflops=tflops,
                mfu=(tflops / cfg.peak_tflops
                     if cfg.peak_tflops and device.type == "cuda" else None),
                data_share=stats[5] / world / dt,
                peak_mem_gib=(torch.cuda.max_memory_allocated(device) / 2**30
                              if device.type == "cuda" else None),
                position=position.to_dict())
            if rank == 0:
                with metrics_path.open("a") as fh:
                    fh.write(json.dumps(vars(last_log)) + "\n")
                _emit(bar, last_log.line(st.steps))
            if report is not None:
                report({"step": last_log.step, "loss": last_log.loss,
                        "grad_norm": last_log.grad_norm})
            is_last = step + 1 == st.steps
            if cfg.previews.every and ((step + 1) % cfg.previews.every == 0 or is_last):
                if previewer is not None:
                    rec = previewer.run(model, ema, step + 1,
                                        out / "previews" / f"step-{step + 1:07d}", score)
                    rec["loss"] = last_log.loss
                    append_record(out / "previews.jsonl", rec)
                    scored = ", ".join(f"{k} {v:.3f}" for k, v in rec.get("score", {}).items()
                                       if v is not None)
                    failed = f", {len(rec['errors'])} failed" if rec["errors"] else ""
                    _emit(bar, f"preview at step {step + 1}: {len(rec['videos'])} videos"
                               f"{failed} in {rec['sample_s']:.1f} s"
                               f"{'; ' + scored if scored else ''}")
                if world > 1:
                    torch.distributed.barrier()
            if (step + 1) % cfg.checkpoint_every == 0 or is_last:
                path = out / "checkpoints" / f"step-{step + 1:07d}"
                _save_checkpoint(path, model, ema, optimizer, {
                    "step": step + 1, "stage": stage, "position": position.to_dict(),
                    "flavor": cfg.flavor, "world": world, "config": to_dict(cfg)},
                    cfg.keep_checkpoints, rank)
                if world > 1:
                    torch.distributed.barrier()
    finally:
        batches.close()  # joins the read-ahead thread
    if bar is not None:
        bar.close()
    final = checkpoints(cfg, stage)
    return {"last": vars(last_log) if last_log else None,
            "checkpoint": str(final[-1]) if final else None,
            "heldout_refused": len(refused), "samples": len(data.index),
            "data_cache": data.cache.stats.to_dict() if data.cache is not None else None}


def lora_base_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether a LoRA run keeps its frozen base's linear weights in bfloat16."""
    autocast = device.type == "cuda" and cfg.precision == "bf16"
    if cfg.lora.base_dtype == "auto":
        return autocast
    if cfg.lora.base_dtype == "bfloat16" and not autocast:
        raise OmniError("lora.base_dtype bfloat16 needs bf16 autocast on a GPU (precision: "
                        f"bf16, a CUDA device); this run trains in float32 on {device}")
    return cfg.lora.base_dtype == "bfloat16"


def refuse_heldout(data: LatentDataset, heldout: list[str]) -> list[Any]:
    """Leave out of ``data`` every sample that shows a held-out identity of the benchmarks
    ``heldout`` (:mod:`omni_core.heldout`, by the keys ``omni latents`` records in the
    index); the refusals. An index without those keys cannot be checked and is an error, as
    is a folder whose every sample is held out (training pointed at a benchmark's data)."""
    from omni_core.heldout import all_refused_error, load_heldout

    from .data import KEY_COLUMNS

    held = load_heldout(heldout)
    if held is None:
        return []
    idx = data.index
    missing = [c for c in KEY_COLUMNS if c not in idx.columns]
    blank = [] if missing else [s for s, ids, clips in zip(
        idx.sample_id, idx.identity_ids, idx.clip_ids, strict=True)
        if len(ids) == 0 and len(clips) == 0]
    if missing or blank:
        which = "the index has no identity keys" if missing else \
            f"{len(blank)} sample(s) have no identity keys (e.g. {blank[0]})"
        raise OmniError(
            f"{data.folder}: {which}, so it cannot be checked against the held-out "
            f"identities of {', '.join(held.benchmarks)}: make the latents with this version "
            "of `omni latents` from a curation run (finished samples are reused)")
    refused = []
    for r in idx.itertuples(index=False):
        hit = held.check(str(r.sample_id), r.identity_ids, r.clip_ids, r.video_ids)
        if hit is not None:
            refused.append(hit)
    if refused and len(refused) == len(idx):
        raise all_refused_error(refused, str(data.folder))
    if refused:
        data.drop([r.sample_id for r in refused])
    return refused


def _write_refusals(path: Path, refused: list[Any]) -> None:
    from omni_core.manifests import error_row, errors_frame, write_manifest

    write_manifest(errors_frame([error_row(r.sample_id, "heldout", OmniError(r.message()))
                                 for r in refused]), "errors", path)


@torch.no_grad()
def validation_loss(model: torch.nn.Module, data: LatentDataset, *, batches: int = 2,
                    sigmas: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9), seed: int = 1234,
                    masked: bool = False, device: torch.device | str = "cpu") -> float:
    """A deterministic loss to compare checkpoints: the first ``batches`` micro-batches of
    epoch 0, every noise level of ``sigmas``, fixed noise, all conditions kept, scored as R2AV
    whatever the batches' tasks (a stage-3 folder's RV2AV / RA2V samples included)."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    it = data.iterate(Position())
    for b_i in range(batches):
        _, batch = next(it)
        batch = batch.to(device)
        for s_i, s in enumerate(sigmas):
            gen = torch.Generator().manual_seed(_seed_of(seed, b_i, s_i))
            sigma = torch.full((batch.size,), s)
            nv = torch.randn(batch.video.shape, generator=gen).to(device)
            na = torch.randn(batch.audio.shape, generator=gen).to(device)
            inp = build_inputs(batch, sigma.to(device), nv, na, task="r2av", masked_loss=masked,
                               dropout=Dropout(0.0, 0.0, 0.0, 0.0),
                               null_text=data.null("empty", batch.size).to(device),
                               generator=gen)
            pv, pa = model(inp.video, inp.audio, sigma.to(device) * 1000.0, inp.text_video,
                           inp.text_audio, n_image_refs=inp.n_image_refs,
                           voice_lengths=inp.voice_lengths)
            f_t, la = batch.video.shape[2], batch.audio.shape[1]
            total += (masked_mse(pv[:, :, :f_t], inp.target_video, inp.loss_mask_video)
                      + masked_mse(pa[:, :la], inp.target_audio, inp.loss_mask_audio)).item()
            n += 1
    model.train(was)
    return total / n


def _reduce(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines of steps up to ``step`` (a resumed run rewrites what followed)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip()
            and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def _progress(cfg: TrainConfig, rank: int, start: int, total: int) -> Any:
    if not cfg.progress or rank != 0 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


def _emit(bar: Any, line: str) -> None:
    if bar is None:
        print(line, flush=True)
    else:
        bar.write(line)
        bar.update(1)


# --------------------------------------------------------------------------------------------
# entry point


def run_training(cfg: TrainConfig, stage: int, resume: bool = False,
                 score: Scorer | None = None) -> dict[str, Any]:
    """Train in this process (``ray.workers == 0``) or as a Ray Train job; ``score`` (a
    picklable callable) scores each preview (:mod:`omni_model.previews`)."""
    if cfg.ray.workers <= 0:
        return train_loop(cfg, stage, resume, score=score)
    from omni_core.ray_helpers import init_ray

    init_ray(cfg.ray)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    result: dict[str, Any] = {}

    def worker(config: dict[str, Any]) -> None:
        from ray import train as ray_train

        r = train_loop(config["cfg"], config["stage"], config["resume"],
                       report=ray_train.report, score=config["score"])
        if torch.distributed.get_rank() == 0:
            Path(config["result"]).write_text(json.dumps(r))

    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    res_file = out / f"stage{stage}" / "result.json"
    res_file.parent.mkdir(parents=True, exist_ok=True)
    res_file.unlink(missing_ok=True)
    absolute = _absolute_paths(cfg)
    trainer = TorchTrainer(
        worker,
        train_loop_config={"cfg": absolute, "stage": stage, "resume": resume,
                           "result": str(res_file), "score": score},
        torch_config=TorchConfig(backend="nccl" if cfg.ray.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.ray.workers, use_gpu=cfg.ray.use_gpu,
                                     resources_per_worker={"CPU": cfg.ray.cpus_per_worker}),
        run_config=RunConfig(name=f"omni-train-stage{stage}",
                             storage_path=str(out / "ray")))
    trainer.fit()
    if res_file.is_file():
        result = json.loads(res_file.read_text())
    return result


def _absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """The config with local paths made absolute (Ray workers run in other directories)."""
    from dataclasses import replace

    def absolute(p: str | None) -> str | None:
        if p is None or "://" in p:
            return p
        return str(Path(p).resolve())

    from omni_core.weights import load_registry

    stages = {k: replace(v, data=absolute(v.data)) for k, v in cfg.stages.items()}
    heldout = [absolute(h) or h for h in cfg.heldout]
    cache = replace(cfg.data_cache, folder=absolute(cfg.data_cache.folder))
    entry = cfg.init is not None and not Path(cfg.init).exists() and \
        cfg.init.partition(":")[0] in load_registry().names()
    previews = replace(cfg.previews, instances=absolute(cfg.previews.instances))
    return replace(cfg, out=absolute(cfg.out) or cfg.out,
                   init=cfg.init if entry else absolute(cfg.init), stages=stages,
                   heldout=heldout, data_cache=cache, previews=previews)
