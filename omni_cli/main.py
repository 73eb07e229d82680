"""``omni``: entry point and dispatch.

Exit codes: 0 success, 1 failure (one line on stderr saying why), 2 usage error.
Each subcommand lives in its own module with ``register(subparsers)``; modules import their
heavy dependencies inside ``run`` so ``omni --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from omni_core import __version__
from omni_core.errors import OmniError

from . import (
    benchmark,
    curate,
    doctor,
    evaluate,
    generate,
    latents,
    probe,
    samples,
    study,
    train,
    weights,
)

COMMANDS = (doctor, weights, samples, probe, curate, latents, train, generate, benchmark,
            evaluate, study)

DESCRIPTION = """\
DreamID-Omni suite: curate talking-video training data on Ray, train the dual-stream model,
and score generations on IDBench-Omni.

Start with `omni doctor` to see what is installed and which checkpoints are missing,
`omni samples make OUT` for the bundled sample corpus, `omni probe FILE...` to inspect media.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omni", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"omni {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors
    try:
        return int(args.func(args) or 0)
    except OmniError as exc:
        print(f"omni {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"omni {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `omni ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
