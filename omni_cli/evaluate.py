"""``omni eval``: score a folder of generated videos on a benchmark, paper-style tables."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="score generated videos on IDBench-Omni (paper-style tables)",
        description="Score PRED_DIR/<instance>.mp4 (with an audio track, or <instance>.wav "
        "beside it) on a benchmark in the released layout (<set>/imgs, audios, captions) or a "
        "bench_instances Parquet manifest. Writes results.parquet, summary.json and the table "
        "as Markdown, CSV and LaTeX to OUT. Missing or unreadable predictions are counted, "
        "never scored as 0. Reruns reuse cached results.")
    p.add_argument("--bench", help="benchmark folder (released layout) or instances .parquet")
    p.add_argument("--pred", help="folder of predictions")
    p.add_argument("--out", help="results folder")
    p.add_argument("--metrics", default=None,
                   help="comma-separated metric names (default: every metric of the paper's "
                   "protocol; --list-metrics shows them and the lite backends)")
    p.add_argument("--lite", action="store_true",
                   help="replace each metric that has a lite backend by it (t_sim -> "
                   "t_sim_ge2e, wer -> wer_sphinx): real small models that ship inside "
                   "installed packages, scored without a weights folder; NOT the paper's "
                   "protocol (their columns are marked with a dagger)")
    p.add_argument("--weights", default="debug",
                   help="'debug' (tiny random models), 'random' (the released architectures "
                   "at full size with random weights, for throughput; both give meaningless "
                   "scores) or a weights folder (default: debug)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--recompute", action="append", default=[], metavar="METRIC",
                   help="ignore cached results of METRIC (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="a metric option, e.g. id_sim.n_frames=32 (repeatable)")
    p.add_argument("--name", help="model name in the table (default: the PRED folder name)")
    p.add_argument("--list-metrics", action="store_true", help="list the metrics and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evaluation.registry import REGISTRY, load_builtin, paper_metrics, with_lite

    load_builtin()
    if args.list_metrics:
        from .table import print_table

        print_table(["metric", "outputs", "needs", "tasks", "version", "protocol"],
                    [(n, ", ".join(f"{o.label} ({o.direction})" for o in c.spec.outputs),
                      ", ".join(c.spec.needs), ", ".join(c.spec.tasks), c.spec.version,
                      "paper" if c.spec.is_paper
                      else f"lite {c.spec.backend} for {c.spec.lite_for}, not the paper's")
                     for n, c in sorted(REGISTRY.items())])
        return 0
    missing = [f"--{a}" for a in ("bench", "pred", "out") if not getattr(args, a)]
    if missing:
        print(f"omni eval: error: {', '.join(missing)} required", file=sys.stderr)
        return 2
    from pathlib import Path

    from benchmark.released import load_bench
    from evaluation.runner import evaluate, options_from
    from omni_core.config import apply_override
    from omni_core.errors import OmniError

    bench = Path(args.bench)
    instances, errors = load_bench(bench)
    for e in errors.itertuples():
        print(f"omni eval: skipped {e.item}: {e.reason}", file=sys.stderr)
    names = args.metrics.split(",") if args.metrics else paper_metrics()
    if args.lite:
        names = with_lite(names)
    raw: dict = {}
    for item in args.set:
        apply_override(raw, item)
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise OmniError(f"--set for metric(s) not being run: {', '.join(unknown)}")
    options = {k: options_from(k, v) for k, v in raw.items()}
    run_ = evaluate(instances, args.pred, args.out, names, weights=args.weights,
                    device=args.device, options=options, recompute=args.recompute,
                    model_name=args.name, progress=not args.quiet,
                    config={"bench": str(bench), "pred": args.pred, "metrics": names,
                            "set": args.set})
    lite = run_.summary["details"]["lite_backends"]
    if lite:  # first, before any number
        print("NOT the paper's protocol (marked †): " + ", ".join(
            f"{n} stands in for {p}" for n, p in lite.items()))
    print(run_.table_md)
    s = run_.summary["details"]
    if s["missing_predictions"]:
        print(f"{len(s['missing_predictions'])} of {s['instances']} predictions missing or "
              "unreadable (see summary.json)")
    extra = s["unexpected_predictions"]
    if extra["count"]:
        names = ", ".join(extra["names"][:5]) + (", ..." if extra["count"] > 5 else "")
        n = extra["count"]
        print(f"ignored {n} file{'s' if n > 1 else ''} in {args.pred} matching no instance: "
              f"{names} (see summary.json)")
    if s["note"]:
        print(s["note"])
    print(f"results in {run_.out}: results.parquet, summary.json, table.md/.csv/.tex")
    return 0
