"""Paper-style tables: intervals, significance against the reference model, published rows
kept apart, views, and a lite backend's column marked and footnoted beside its paper one."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from evaluation import tables
from evaluation.registry import Output
from evaluation.uncertainty import bootstrap_mean

T_SIM = Output("t_sim", "T-Sim", "higher", split=True)
LITE = Output("t_sim_ge2e", "T-Sim (GE2E)", "higher", split=True, caveat="GE2E, not ECAPA")
WER = Output("wer", "WER", "lower")
VICLIP = Output("viclip", "ViCLIP", "higher", scale=100.0)


def _results() -> pd.DataFrame:
    rows = [("a", "S", "t_sim", 0.5), ("b", "M", "t_sim", 0.25), ("a", "S", "t_sim_ge2e", 0.9),
            ("b", "M", "t_sim_ge2e", 0.7), ("a", "S", "wer", 0.1)]
    return pd.DataFrame([{"model": "m", "instance_id": i, "task": "r2av", "split": s,
                          "metric": m, "value": v, "status": "ok"} for i, s, m, v in rows])


def _two_models(n: int = 40, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Models ``ref`` and ``new`` on ``n`` instances (a third multi-person): WER and ViCLIP,
    ``new`` = ``ref`` + noise + ``shift`` on ViCLIP; one of ``new``'s predictions missing."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.2, 0.05, n)
    rows = []
    for k in range(n):
        split = "M" if k % 3 == 0 else "S"
        for model, v in (("ref", base[k]), ("new", base[k] + rng.normal(0, 0.01) + shift)):
            missing = model == "new" and k == 0
            for metric, value in (("viclip", v), ("wer", base[k])):
                rows.append({"model": model, "instance_id": f"i{k:02d}", "task": "r2av",
                             "split": split, "metric": metric,
                             "value": None if missing else value,
                             "status": "missing" if missing else "ok"})
    return pd.DataFrame(rows)


def test_lite_column_is_marked_footnoted_and_beside_its_paper_column():
    outs = [LITE, WER, T_SIM]  # registration order: the table puts them in the paper's
    views = tables.build_views(_results(), outs, ["m"], n_boot=200)
    md = tables.markdown(views, outs)
    assert "| method | WER ↓ | T-Sim S/M ↑ | T-Sim (GE2E)† S/M ↑ |" in md
    # one instance per cell: the mean, no interval, n
    assert "| m | 0.100 n=1 | 0.500/0.250 n=1/1 | 0.900/0.700 n=1/1 |" in md
    assert md.rstrip().splitlines()[-1] == (
        "† Not the paper's protocol; not comparable with published numbers. "
        "T-Sim (GE2E): GE2E, not ECAPA.")
    long = pd.read_csv(io.StringIO(tables.to_csv(views, outs)))
    assert list(long.columns) == tables.CSV_COLUMNS
    assert set(long.label) == {"WER", "T-Sim", "T-Sim (GE2E)†"}
    tex = tables.latex(views, outs)
    assert r"T-Sim (GE2E)$^\dagger$ S/M $\uparrow$" in tex
    assert (r"\bottomrule" "\n" r"\multicolumn{4}{l}{\footnotesize $^\dagger$ Not the paper's "
            r"protocol; not comparable with published numbers.} \\" "\n"
            r"\multicolumn{4}{l}{\footnotesize T-Sim (GE2E): GE2E, not ECAPA.} \\" "\n"
            r"\end{tabular}") in tex


def test_paper_only_tables_have_no_mark_and_no_footnote():
    outs = [T_SIM, WER]
    views = tables.build_views(_results(), outs, ["m"], n_boot=200)
    for text in (tables.markdown(views, outs), tables.to_csv(views, outs),
                 tables.latex(views, outs)):
        assert "†" not in text and "dagger" not in text and "Not the paper" not in text
    assert tables.footnote(outs) == []


def test_cells_carry_the_seeded_bootstrap_interval_of_the_mean_within_splits():
    res = _two_models()
    views = tables.build_views(res, [VICLIP], ["ref", "new"], n_boot=500, seed=3)
    cell = views[0].rows[0].cells["viclip"][None]
    ref = res[(res.model == "ref") & (res.metric == "viclip")].sort_values("instance_id")
    want = bootstrap_mean(ref.value.to_numpy(), ref.split.to_numpy(), n_boot=500, seed=3)
    assert (cell.mean, cell.low, cell.high, cell.n) == (want.mean, want.low, want.high, 40)
    assert cell.mean == pytest.approx(ref.value.mean())
    again = tables.build_views(res, [VICLIP], ["ref", "new"], n_boot=500, seed=3)
    assert tables.to_csv(again, [VICLIP]) == tables.to_csv(views, [VICLIP])
    # the missing prediction is left out, never averaged as 0
    assert views[0].rows[1].cells["viclip"][None].n == 39
    # printed at the paper's scale (ViCLIP x100)
    assert f"{want.mean * 100:.3f} [{want.low * 100:.3f}, {want.high * 100:.3f}]" in \
        tables.markdown(views, [VICLIP])


def test_a_planted_difference_is_marked_and_identical_models_are_not():
    outs = [VICLIP, WER]
    better = tables.build_views(_two_models(shift=0.02), outs, ["ref", "new"], n_boot=2000)
    new = better[0].rows[1]
    assert new.cells["viclip"][None].mark == tables.BETTER  # higher ViCLIP is better
    assert new.cells["viclip"][None].p_value < 0.01
    assert new.cells["wer"][None].mark == ""  # the same WER: not different
    assert better[0].rows[0].cells["viclip"][None].mark == ""  # the reference itself
    md = tables.markdown(better, outs)
    assert tables.BETTER in md and "significantly better/worse than ref" in md
    worse = tables.build_views(_two_models(shift=-0.02), outs, ["ref", "new"], n_boot=2000)
    assert worse[0].rows[1].cells["viclip"][None].mark == tables.WORSE
    same = tables.build_views(_two_models(shift=0.0), outs, ["ref", "new"], n_boot=2000)
    assert all(c.mark == "" for r in same[0].rows for col in r.cells.values()
               for c in col.values())
    pairs = tables.pairwise(_two_models(shift=0.02), outs, ["ref", "new"], n_boot=2000)
    vic = pairs[pairs.metric == "viclip"].iloc[0]
    assert (vic.a, vic.b, vic.n, bool(vic.significant)) == ("ref", "new", 39, True)
    assert vic.difference == pytest.approx(-2.0, abs=0.5)  # x100, ref - new


def test_holm_correction():
    adj = tables._holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    assert adj["a"] == pytest.approx(0.03) and adj["c"] == pytest.approx(0.06)
    assert adj["b"] == pytest.approx(0.06) and math.isnan(adj["d"])


def test_published_rows_are_kept_apart_and_never_averaged():
    res = _two_models()
    pub = pd.DataFrame([
        {"table": "table2", "method": "Paper", "metric": "viclip", "split": None,
         "value": 99.0, "source": "the paper"},
        {"table": "table2", "method": "Paper", "metric": "wer", "split": None, "value": 0.5,
         "source": "the paper"},
        {"table": "table3", "method": "Other", "metric": "wer", "split": None, "value": 0.7,
         "source": "the paper"}])
    outs = [VICLIP, WER, LITE]
    plain = tables.build_views(res, outs, ["ref", "new"], n_boot=300)
    with_pub = tables.build_views(res, outs, ["ref", "new"], n_boot=300, published=pub)
    # measured rows identical with or without published ones
    measured = pd.DataFrame(tables.to_rows(with_pub))
    pd.testing.assert_frame_equal(measured[~measured.published].reset_index(drop=True),
                                  pd.DataFrame(tables.to_rows(plain)))
    row = with_pub[0].rows[2]
    assert (row.model, row.published) == ("Paper", True)
    assert row.cells["viclip"][None].mean * 100 == pytest.approx(99.0)
    assert "t_sim_ge2e" not in row.cells  # never in a lite column
    md = tables.markdown(with_pub, outs)
    assert "| Paper (published) | 99.000 | 0.500 | - |" in md and "Other" not in md
    long = pd.read_csv(io.StringIO(tables.to_csv(with_pub, outs)))
    paper = long[long.published]
    assert set(paper.method) == {"Paper"} and paper.low.isna().all() and (paper.n == 0).all()
    assert "\\emph{(published)}" in tables.latex(with_pub, outs)


def test_the_multi_person_view_averages_multi_person_instances_only():
    res = _two_models()
    t5 = tables.build_views(res, [VICLIP, WER, T_SIM], ["ref"], n_boot=200,
                            views=[tables.VIEWS["table5"]])[0]
    assert [o.name for o in t5.outputs] == ["viclip", "t_sim"]  # Table 5 has no WER column
    assert t5.parts(T_SIM) == ("M",) and "T-Sim M ↑" in tables.markdown([t5], t5.outputs)
    # the paper's Table 5 numbers (given for the M split) fill the M-only columns
    pub = pd.DataFrame([{"table": "table5", "method": "full", "metric": m, "split": "M",
                         "value": v, "source": "paper"}
                        for m, v in (("viclip", 13.613), ("t_sim", 0.402))])
    t5 = tables.build_views(res, [VICLIP, T_SIM], ["ref"], n_boot=200, published=pub,
                            views=[tables.VIEWS["table5"]])[0]
    assert "| full (published) | 13.613 | 0.402 |" in tables.markdown([t5], t5.outputs)
    multi = res[(res.model == "ref") & (res.metric == "viclip") & (res.split == "M")]
    cell = t5.rows[0].cells["viclip"][None]
    assert cell.n == len(multi) and cell.mean == pytest.approx(multi.value.mean())
