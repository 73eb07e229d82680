"""Paper-style tables from per-instance results: Markdown, CSV and LaTeX.

One table per task (R2AV = Table 2, RV2AV = Table 3, RA2V = Table 4), one row per model, the
columns in the paper's order with arrows for direction. ID-Sim and T-Sim show ``S/M``: the mean
over single-person instances and over multi-person ones. Only instances whose status is ``ok``
are averaged; missing predictions are counted in the summary, never averaged in as 0.

A lite backend's column (an output with a ``caveat``, see :mod:`.registry`) sits beside the
paper column it stands in for, its header ends with a dagger (``T-Sim (GE2E)†``), and a
footnote under the table (Markdown, LaTeX) says that it is not the paper's protocol and not
comparable with published numbers, with each caveat. The CSV stays one rectangular table: its
header carries the dagger.
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
#: lite backends' columns sit right after the paper column they stand in for
BESIDE = {"wer_sphinx": "wer", "t_sim_ge2e": "t_sim"}
ARROW = {"higher": "↑", "lower": "↓"}
LATEX_ARROW = {"higher": r"$\uparrow$", "lower": r"$\downarrow$"}
DAGGER = "†"
LATEX_DAGGER = r"$^\dagger$"
NOT_PAPER = "Not the paper's protocol; not comparable with published numbers"


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
    return sorted(outputs, key=lambda o: (rank.get(BESIDE.get(o.name, o.name), len(rank)),
                                          o.name in BESIDE))


def header(o: Output, arrows: dict[str, str], dagger: str = DAGGER) -> str:
    return f"{o.label}{dagger if o.caveat else ''}{' S/M' if o.split else ''} " \
           f"{arrows[o.direction]}"


def footnote(outputs: list[Output]) -> list[str]:
    """The lines under a table with lite columns (none without): not the paper's protocol,
    then each caveat."""
    lite = [o for o in ordered(outputs) if o.caveat]
    if not lite:
        return []
    return [f"{NOT_PAPER}.", *(f"{o.label}: {o.caveat}." for o in lite)]


def markdown(table: dict[str, dict[str, Cell]], outputs: list[Output], model: str) -> str:
    outs = ordered(outputs)
    blocks = []
    for task, row in table.items():
        cols = outs
        blocks.append(f"### {TASK_TITLES[task]}\n\n"
                      f"| method | {' | '.join(header(o, ARROW) for o in cols)} |\n"
                      f"|---|{'---|' * len(cols)}\n"
                      f"| {model} | {' | '.join(row[o.name].text for o in cols)} |\n")
    note = footnote(outputs)
    return "\n".join(blocks) + (f"\n{DAGGER} {' '.join(note)}\n" if note else "")


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
        head = " & ".join(["Method", *[header(o, LATEX_ARROW, LATEX_DAGGER) for o in outs]])
        body = " & ".join([_tex(model), *[row[o.name].text for o in outs]])
        blocks.append(
            f"% {TASK_TITLES[task]}\n\\begin{{tabular}}{{{cols}}}\n\\toprule\n{head} \\\\\n"
            f"\\midrule\n{body} \\\\\n\\bottomrule\n{_latex_note(outputs, len(outs) + 1)}"
            f"\\end{{tabular}}\n")
    return "\n".join(blocks)


def _latex_note(outputs: list[Output], n_cols: int) -> str:
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
