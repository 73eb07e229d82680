"""Paper-style tables from per-instance results, with uncertainty: Markdown, CSV and LaTeX.

A **view** is one table: the instances it averages (a task, optionally one split) and its
columns. The paper's tables are views: R2AV = Table 2, RV2AV = Table 3, RA2V = Table 4 (every
output), the multi-person dialogue view (Table 5's columns on multi-person R2AV instances) and
the ablation view (Table 6's columns on R2AV, for models that are variants of one another).
A view has one row per model; ID-Sim and T-Sim show ``S/M``: single-person and multi-person
instances apart. Only instances whose status is ``ok`` are averaged; missing predictions are
counted, never averaged in as 0.

Every measured cell is a :class:`Cell`: the mean, a 95% percentile bootstrap interval over
instances (resampled within the S/M split, seeded: :mod:`.uncertainty`) and ``n``. With more
than one model, each model is compared with the **reference model** (the first, unless named)
on the instances both have, by a paired sign-flip permutation test per cell (exact for up to
13 instances); a significant difference (p < 0.05) is marked ``▲`` (better than the reference
in the metric's direction) or ``▼`` (worse). Each mark answers its own question ("does this
model differ from the reference here?"), as papers mark results against a baseline; with
``correction="holm"`` the p-values of one cell's comparisons are Holm-corrected first.
:func:`pairwise` gives every pair of models with raw and Holm-corrected p-values.

Published rows (numbers copied from the paper) can be added to a view: they are rendered below
the measured rows, labelled as published, with no interval, and enter no test and no average.

A lite backend's column (an output with a ``caveat``, see :mod:`.registry`) sits beside the
paper column it stands in for, its header ends with a dagger (``T-Sim (GE2E)†``), and a
footnote under the table (Markdown, LaTeX) says that it is not the paper's protocol and not
comparable with published numbers, with each caveat. Published numbers never fill a lite
column.

Formats: :func:`markdown` and :func:`latex` print ``mean [low, high]`` and ``n`` per cell;
:func:`to_csv` is one long, numeric table (one row per view, model, column and split).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .registry import Output
from .uncertainty import bootstrap_mean, paired_permutation

TASK_TITLES = {"r2av": "R2AV (Table 2)", "rv2av": "RV2AV (Table 3)", "ra2v": "RA2V (Table 4)"}
# the paper's column order; outputs of added metrics follow in registration order
PAPER_ORDER = ("aes", "viclip", "id_sim", "pq", "clap", "wer", "t_sim", "sync_c", "sync_d",
               "spk_conf")
#: lite backends' columns sit right after the paper column they stand in for
BESIDE = {"wer_sphinx": "wer", "t_sim_ge2e": "t_sim"}
ARROW = {"higher": "↑", "lower": "↓"}
LATEX_ARROW = {"higher": r"$\uparrow$", "lower": r"$\downarrow$"}
DAGGER = "†"
LATEX_DAGGER = r"$^\dagger$"
NOT_PAPER = "Not the paper's protocol; not comparable with published numbers"
#: significance marks: better / worse than the reference model
BETTER, WORSE = "▲", "▼"
LATEX_MARK = {BETTER: r"$^{\blacktriangle}$", WORSE: r"$^{\blacktriangledown}$"}
N_BOOT = 10000
LEVEL = 0.95
ALPHA = 0.05
SPLITS = ("S", "M")
CORRECTIONS = ("none", "holm")


@dataclass(frozen=True)
class View:
    """One table: the instances of ``task`` (and of ``split`` only, when set) and the columns
    (``None``: every output; a lite output goes with the paper column it stands in for)."""

    name: str
    title: str
    task: str
    split: str | None = None
    columns: tuple[str, ...] | None = None

    def outputs(self, outputs: Sequence[Output]) -> list[Output]:
        keep = [o for o in outputs if self.columns is None
                or BESIDE.get(o.name, o.name) in self.columns]
        return ordered(keep)


#: the paper's tables as views (Table 5 and 6 are ablations of the full model: their columns
#: on R2AV, for any set of models)
VIEWS = {
    "table2": View("table2", TASK_TITLES["r2av"], "r2av"),
    "table3": View("table3", TASK_TITLES["rv2av"], "rv2av"),
    "table4": View("table4", TASK_TITLES["ra2v"], "ra2v"),
    "table5": View("table5", "Multi-person R2AV (Table 5 columns)", "r2av", "M",
                   ("viclip", "t_sim", "sync_c", "sync_d", "spk_conf")),
    "table6": View("table6", "Ablation view, R2AV (Table 6 columns)", "r2av", None,
                   ("viclip", "id_sim", "pq", "t_sim", "clap")),
}
TASK_VIEW = {"r2av": "table2", "rv2av": "table3", "ra2v": "table4"}


def task_views(results: pd.DataFrame) -> list[View]:
    """The per-task views (Tables 2-4) of the tasks present in ``results``."""
    present = set(results.task)
    return [VIEWS[TASK_VIEW[t]] for t in TASK_VIEW if t in present]


@dataclass(frozen=True)
class Cell:
    """One number of a table: a measured mean with its interval and ``n``, or a published
    value (``published``: no interval, ``n`` 0)."""

    mean: float
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    p_value: float = math.nan  # vs the reference model (Holm-corrected if asked)
    mark: str = ""  # BETTER / WORSE when significant
    published: bool = False

    def text(self, scale: float = 1.0, interval: bool = True) -> str:
        if math.isnan(self.mean):
            return "-"
        s = _fmt(self.mean * scale)
        if self.published or not interval:
            return s
        if not math.isnan(self.low):
            s += f" [{_fmt(self.low * scale)}, {_fmt(self.high * scale)}]"
        return s + self.mark


@dataclass
class Row:
    model: str
    cells: dict[str, dict[str | None, Cell]]  # output name -> split (or None) -> cell
    published: bool = False
    reference: bool = False


@dataclass
class Table:
    view: View
    outputs: list[Output]
    rows: list[Row] = field(default_factory=list)
    source: str = ""  # where published rows come from

    def parts(self, o: Output) -> tuple[str | None, ...]:
        """The splits a column shows: S and M for a split output (only the view's split when
        it has one), else one part."""
        if not o.split:
            return (None,)
        return (self.view.split,) if self.view.split else SPLITS


def build_views(results: pd.DataFrame, outputs: Sequence[Output], models: Sequence[str], *,
                views: Sequence[View] | None = None, reference: str | None = None,
                published: pd.DataFrame | None = None, n_boot: int = N_BOOT, seed: int = 0,
                level: float = LEVEL, alpha: float = ALPHA,
                correction: str = "none") -> list[Table]:
    """The tables of ``views`` (default: the tasks' Tables 2-4 present) over ``models`` (rows
    in this order), each cell with its bootstrap interval and, for every model but the
    reference (default: the first), the paired test against it (``correction="holm"``:
    Holm-corrected over the cell's comparisons).

    ``published``: rows from :func:`benchmark.published.published` (columns ``table``,
    ``method``, ``metric``, ``split``, ``value``, ``source``); a view shows those whose
    ``table`` is its name, below the measured rows.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got "
                         f"{correction!r}")
    reference = reference or (models[0] if models else None)
    if reference is not None and reference not in models:
        raise ValueError(f"reference model {reference!r} is not one of {list(models)}")
    views = list(views) if views is not None else task_views(results)
    ok = results[results.status == "ok"]
    out_tables = []
    for view in views:
        outs = view.outputs(outputs)
        inst = results[results.task == view.task]
        if view.split:
            inst = inst[inst.split == view.split]
        splits = inst.drop_duplicates("instance_id").set_index("instance_id").split
        table = Table(view, outs)
        cells: dict[str, dict[str, dict[str | None, Cell]]] = {m: {} for m in models}
        for o in outs:
            for part in table.parts(o):
                ids = list(splits.index if part is None else splits.index[splits == part])
                strata = splits.reindex(ids).to_numpy()
                sel = ok[(ok.metric == o.name) & ok.instance_id.isin(ids)]
                by_model = {m: sel[sel.model == m].set_index("instance_id").value
                            .reindex(ids).to_numpy(dtype=np.float64) for m in models}
                tests = {}
                if reference is not None:
                    for m in models:
                        if m != reference:
                            tests[m] = paired_permutation(by_model[m], by_model[reference],
                                                          strata, n_perm=n_boot,
                                                          n_boot=n_boot, seed=seed,
                                                          level=level)
                raw = {m: t.p_value for m, t in tests.items()}
                holm = _holm(raw) if correction == "holm" else raw
                for m in models:
                    iv = bootstrap_mean(by_model[m], strata, n_boot=n_boot, seed=seed,
                                        level=level)
                    p = holm.get(m, math.nan)
                    mark = ""
                    if m in tests and p < alpha:
                        up = tests[m].difference.mean > 0
                        mark = BETTER if up == (o.direction == "higher") else WORSE
                    cells[m].setdefault(o.name, {})[part] = Cell(
                        iv.mean, iv.low, iv.high, iv.n, p, mark)
        table.rows = [Row(m, cells[m], reference=m == reference) for m in models]
        if published is not None and len(published):
            pub = published[published.table == view.name]
            table.source = str(pub.source.iloc[0]) if len(pub) else ""
            for method in dict.fromkeys(pub.method):
                mine = pub[pub.method == method]
                row: dict[str, dict[str | None, Cell]] = {}
                for o in outs:
                    if o.caveat:  # a lite column: the paper never measured it
                        continue
                    for _, hit in mine[mine.metric == o.name].iterrows():
                        # a split the paper gives (S, M), or one number for the column
                        part = hit.split if isinstance(hit.split, str) else None
                        if part not in table.parts(o):  # e.g. Table 5's M-only numbers
                            part = None
                        row.setdefault(o.name, {})[part] = Cell(float(hit.value) / o.scale,
                                                                published=True)
                table.rows.append(Row(str(method), row, published=True))
        out_tables.append(table)
    return out_tables


