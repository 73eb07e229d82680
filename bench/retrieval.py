"""Identity retrieval at scale: the exact (blocked) and approximate (faiss HNSW) paths on a
planted database (:mod:`pipelines.crosspair.planted`: people seen in 5 videos each, as many
identities seen once, a tenth of those without a crop).

:func:`retrieval_scale` runs one size and one index in a fresh process (so that its peak
resident memory is its own) and returns the time, the peak memory, precision and recall on
the planted people, and, given the exact run's pairs, the approximate run's recall and
precision against them. :func:`run` measures the exact path at 1k, 10k and 100k identities
and the HNSW path at 10k and 100k, and extrapolates to a million: the exact path as N^2, the
HNSW path as N log N (the graph's build and each query's search both grow as log N).
The near-duplicate rule is off (the planted crops are names, not pictures): its cost is one
read per crop of a candidate pair, done where the pairs are.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from typing import Any

from bench import memory_bytes
from pipelines.crosspair.identity import (
    RetrievalOptions,
    compare_matches,
    find_matches,
    retrieval_scores,
)
from pipelines.crosspair.planted import planted_database

EXACT_SIZES = (1_000, 10_000, 100_000)
HNSW_SIZES = (10_000, 100_000)


def planted(n: int, seed: int = 0):
    """``n`` identities: n / 10 people seen 5 times, n / 2 distractors."""
    people = max(1, n // 10)
    return planted_database(people, 5, n - 5 * people, seed=seed)


def _measure(n: int, index: str, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    db, person = planted(n, seed)
    opts = RetrievalOptions(duplicate_max_diff=0, index=index, ray_min_identities=None,
                            **overrides)
    base = memory_bytes()[1]
    t0, c0 = time.perf_counter(), time.process_time()
    m = find_matches(db, opts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = memory_bytes()[1]
    s = retrieval_scores(db, m, person, opts)
    ok = m[m.verified]
    return {"n": n, "index": index, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "stages_s": {k: round(v, 2) for k, v in m.attrs.get("seconds", {}).items()},
            "peak_rss_mb": round(peak / 2**20), "rss_before_mb": round(base / 2**20),
            "precision": s.precision, "recall": s.recall, "verified": int(len(ok)),
            "pairs": list(zip(ok.query_identity_id, ok.match_identity_id, strict=True))}


def retrieval_scale(n: int, index: str = "exact", *, seed: int = 0,
                    exact_pairs: list[tuple[str, str]] | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """One measure (see the module docstring) in a fresh process; ``overrides``: more
    :class:`RetrievalOptions`. ``exact_pairs``: the exact run's verified pairs, to score this
    one against (``vs_exact``)."""
    with mp.get_context("spawn").Pool(1) as pool:
        r = pool.apply(_measure, (n, index, seed, overrides))
    if exact_pairs is not None:
        import pandas as pd

        def frame(pairs):
            q, m = zip(*pairs, strict=True) if pairs else ((), ())
            return pd.DataFrame({"query_identity_id": q, "match_identity_id": m,
                                 "verified": True})

        r["vs_exact"] = compare_matches(frame(exact_pairs), frame(r["pairs"]))
    return r


def run(repeat: int = 1, exact_sizes: tuple[int, ...] = EXACT_SIZES,
        hnsw_sizes: tuple[int, ...] = HNSW_SIZES) -> dict[str, Any]:
    """Every size once (``repeat`` is for the other benchmarks' interface: one run of the
    100k exact path is minutes)."""
    exact = {n: retrieval_scale(n, "exact") for n in sorted({*exact_sizes, *hnsw_sizes})}
    hnsw = {n: retrieval_scale(n, "hnsw", exact_pairs=exact[n]["pairs"]) for n in hnsw_sizes}
    rows = [*exact.values(), *hnsw.values()]
    for r in rows:
        r.pop("pairs")
    big = max(exact_sizes)
    out: dict[str, Any] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
                           "rows": rows}
    m = 1_000_000
    out["exact_1m_cpu_h"] = round(exact[big]["cpu_s"] * (m / big) ** 2 / 3600, 1)
    if hnsw_sizes:
        hb = max(hnsw_sizes)
        grow = (m / hb) * math.log(m) / math.log(hb)
        out["hnsw_1m_cpu_h"] = round(hnsw[hb]["cpu_s"] * grow / 3600, 2)
        out["hnsw_1m_wall_h_2cpu"] = round(hnsw[hb]["wall_s"] * grow / 3600, 2)
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = ["## Identity retrieval at scale (planted people, this machine)", "",
             f"{r['cpus']} CPUs, load average {r['load_average']:.1f} at the end. 1M "
             f"identities extrapolated: exact {r['exact_1m_cpu_h']} CPU-hours (N^2), HNSW "
             f"{r.get('hnsw_1m_cpu_h')} CPU-hours (N log N).", "",
             "| N | index | wall s | CPU s | peak RSS MB | precision | recall | "
             "recall / precision vs exact |", "|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        vs = x.get("vs_exact")
        agree = f"{vs['recall']:.4f} / {vs['precision']:.4f}" if vs else "—"
        lines.append(f"| {x['n']} | {x['index']} | {x['wall_s']} | {x['cpu_s']} | "
                     f"{x['peak_rss_mb']} | {x['precision']:.4f} | {x['recall']:.4f} | "
                     f"{agree} |")
    return "\n".join([*lines, ""])
