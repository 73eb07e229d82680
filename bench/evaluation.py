"""Evaluator benchmark: per-metric seconds per instance (debug weights, this machine) and the
share of wall time spent decoding (goal: every video decoded once, decoding < 20 %)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmark.fixtures import build_fixtures
from benchmark.released import import_released
from evaluation.registry import REGISTRY, load_builtin
from evaluation.runner import evaluate
from omni_core.samples import make_corpus


def run(repeat: int = 1) -> dict[str, Any]:
    load_builtin()
    names = sorted(n for n in REGISTRY if n != "spk_conf")  # the judge is a remote service
    with tempfile.TemporaryDirectory(prefix="omni-bench-eval-") as tdir:
        corpus = make_corpus(Path(tdir) / "corpus", seed=0)
        fx = build_fixtures(corpus.out, Path(tdir) / "fx")
        inst, _ = import_released(fx.bench)
        best: dict[str, Any] | None = None
        for i in range(repeat):
            s = evaluate(inst, fx.pred, Path(tdir) / f"out{i}", names, progress=False).summary
            if best is None or s["timing_s"]["wall"] < best["timing_s"]["wall"]:
                best = s
    t = best["timing_s"]
    n = best["instances"]
    return {
        "instances": n, "metrics": names, "wall_s": t["wall"], "setup_s": t["setup"],
        "decode_s": t["decode"],
        "decode_share": round(t["decode"] / t["wall"], 3) if t["wall"] else None,
        "seconds_per_instance": {k: round(v / n, 3) for k, v in t["per_metric"].items()},
    }


def markdown(r: dict[str, Any]) -> str:
    lines = ["## Evaluator (debug weights, CPU)", "",
             f"{r['instances']} fixture instances; wall {r['wall_s']} s (+{r['setup_s']} s "
             f"model setup); decoding {r['decode_s']} s = {100 * (r['decode_share'] or 0):.1f} %"
             " of wall time", "", "| metric | s / instance |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in r["seconds_per_instance"].items()]
    return "\n".join(lines) + "\n"
