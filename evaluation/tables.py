"""Paper-style tables from per-instance results: Markdown, CSV and LaTeX.

One table per task (R2AV = Table 2, RV2AV = Table 3, RA2V = Table 4), one row per model, the
columns in the paper's order with arrows for direction. ID-Sim and T-Sim show ``S/M``: the mean
over single-person instances and over multi-person ones. Only instances whose status is ``ok``
are averaged; missing predictions are counted in the summary, never averaged in as 0.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import pandas as pd

from .registry import Output

TASK_TITLES = {"r2av": "R2AV (Table 2)", "rv2av": "RV2AV (Table 3)", "ra2v": "RA2V (Table 4)"}
# the paper's column order; outputs of added metrics follow in registration order
PAPER_ORDER = ("aes", "viclip", "id_sim", "pq", "clap", "wer", "t_sim", "sync_c", "sync_d",
               "spk_conf")
ARROW = {"higher": "↑", "lower": "↓"}
LATEX_ARROW = {"higher": r"$\uparrow$", "lower": r"$\downarrow$"}


@dataclass
class Cell:
    text: str
    n: int  # instances averaged


def aggregate(results: pd.DataFrame, outputs: list[Output]) -> dict[str, dict[str, Cell]]:
    """{task: {output name: Cell}} from eval_results rows."""
    table: dict[str, dict[str, Cell]] = {}
    ok = results[results.status == "ok"]
    for task in [t for t in TASK_TITLES if t in set(results.task)]:
        row: dict[str, Cell] = {}
        for out in outputs:
            sel = ok[(ok.task == task) & (ok.metric == out.name)]
            if out.split:
                parts = []
                for split in ("S", "M"):
                    vals = sel[sel.split == split].value
                    parts.append(_fmt(vals.mean() * out.scale) if len(vals) else "-")
                row[out.name] = Cell("/".join(parts), len(sel))
            else:
                row[out.name] = Cell(_fmt(sel.value.mean() * out.scale) if len(sel) else "-",
                                     len(sel))
        table[task] = row
    return table


def ordered(outputs: list[Output]) -> list[Output]:
    rank = {n: i for i, n in enumerate(PAPER_ORDER)}
    return sorted(outputs, key=lambda o: rank.get(o.name, len(rank)))


def header(o: Output, arrows: dict[str, str]) -> str:
    return f"{o.label}{' S/M' if o.split else ''} {arrows[o.direction]}"


def markdown(table: dict[str, dict[str, Cell]], outputs: list[Output], model: str) -> str:
    outs = ordered(outputs)
    blocks = []
    for task, row in table.items():
        cols = outs
        blocks.append(f"### {TASK_TITLES[task]}\n\n"
                      f"| method | {' | '.join(header(o, ARROW) for o in cols)} |\n"
                      f"|---|{'---|' * len(cols)}\n"
                      f"| {model} | {' | '.join(row[o.name].text for o in cols)} |\n")
    return "\n".join(blocks)


def to_csv(table: dict[str, dict[str, Cell]], outputs: list[Output], model: str) -> str:
    outs = ordered(outputs)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["task", "method", *[header(o, ARROW) for o in outs]])
    for task, row in table.items():
        w.writerow([task, model, *[row[o.name].text for o in outs]])
    return buf.getvalue()


def latex(table: dict[str, dict[str, Cell]], outputs: list[Output], model: str) -> str:
    outs = ordered(outputs)
    blocks = []
    for task, row in table.items():
        cols = "l" + "c" * len(outs)
        head = " & ".join(["Method", *[header(o, LATEX_ARROW) for o in outs]])
        body = " & ".join([_tex(model), *[row[o.name].text for o in outs]])
        blocks.append(
            f"% {TASK_TITLES[task]}\n\\begin{{tabular}}{{{cols}}}\n\\toprule\n{head} \\\\\n"
            f"\\midrule\n{body} \\\\\n\\bottomrule\n\\end{{tabular}}\n")
    return "\n".join(blocks)


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"),
                 ("#", r"\#")):
        s = s.replace(a, b)
    return s
