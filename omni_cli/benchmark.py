"""``omni benchmark``: IDBench-Omni instances (fixtures from the sample corpus, import)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark", help="build benchmark fixtures or import the released layout",
        description="IDBench-Omni instances. `fixtures` writes one- and two-person test cases "
        "in the released layout from the sample corpus, with the corpus clips as predictions; "
        "`import` turns a released-layout folder into a bench_instances Parquet manifest.")
    bsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fx = bsub.add_parser("fixtures", help="fixtures in the released layout from the corpus")
    fx.add_argument("out", metavar="OUT")
    fx.add_argument("--corpus", required=True, help="a folder made by `omni samples make`")
    fx.set_defaults(func=run_fixtures)
    im = bsub.add_parser("import", help="released layout -> bench_instances .parquet")
    im.add_argument("bench", metavar="BENCH")
    im.add_argument("out", metavar="OUT.parquet")
    im.set_defaults(func=run_import)


def run_fixtures(args: argparse.Namespace) -> int:
    from benchmark.fixtures import build_fixtures

    fx = build_fixtures(args.corpus, args.out)
    print(f"{len(fx.instance_ids)} instances in {fx.bench}; predictions in {fx.pred}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from benchmark.released import import_released
    from omni_core.manifests import write_manifest

    inst, errors = import_released(args.bench)
    write_manifest(inst, "bench_instances", args.out)
    for e in errors.itertuples():
        print(f"skipped {e.item}: {e.reason}")
    print(f"{len(inst)} instances -> {args.out} ({len(errors)} skipped)")
    return 1 if errors.size and inst.empty else 0
