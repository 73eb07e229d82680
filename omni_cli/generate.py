"""``omni generate``: sample a video with audio for every benchmark instance."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="sample <instance_id>.mp4 for every instance of a benchmark",
        description="Run the flow sampler (UniPC order 2 by default, 50 steps, shift 5) with "
        "per-stream multi-condition guidance over a bench_instances manifest (`omni "
        "benchmark import`), decode with the VAEs and the vocoder, and write OUT/<id>.mp4 "
        "for `omni eval`. Deterministic for a seed; a rerun keeps the videos made with the same "
        "checkpoint and settings and generates the others again.")
    p.add_argument("--instances", required=True, help="bench_instances .parquet")
    p.add_argument("--out", required=True, help="folder for the mp4 files")
    p.add_argument("--flavor", default="debug")
    p.add_argument("--checkpoint", help="release .safetensors, a training checkpoint "
                   "folder, or a weights entry (dreamid-omni, ovi: from the --weights folder); "
                   "default: seeded random init")
    p.add_argument("--weights", help="encoders: 'debug', 'random' or a weights folder")
    p.add_argument("--solver", choices=("unipc", "euler"))
    p.add_argument("--steps", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a GenerateConfig value, e.g. guidance=release")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omni_core.config import load_config
    from omni_model.generate import GenerateConfig, generate

    overrides = [f"flavor={args.flavor}"]
    for key in ("checkpoint", "weights", "solver", "steps"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(GenerateConfig, None, [*overrides, *args.set])
    summary = generate(args.instances, args.out, cfg, progress=not args.quiet)
    print("\n".join(summary.lines()))
    return 0 if not summary.items["failed"] else 1
