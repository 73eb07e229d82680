"""``omni samples make OUT``: build the bundled sample corpus (offline, deterministic)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "samples", help="build the sample corpus that the demo and the tests run on",
        description="The sample corpus: short talking clips with 1-3 real faces (photos "
        "shipped in installed packages) and espeak-ng voices, pyannote.audio's real "
        "two-speaker recording, and deliberately broken files, with ground truth in Parquet.")
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    mk = ssub.add_parser("make", help="build the corpus into OUT (idempotent)")
    mk.add_argument("out", metavar="OUT", help="output folder")
    mk.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    mk.set_defaults(func=run_make)


def run_make(args: argparse.Namespace) -> int:
    from omni_core.samples import make_corpus

    summary = make_corpus(args.out, seed=args.seed)
    print(summary.describe() if hasattr(summary, "describe") else summary)
    return 0