def pairwise(results: pd.DataFrame, outputs: Sequence[Output], models: Sequence[str], *,
             views: Sequence[View] | None = None, n_boot: int = N_BOOT, seed: int = 0,
             level: float = LEVEL, alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair of models on every column of every view: the mean difference ``a - b``
    (at the table's scale) over the instances both have, its bootstrap interval, the paired
    permutation p-value, and Holm's correction over all pairs of that cell."""
    views = list(views) if views is not None else task_views(results)
    ok = results[results.status == "ok"]
    rows = []
    for view in views:
        inst = results[results.task == view.task]
        if view.split:
            inst = inst[inst.split == view.split]
        splits = inst.drop_duplicates("instance_id").set_index("instance_id").split
        table = Table(view, view.outputs(outputs))
        for o in table.outputs:
            for part in table.parts(o):
                ids = list(splits.index if part is None else splits.index[splits == part])
                strata = splits.reindex(ids).to_numpy()
                sel = ok[(ok.metric == o.name) & ok.instance_id.isin(ids)]
                vals = {m: sel[sel.model == m].set_index("instance_id").value.reindex(ids)
                        .to_numpy(dtype=np.float64) for m in models}
                cell = []
                for i, a in enumerate(models):
                    for b in models[i + 1:]:
                        t = paired_permutation(vals[a], vals[b], strata, n_perm=n_boot,
                                               n_boot=n_boot, seed=seed, level=level)
                        d = t.difference
                        cell.append({"view": view.name, "metric": o.name, "split": part,
                                     "a": a, "b": b, "n": d.n, "difference": d.mean * o.scale,
                                     "low": d.low * o.scale, "high": d.high * o.scale,
                                     "p_value": t.p_value})
                holm = _holm({k: c["p_value"] for k, c in enumerate(cell)})
                for k, c in enumerate(cell):
                    c["p_holm"] = holm[k]
                    c["significant"] = bool(holm[k] < alpha)
                rows += cell
    return pd.DataFrame(rows, columns=["view", "metric", "split", "a", "b", "n", "difference",
                                       "low", "high", "p_value", "p_holm", "significant"])


def _holm(p: dict) -> dict:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted)."""
    finite = sorted((v, k) for k, v in p.items() if not math.isnan(v))
    m, out, running = len(finite), {k: math.nan for k in p}, 0.0
    for i, (v, k) in enumerate(finite):
        running = max(running, min(1.0, (m - i) * v))
        out[k] = running
    return out


def ordered(outputs: Sequence[Output]) -> list[Output]:
    rank = {n: i for i, n in enumerate(PAPER_ORDER)}
    return sorted(outputs, key=lambda o: (rank.get(BESIDE.get(o.name, o.name), len(rank)),
                                          o.name in BESIDE))


def header(o: Output, arrows: dict[str, str], dagger: str = DAGGER,
           split: str | None = None) -> str:
    parts = f" {split}" if split else " S/M" if o.split else ""
    return f"{o.label}{dagger if o.caveat else ''}{parts} {arrows[o.direction]}"


def footnote(outputs: Sequence[Output]) -> list[str]:
    """The lines under a table with lite columns (none without): not the paper's protocol,
    then each caveat."""
    lite = [o for o in ordered(outputs) if o.caveat]
    if not lite:
        return []
    return [f"{NOT_PAPER}.", *(f"{o.label}: {o.caveat}." for o in lite)]


def cell_text(table: Table, row: Row, o: Output, *, interval: bool = True,
              n: bool = True) -> str:
    """A column's cell as printed: ``mean [low, high]`` per split joined by ``/``, then
    ``n=`` (the instances averaged: per split ``nS/nM``)."""
    mine = row.cells.get(o.name, {})
    if row.published and (None in mine or not mine):  # one number for the column, or none
        return mine[None].text(o.scale) if mine else "-"
    parts = [mine.get(p, Cell(math.nan)) for p in table.parts(o)]
    text = "/".join(c.text(o.scale, interval) for c in parts)
    if n and not row.published and any(c.n for c in parts):
        text += " n=" + "/".join(str(c.n) for c in parts)
    return text


def summary_cells(tables: Sequence[Table]) -> dict[str, dict[str, str]]:
    """{task: {output: mean text}} of the first model (the single-model summary of
    ``omni eval``)."""
    out: dict[str, dict[str, str]] = {}
    for t in tables:
        row = next((r for r in t.rows if not r.published), None)
        if row is not None:
            out[t.view.task] = {o.name: cell_text(t, row, o, interval=False, n=False)
                                for o in t.outputs}
    return out


def _legend(tables: Sequence[Table]) -> list[str]:
    lines = ["Cells: mean [95% bootstrap interval over instances, resampled within the S/M "
             "split], n = instances averaged."]
    ref = next((r.model for t in tables for r in t.rows if r.reference), None)
    if ref is not None and sum(1 for r in tables[0].rows if not r.published) > 1:
        lines.append(f"{BETTER}/{WORSE}: significantly better/worse than {ref} (paired "
                     f"sign-flip permutation test on the instances both have, p < {ALPHA}; "
                     f"every pair of models: pairs.csv).")
    if any(r.published for t in tables for r in t.rows):
        lines.append("Rows marked (published) are the paper's numbers, copied, not measured "
                     "here: no interval, never tested or averaged.")
    return lines


def markdown(tables: Sequence[Table], outputs: Sequence[Output]) -> str:
    blocks = []
    for t in tables:
        heads = " | ".join(header(o, ARROW, split=t.view.split) for o in t.outputs)
        lines = [f"### {t.view.title}", "", f"| method | {heads} |",
                 f"|---|{'---|' * len(t.outputs)}"]
        for r in t.rows:
            name = f"{r.model} (published)" if r.published else r.model
            lines.append(f"| {name} | {' | '.join(cell_text(t, r, o) for o in t.outputs)} |")
        if t.source and any(r.published for r in t.rows):
            lines += ["", f"Published rows: {t.source}."]
        blocks.append("\n".join(lines) + "\n")
    note = footnote(outputs)
    legend = _legend(tables) if tables else []
    return "\n".join(blocks) + "".join(f"\n{line}" for line in legend) + \
        (f"\n\n{DAGGER} {' '.join(note)}" if note else "") + ("\n" if legend or note else "")


CSV_COLUMNS = ["view", "title", "method", "published", "metric", "label", "split", "mean",
               "low", "high", "n", "p_value", "significance"]


def to_rows(tables: Sequence[Table]) -> list[dict]:
    """One dict per (view, model, column, split) at the table's scale (the long table)."""
    rows = []
    for t in tables:
        for r in t.rows:
            for o in t.outputs:
                for part in dict.fromkeys([*t.parts(o), *r.cells.get(o.name, {})]):
                    c = r.cells.get(o.name, {}).get(part)
                    if c is None:
                        continue
                    rows.append({"view": t.view.name, "title": t.view.title, "method": r.model,
                                 "published": r.published, "metric": o.name,
                                 "label": o.label + (DAGGER if o.caveat else ""),
                                 "split": part or t.view.split, "mean": c.mean * o.scale,
                                 "low": c.low * o.scale, "high": c.high * o.scale,
                                 "n": c.n, "p_value": c.p_value,
                                 "significance": {BETTER: "better", WORSE: "worse"}.get(
                                     c.mark, "")})
    return rows


def to_csv(tables: Sequence[Table], outputs: Sequence[Output] = ()) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for row in to_rows(tables):
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                        f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def latex(tables: Sequence[Table], outputs: Sequence[Output]) -> str:
    blocks = []
    for t in tables:
        cols = "l" + "c" * len(t.outputs)
        head = " & ".join(["Method", *[header(o, LATEX_ARROW, LATEX_DAGGER, t.view.split)
                                       for o in t.outputs]])
        body, rule = [], False
        for r in t.rows:
            if r.published and not rule:
                body.append("\\midrule")
                rule = True
            name = _tex(r.model) + (r" \emph{(published)}" if r.published else "")
            body.append(" & ".join([name, *[_tex_cell(cell_text(t, r, o)) for o in t.outputs]])
                        + r" \\")
        blocks.append(
            f"% {t.view.title}\n\\begin{{tabular}}{{{cols}}}\n\\toprule\n{head} \\\\\n"
            f"\\midrule\n" + "\n".join(body) + "\n\\bottomrule\n"
            f"{_latex_note(outputs, len(t.outputs) + 1)}\\end{{tabular}}\n")
    return "\n".join(blocks)


def _tex_cell(text: str) -> str:
    text = _tex(text)
    for mark, tex in LATEX_MARK.items():
        text = text.replace(mark, tex)
    return text


def _latex_note(outputs: Sequence[Output], n_cols: int) -> str:
    lines = footnote(outputs)
    return "".join(f"\\multicolumn{{{n_cols}}}{{l}}{{\\footnotesize "
                   f"{LATEX_DAGGER + ' ' if i == 0 else ''}{_tex(line)}}} \\\\\n"
                   for i, line in enumerate(lines))


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"),
                 ("#", r"\#")):
        s = s.replace(a, b)
    return s
