"""Paper-style tables: a lite backend's column is marked and footnoted, beside its paper one."""

from __future__ import annotations

import csv
import io

import pandas as pd

from evaluation import tables
from evaluation.registry import Output

T_SIM = Output("t_sim", "T-Sim", "higher", split=True)
LITE = Output("t_sim_ge2e", "T-Sim (GE2E)", "higher", split=True, caveat="GE2E, not ECAPA")
WER = Output("wer", "WER", "lower")


def _results() -> pd.DataFrame:
    rows = [("a", "S", "t_sim", 0.5), ("b", "M", "t_sim", 0.25), ("a", "S", "t_sim_ge2e", 0.9),
            ("b", "M", "t_sim_ge2e", 0.7), ("a", "S", "wer", 0.1)]
    return pd.DataFrame([{"instance_id": i, "task": "r2av", "split": s, "metric": m,
                          "value": v, "status": "ok"} for i, s, m, v in rows])


def test_lite_column_is_marked_footnoted_and_beside_its_paper_column():
    outs = [LITE, WER, T_SIM]  # registration order: the table puts them in the paper's
    agg = tables.aggregate(_results(), outs)
    md = tables.markdown(agg, outs, "m")
    assert "| method | WER ↓ | T-Sim S/M ↑ | T-Sim (GE2E)† S/M ↑ |" in md
    assert "| m | 0.100 | 0.500/0.250 | 0.900/0.700 |" in md
    assert md.rstrip().splitlines()[-1] == (
        "† Not the paper's protocol; not comparable with published numbers. "
        "T-Sim (GE2E): GE2E, not ECAPA.")
    header = next(csv.reader(io.StringIO(tables.to_csv(agg, outs, "m"))))
    assert header == ["task", "method", "WER ↓", "T-Sim S/M ↑", "T-Sim (GE2E)† S/M ↑"]
    tex = tables.latex(agg, outs, "m")
    assert r"T-Sim (GE2E)$^\dagger$ S/M $\uparrow$" in tex
    assert (r"\bottomrule" "\n" r"\multicolumn{4}{l}{\footnotesize $^\dagger$ Not the paper's "
            r"protocol; not comparable with published numbers.} \\" "\n"
            r"\multicolumn{4}{l}{\footnotesize T-Sim (GE2E): GE2E, not ECAPA.} \\" "\n"
            r"\end{tabular}") in tex


def test_paper_only_tables_have_no_mark_and_no_footnote():
    outs = [T_SIM, WER]
    agg = tables.aggregate(_results(), outs)
    for text in (tables.markdown(agg, outs, "m"), tables.to_csv(agg, outs, "m"),
                 tables.latex(agg, outs, "m")):
        assert "†" not in text and "dagger" not in text and "Not the paper" not in text
    assert tables.footnote(outs) == []
