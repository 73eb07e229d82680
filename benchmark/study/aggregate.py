"""A study's answers as the paper's human-evaluation table, with honest uncertainty.

- **Attention checks** per rater: a repeated item whose answers differ from the original's by
  more than ``repeat_tolerance`` on average over the dimensions, or a broken video not rated
  at most 2 (absolute) / not lost (pairwise) on a dimension that checks it (video and audio
  quality), fails the rater. Raters who failed any check are excluded, counted and listed;
  raters who have not reached a check yet are kept and counted as unchecked.
- **Absolute protocol**: per model and dimension the mean score over the rated items of the
  kept raters, with a 95% two-way bootstrap interval (raters and instances resampled,
  :func:`evaluation.uncertainty.bootstrap_two_way`) and the number of ratings.
- **Pairwise protocol**: per pair of models (A vs B) and dimension the shares of good / same
  / bad (A better, same, B better) and the net preference, good minus bad, with its two-way
  bootstrap interval (a net preference whose interval excludes 0 is a real difference).
- **Agreement**: Krippendorff's alpha per dimension over the rated items (ordinal level: the
  answers are ordered categories), from the kept raters.

Written to ``STUDY/results/``: ``human_eval.md``, ``.csv``, ``.tex`` and ``.json`` (what the
benchmark report's "Human evaluation" section reads), ``agreement.csv``, ``raters.csv``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .db import connect, get_meta

RESULTS_DIR = "results"
N_BOOT = 2000
JSON_NAME = "human_eval.json"


def load_answers(study: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every answer with its rater, item and models (one row per dimension), and the study's
    settings."""
    con = connect(study)
    try:
        meta = get_meta(con)
        df = pd.read_sql_query(
            "SELECT a.rater_id, r.label AS rater, a.item_id, i.kind, i.instance_id, i.split,"
            " i.repeat_of, ma.name AS model_a, mb.name AS model_b, a.dimension, a.value,"
            " a.answered_at FROM answers a JOIN raters r USING (rater_id)"
            " JOIN items i USING (item_id) LEFT JOIN models ma ON ma.model_id = i.model_a"
            " LEFT JOIN models mb ON mb.model_id = i.model_b"
            " ORDER BY a.rater_id, a.answered_at, a.item_id, a.dimension", con)
        progress = pd.read_sql_query(
            "SELECT r.rater_id, r.label AS rater, COUNT(s.item_id) AS total,"
            " (SELECT COUNT(DISTINCT x.item_id) FROM answers x WHERE x.rater_id = r.rater_id)"
            " AS answered FROM raters r LEFT JOIN assignments s USING (rater_id)"
            " GROUP BY r.rater_id ORDER BY r.rater_id", con)
        models = [r[0] for r in con.execute("SELECT name FROM models ORDER BY model_id")]
        pairs = [(a, b) for a, b in con.execute(
            "SELECT DISTINCT ma.name, mb.name FROM items i JOIN models ma ON ma.model_id ="
            " i.model_a JOIN models mb ON mb.model_id = i.model_b WHERE i.kind = 'rated'"
            " ORDER BY i.model_a, i.model_b")]
    finally:
        con.close()
    meta["progress"] = progress
    meta["models"] = models
    meta["pairs"] = pairs
    return df, meta


