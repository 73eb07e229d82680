"""``omni curate inpair``: the in-pair curation DAG on Ray (embedded, or a cluster via
``--address`` / ``ray job submit``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curate", help="build training data from raw talking videos (Ray Data DAGs)",
        description="Curation DAGs. `inpair` turns a folder of raw videos into clips with "
        "who-speaks-when; every input ends up processed or as a row of OUT/errors.parquet; "
        "a rerun resumes where a killed run stopped.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    ip = kinds.add_parser("inpair", help="raw videos -> in-pair clips and manifests")
    ip.add_argument("--input", required=True, help="folder of raw videos (or one file)")
    ip.add_argument("--out", required=True, help="output folder (manifests, media, parts)")
    ip.add_argument("--config", help="YAML config (default: the built-in defaults)")
    ip.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. clip.fps=25 (repeatable)")
    ip.add_argument("--address", help="Ray cluster to join (host:port or auto); "
                    "default: an embedded local cluster")
    ip.add_argument("--weights", help="'debug' (tiny random models) or a weights folder")
    ip.add_argument("--quiet", action="store_true", help="no progress bars")
    ip.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omni_core.config import load_config
    from pipelines.inpair.config import InpairConfig
    from pipelines.inpair.dag import run_inpair

    overrides = list(args.set)
    if args.address:
        overrides.append(f"ray.address={args.address}")
    if args.weights:
        overrides.append(f"weights={args.weights}")
    cfg = load_config(InpairConfig, args.config, overrides)
    summary = run_inpair(args.input, args.out, cfg, progress=not args.quiet)
    print("\n".join(summary.lines()))
    return 0
