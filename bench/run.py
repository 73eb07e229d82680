"""`make bench`: run every benchmark, write OUT/report.json and OUT/report.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from omni_core import __version__
from omni_core.doctor import git_commit

from . import clone_check, crosspair, curation, evaluation, media, scale, training

BENCHMARKS = {
    "media": (media.run, media.markdown),
    "evaluation": (evaluation.run, evaluation.markdown),
    "curation": (curation.run, curation.markdown),
    "crosspair": (crosspair.run, crosspair.markdown),
    # curation at scale: streaming merge, S3 resume, identity retrieval (exact and HNSW);
    # OMNI_BENCH_SCALE=full for the 100k retrieval sizes (docs/curation.md)
    "scale": (scale.run, scale.markdown),
    # quality, not speed: the lite clone check's operating points (docs/crosspair.md)
    "clone-check": (lambda repeat: clone_check.run(), clone_check.markdown),
    "training": (training.run, training.markdown),
    # only where an accelerator is present: real-size models, random weights; NVDEC decode
    "media-gpu": (lambda repeat: media.run_gpu(repeat), media.markdown_gpu),
    "evaluation-gpu": (lambda repeat: evaluation.run_real_size("cuda"),
                       evaluation.markdown_real_size),
    "curation-gpu": (lambda repeat: curation.run_real_size("cuda"),
                     curation.markdown_real_size),
    "crosspair-gpu": (lambda repeat: crosspair.run_real_size("cuda"),
                      crosspair.markdown_real_size),
    "training-gpu": (lambda repeat: training.run_real_size(),
                     training.markdown_real_size),
}


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/bench", help="report folder (default out/bench)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measure (best is kept)")
    ap.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "suite_version": __version__, "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "results": {},
    }
    md = [f"# omni benchmark report\n\n{report['date']}, git {report['git_commit']}, "
          f"{report['machine']['cpus']} CPUs, {report['machine']['platform']}\n"]
    for name, (run, markdown) in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        if name.endswith("-gpu") and not _has_cuda():
            print(f"bench: {name} skipped: no CUDA device on this machine", flush=True)
            report["results"][name] = {"skipped": "no CUDA device"}
            continue
        print(f"bench: {name} ...", flush=True)
        result = run(repeat=args.repeat)
        report["results"][name] = result
        md.append(markdown(result))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text("\n".join(md))
    print("\n".join(md))
    print(f"bench: wrote {out / 'report.json'} and {out / 'report.md'}")


if __name__ == "__main__":
    main()
