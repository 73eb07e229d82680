"""``omni train``: one stage of the progressive multi-task training (omni_model.train)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the dual-stream model (one stage; Ray Train or this process)",
        description="Train one stage of the curriculum: 1 in-pair reconstruction (masked "
        "loss), 2 cross-pair, 3 omni-task. The stage's latent folder comes from `omni "
        "latents` and decides each micro-batch's task (R2AV, RV2AV or RA2V: its samples'; "
        "stage 3's sample table deals them 4:3:3); start from a release checkpoint or the previous "
        "stage's (init=...). Checkpoints go to OUT/stage<N>/checkpoints; --resume continues "
        "exactly where the last one left off. With lora.enabled=true only LoRA adapters train "
        "and are saved; `omni train --merge CKPT --out DIR` writes a checkpoint's full weights "
        "(adapters merged into their base).")
    p.add_argument("--config", help="configs/train/<flavor>.yaml")
    p.add_argument("--stage", type=int, choices=(1, 2, 3))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. stages.1.data=out/latents or "
                   "stages.1.data=s3://bucket/latents (each rank streams its shards through a "
                   "bounded cache: data_cache.max_gb) (repeatable)")
    p.add_argument("--address", help="Ray cluster to join (host:port or auto); with "
                   "ray.workers > 0")
    p.add_argument("--workers", type=int, help="Ray Train workers (0: this process)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--heldout", action="append", default=[], metavar="BENCH",
                   help="a benchmark folder made by `omni benchmark build` (or its "
                   "heldout.parquet): latent samples showing its held-out identities are left "
                   "out, each an error row in OUT/stage<N>/errors.parquet (repeatable)")
    p.add_argument("--plan", action="store_true",
                   help="instead of training: the per-GPU memory of this config (weights, "
                   "gradients, optimizer, EMA, activations) and whether it fits")
    p.add_argument("--world", default=None, metavar="N[,N...]",
                   help="with --plan: GPUs (default ray.workers, at least 1)")
    p.add_argument("--gpu-gib", default="80,141", metavar="G[,G...]",
                   help="with --plan: GPU sizes to check against (default 80,141)")
    p.add_argument("--merge", metavar="CKPT",
                   help="instead of training: write CKPT's full weights (a LoRA checkpoint's "
                   "adapters merged into its base) to --out, a checkpoint folder for init= "
                   "or omni generate --checkpoint")
    p.add_argument("--out", help="with --merge: the folder to write")
    p.add_argument("--merge-weights", choices=("ema", "model"), default="ema",
                   help="with --merge: the EMA weights (default) or the raw ones")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from omni_core.config import load_config
    from omni_core.errors import OmniError
    from omni_model.train import TrainConfig, run_training

    if args.merge:
        from omni_model.adapter import merge_checkpoint

        if not args.out:
            raise OmniError("--merge needs --out DIR")
        dest = merge_checkpoint(args.merge, args.out, args.merge_weights)
        print(f"train: {args.merge} ({args.merge_weights} weights) -> {dest}/model.safetensors")
        return 0
    if args.plan:
        from omni_model.memory import plan_from_config

        if not args.config:
            raise OmniError("--plan needs --config")
        cfg = load_config(TrainConfig, args.config, list(args.set))
        sizes = [float(x) for x in args.gpu_gib.split(",")]
        worlds = [int(x) for x in args.world.split(",")] if args.world else [None]
        for w in worlds:
            plan = plan_from_config(cfg, w)
            lines = plan.lines()
            for g in sizes:
                lines.append(f"  fits {g:g} GiB: {'yes' if plan.fits(g) else 'NO'} "
                             f"({100 * plan.total / (g * 2**30):.0f}% of it; 10% kept free)")
            print("\n".join(lines + ([f"  {plan.note}"] if plan.note else [])))
        return 0
    if not args.config or args.stage is None:
        raise OmniError("training needs --config and --stage (or --plan, or --merge CKPT "
                        "--out DIR)")
    overrides = list(args.set)
    if args.address:
        overrides.append(f"ray.address={args.address}")
    if args.workers is not None:
        overrides.append(f"ray.workers={args.workers}")
    cfg = load_config(TrainConfig, args.config, overrides)
    if args.heldout:
        cfg = replace(cfg, heldout=[*cfg.heldout, *args.heldout])
    score = None
    if cfg.previews.every:
        cfg, score = _previews(cfg)
    result = run_training(cfg, args.stage, resume=args.resume, score=score)
    last = result.get("last") or {}
    refused = result.get("heldout_refused")
    held = f"; {refused} held-out sample(s) left out" if cfg.heldout else ""
    print(f"train: stage {args.stage} done at step {last.get('step')}, loss "
          f"{last.get('loss', float('nan')):.4f}; checkpoint {result.get('checkpoint')}{held}")
    return 0


def _previews(cfg):
    """A released-layout benchmark folder as ``previews.instances`` is imported to a
    ``bench_instances`` .parquet beside the run; the quick score uses the lite metrics of
    :mod:`evaluation` (this layer may import both the trainer and the evaluator)."""
    from dataclasses import replace
    from functools import partial
    from pathlib import Path

    path = Path(cfg.previews.instances)
    if path.is_dir():
        from benchmark.compare import bench_instances
        from omni_core.manifests import write_manifest

        instances, _ = bench_instances(path)
        dest = Path(cfg.out).resolve() / "preview_instances.parquet"
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_manifest(instances, "bench_instances", dest)
        cfg = replace(cfg, previews=replace(cfg.previews, instances=str(dest)))
    score = partial(preview_score, list(cfg.previews.metrics), cfg.previews.weights) \
        if cfg.previews.metrics else None
    return cfg, score


def preview_score(metrics, weights, folder, instances):
    """The mean of each metric (lite backends where there are) over a preview's videos."""
    from evaluation.registry import load_builtin, with_lite
    from evaluation.runner import score_models

    load_builtin()
    names = with_lite(list(metrics))
    scores = score_models(instances, {"preview": folder}, folder / "_eval", names,
                          weights=weights, progress=False)
    out = {}
    for name in names:
        v = scores.results[(scores.results.metric == name) & (scores.results.status == "ok")]
        out[name] = None if v.empty else float(v.value.mean())
    return out
