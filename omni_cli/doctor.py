"""``omni doctor``: what is installed, GPU or not, which checkpoints are present or missing."""

from __future__ import annotations

import argparse
import dataclasses

from .table import human_size, print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help="report versions, GPU and which pretrained weights are present",
        description="Report library and tool versions, whether a GPU is usable, and for every "
        "checkpoint in the weights registry whether it is present under the weights folder "
        "($OMNI_WEIGHTS) and how to get it if not. Downloads nothing.")
    p.add_argument("--weights", metavar="DIR", help="weights folder (default: $OMNI_WEIGHTS)")
    p.add_argument("--manifest", metavar="YAML", help="another weights manifest")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if a required package or tool is missing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omni_core.doctor import collect
    from omni_core.weights import load_registry

    report = collect(args.weights, load_registry(args.manifest))
    if args.json:
        print_json({**dataclasses.asdict(report), "problems": report.problems})
    else:
        _print(report)
    return 1 if args.strict and report.problems else 0


def _print(r) -> None:
    commit = f" (git {r.git_commit})" if r.git_commit else ""
    print(f"omni {r.suite_version}{commit}  python {r.python}  {r.platform}\n")
    print_table(["package", "version", "used for"],
                [(c.name, c.version or "MISSING", c.note) for c in r.packages])
    print()
    print_table(["tool", "version", "used for"],
                [(c.name, c.version or "MISSING", c.note) for c in r.binaries])
    gpu = r.gpu
    if gpu.get("available"):
        print(f"\nGPU: yes ({', '.join(gpu['devices'])}; torch CUDA {gpu['torch_cuda_build']})")
    else:
        build = gpu.get("torch_cuda_build")
        print(f"\nGPU: no (torch CUDA build {build}; running on CPU)" if build
              else f"\nGPU: no ({gpu.get('reason', 'CPU only')})")
    present = [w for w in r.weights if w.state == "present"]
    print(f"\nWeights folder: {r.weights_root}  ({len(present)}/{len(r.weights)} present)")
    print_table(["checkpoint", "state", "size", "license", "used by"],
                [(w.name, w.state, human_size(w.size), w.license, ", ".join(w.used_by))
                 for w in r.weights])
    missing = [w for w in r.weights if w.state != "present"]
    if missing:
        print("\nMissing checkpoints and how to get them (the suite never downloads on its "
              "own; tests and the demo use debug weights):")
        for w in missing:
            print(f"  {w.name} [{w.state}]: {w.how_to_get}")
    if r.problems:
        print("\nProblems:")
        for p in r.problems:
            print(f"  {p}")