def attention(df: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """One row per rater: progress, checks answered and failed, whether excluded and why."""
    protocol = meta["protocol"]
    tol = float(meta["options"]["repeat_tolerance"])
    checked = [d["key"] for d in meta["dimensions"] if d.get("checks_broken")]
    rows = []
    for p in meta["progress"].itertuples(index=False):
        mine = df[df.rater_id == p.rater_id]
        wide = mine.pivot_table(index="item_id", columns="dimension", values="value",
                                aggfunc="first") if len(mine) else pd.DataFrame()
        kinds = mine.drop_duplicates("item_id").set_index("item_id")
        reasons = []
        repeats = broken = 0
        for item, info in kinds.iterrows():
            if info.kind == "repeat" and info.repeat_of in wide.index:
                repeats += 1
                diff = float(np.mean(np.abs(wide.loc[item] - wide.loc[info.repeat_of])))
                if diff > tol:
                    reasons.append(f"repeated item answered {diff:.2f} apart on average "
                                   f"(tolerance {tol:g})")
            elif info.kind == "broken":
                broken += 1
                for d in checked:
                    v = wide.loc[item].get(d)
                    if v is None or (isinstance(v, float) and math.isnan(v)):
                        continue
                    bad = v > 2 if protocol == "absolute" else v != -1  # a: the broken one
                    if bad:
                        reasons.append(f"broken video rated {_shown(protocol, v)} on {d}")
        rows.append({"rater_id": int(p.rater_id), "rater": p.rater, "answered": int(p.answered),
                     "total": int(p.total), "repeat_checks": repeats, "broken_checks": broken,
                     "checked": repeats + broken > 0, "excluded": bool(reasons),
                     "reason": "; ".join(reasons) or None})
    return pd.DataFrame(rows, columns=["rater_id", "rater", "answered", "total",
                                       "repeat_checks", "broken_checks", "checked",
                                       "excluded", "reason"])


def _shown(protocol: str, v: float) -> str:
    if protocol == "absolute":
        return f"{int(v)}"
    return {1: "better than the real one", 0: "the same as the real one"}.get(int(v), str(v))


@dataclass
class HumanEval:
    protocol: str
    dimensions: list[dict[str, str]]
    rows: list[dict[str, Any]]  # {"name", "cells": {dim: {...}}}
    alpha: dict[str, float]
    raters: pd.DataFrame
    n_boot: int
    seed: int

    def counts(self) -> dict[str, int]:
        r = self.raters
        return {"raters": len(r), "answered_any": int((r.answered > 0).sum()),
                "complete": int((r.answered == r.total).sum()),
                "excluded": int(r.excluded.sum()),
                "unchecked": int(((r.answered > 0) & ~r.checked).sum())}

    def to_json(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "dimensions": self.dimensions, "rows": self.rows,
                "alpha": {k: (None if math.isnan(v) else v) for k, v in self.alpha.items()},
                "raters": self.counts(),
                "excluded": self.raters[self.raters.excluded][["rater", "reason"]].to_dict(
                    "records"),
                "n_boot": self.n_boot, "seed": self.seed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def human_eval(study: str | os.PathLike[str], *, n_boot: int = N_BOOT, seed: int = 0
               ) -> HumanEval:
    from evaluation.agreement import alpha_from_long
    from evaluation.uncertainty import bootstrap_two_way

    df, meta = load_answers(study)
    raters = attention(df, meta)
    keep = set(raters.rater_id[~raters.excluded])
    rated = df[(df.kind == "rated") & df.rater_id.isin(keep)]
    dims = [{"key": d["key"], "label": d["label"]} for d in meta["dimensions"]]
    rows: list[dict[str, Any]] = []
    groups = ([((m,), m) for m in meta["models"]] if meta["protocol"] == "absolute" else
              [((a, b), f"{a} vs {b}") for a, b in meta["pairs"]])
    for models, name in groups:
        sel = rated[rated.model_a == models[0]]
        if len(models) > 1:
            sel = sel[sel.model_b == models[1]]
        cells = {}
        for d in dims:
            x = sel[sel.dimension == d["key"]]
            iv = bootstrap_two_way(x.value.to_numpy(float), x.rater_id.to_numpy(),
                                   x.instance_id.to_numpy(), n_boot=n_boot, seed=seed)
            cell = {"mean": _num(iv.mean), "low": _num(iv.low), "high": _num(iv.high),
                    "n": int(iv.n)}
            if meta["protocol"] == "pairwise" and len(x):
                v = x.value.to_numpy()
                cell.update(good=float(np.mean(v == 1)), same=float(np.mean(v == 0)),
                            bad=float(np.mean(v == -1)))
            cells[d["key"]] = cell
        rows.append({"name": name, "models": list(models), "cells": cells})
    alpha = {}
    for d in dims:
        x = rated[rated.dimension == d["key"]]
        alpha[d["key"]] = (float(alpha_from_long(x.item_id.tolist(), x.rater_id.tolist(),
                                                 x.value.tolist(), level="ordinal"))
                           if len(x) else float("nan"))
    return HumanEval(meta["protocol"], dims, rows, alpha, raters, n_boot, seed)


def _num(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _fmt_cell(cell: dict[str, Any], protocol: str) -> str:
    if cell["mean"] is None:
        return "—"
    if protocol == "absolute":
        ci = "" if cell["low"] is None else f" [{cell['low']:.2f}, {cell['high']:.2f}]"
        return f"{cell['mean']:.2f}{ci}"
    ci = "" if cell["low"] is None else f" [{cell['low']:+.2f}, {cell['high']:+.2f}]"
    return (f"{100 * cell['good']:.0f}/{100 * cell['same']:.0f}/{100 * cell['bad']:.0f}"
            f" ({cell['mean']:+.2f}{ci})")


def markdown(h: HumanEval) -> str:
    head = ["model" if h.protocol == "absolute" else "A vs B", *(d["label"] for d in h.dimensions)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in h.rows:
        lines.append("| " + " | ".join([r["name"], *(_fmt_cell(r["cells"][d["key"]], h.protocol)
                                                    for d in h.dimensions)]) + " |")
    lines.append("| Krippendorff's alpha (ordinal) | " + " | ".join(
        "—" if math.isnan(h.alpha[d["key"]]) else f"{h.alpha[d['key']]:.2f}"
        for d in h.dimensions) + " |")
    c = h.counts()
    what = ("mean score 1-5 [95% bootstrap interval over raters and instances]"
            if h.protocol == "absolute" else
            "good/same/bad % (net preference A - B [95% bootstrap interval over raters and "
            "instances])")
    return "\n".join([*lines, "", f"{what}; {c['raters']} raters, {c['answered_any']} "
                      f"answered, {c['complete']} complete, {c['excluded']} excluded by "
                      f"attention checks, {c['unchecked']} not yet checked; "
                      f"{h.n_boot} resamples, seed {h.seed}."]) + "\n"


def frame(h: HumanEval) -> pd.DataFrame:
    rows = []
    for r in h.rows:
        for d in h.dimensions:
            cell = r["cells"][d["key"]]
            rows.append({"row": r["name"], "dimension": d["key"], **cell,
                         "alpha": h.alpha[d["key"]]})
    return pd.DataFrame(rows)


def latex(h: HumanEval) -> str:
    def esc(s: str) -> str:
        return (s.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%")
                .replace("_", r"\_").replace("#", r"\#"))

    cols = "l" + "c" * len(h.dimensions)
    out = [r"\begin{tabular}{" + cols + "}", r"\toprule",
           " & ".join(["Model" if h.protocol == "absolute" else "A vs B",
                       *(esc(d["label"]) for d in h.dimensions)]) + r" \\", r"\midrule"]
    for r in h.rows:
        cells = []
        for d in h.dimensions:
            c = r["cells"][d["key"]]
            if c["mean"] is None:
                cells.append("--")
            elif h.protocol == "absolute":
                cells.append(f"{c['mean']:.2f}" + ("" if c["low"] is None else
                             f"$_{{[{c['low']:.2f},{c['high']:.2f}]}}$"))
            else:
                cells.append(f"{c['mean']:+.2f}" + ("" if c["low"] is None else
                             f"$_{{[{c['low']:+.2f},{c['high']:+.2f}]}}$"))
        out.append(" & ".join([esc(r["name"]), *cells]) + r" \\")
    out.append(r"\midrule")
    out.append(" & ".join([r"$\alpha$ (ordinal)", *(
        "--" if math.isnan(h.alpha[d["key"]]) else f"{h.alpha[d['key']]:.2f}"
        for d in h.dimensions)]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def write_results(study: str | os.PathLike[str], h: HumanEval,
                  out: str | os.PathLike[str] | None = None) -> Path:
    """Write the table files (see the module docstring) to ``out`` (default
    ``STUDY/results``); returns the folder."""
    folder = Path(out) if out is not None else Path(study) / RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "human_eval.md").write_text(markdown(h))
    (folder / "human_eval.tex").write_text(latex(h))
    frame(h).to_csv(folder / "human_eval.csv", index=False)
    (folder / JSON_NAME).write_text(json.dumps(h.to_json(), indent=2, sort_keys=True))
    pd.DataFrame([{"dimension": k, "alpha_ordinal": v} for k, v in h.alpha.items()]).to_csv(
        folder / "agreement.csv", index=False)
    h.raters.to_csv(folder / "raters.csv", index=False)
    return folder


def export_answers(study: str | os.PathLike[str], dest: str | os.PathLike[str]) -> int:
    """Every answer as a long table (rater label, item kind, instance, models, dimension,
    value, time) in CSV or Parquet by ``dest``'s suffix; returns the rows written."""
    df, _ = load_answers(study)
    df = df.drop(columns=["rater_id"])
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.suffix == ".parquet":
        df.to_parquet(dest, index=False)
    elif dest.suffix == ".csv":
        df.to_csv(dest, index=False)
    else:
        from omni_core.errors import OmniError

        raise OmniError(f"{dest}: export to .csv or .parquet")
    return len(df)
