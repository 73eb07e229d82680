"""The human-evaluation table from a study's answers: attention checks exclude and count,
intervals over raters and instances, Krippendorff's alpha, exports, the benchmark report."""

from __future__ import annotations

import json
import random
import time

import pandas as pd
import pytest

from benchmark.study.aggregate import export_answers, human_eval, markdown, write_results
from benchmark.study.db import connect, transaction
from benchmark.study.design import DIMENSION_KEYS, StudyOptions, create_study


def simulate(folder, score, *, skip=(), stop_after=None, seed=0):
    """Answer every assignment as ``score(rater, item_row, dimension, rng)`` says (a pairwise
    value from model a's side), rater by rater in their order; ``skip``: raters who answer
    nothing; ``stop_after``: rater -> how many items they answer."""
    rng = random.Random(seed)
    con = connect(folder)
    try:
        rows = [dict(r) for r in con.execute(
            "SELECT a.rater_id, a.position, i.*, ma.name AS a_name, mb.name AS b_name,"
            " o.item_id AS orig FROM assignments a JOIN items i USING (item_id)"
            " LEFT JOIN models ma ON ma.model_id = i.model_a"
            " LEFT JOIN models mb ON mb.model_id = i.model_b"
            " LEFT JOIN items o ON o.item_id = i.repeat_of ORDER BY a.rater_id, a.position")]
        given: dict[tuple[int, str, str], int] = {}
        with transaction(con):
            for r in rows:
                if r["rater_id"] in skip:
                    continue
                if stop_after and r["position"] >= stop_after.get(r["rater_id"], 10 ** 6):
                    continue
                for d in DIMENSION_KEYS:
                    v = score(r["rater_id"], r, d, rng, given)
                    given[(r["rater_id"], r["item_id"], d)] = v
                    con.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?)",
                                (r["rater_id"], r["item_id"], d, v,
                                 time.strftime("%Y-%m-%dT%H:%M:%SZ")))
    finally:
        con.close()


def absolute_scores(careless=(), inconsistent=()):
    def score(rater, r, d, rng, given):
        if r["kind"] == "broken":
            return 5 if rater in careless else 1
        if r["kind"] == "repeat":
            same = given[(rater, r["repeat_of"], d)]
            return (1 if same > 3 else 5) if rater in inconsistent else same
        return (4 if r["a_name"] == "zeta-model" else 2) + rng.choice((0, 0, 1)) \
            - (d == "lip_sync" and r["a_name"] == "omega-model")
    return score


def test_absolute_table_excludes_failed_raters_and_separates_the_models(study_inputs,
                                                                         tmp_path):
    plan = create_study(tmp_path / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(raters=6, ratings=4, repeats=1, broken=1, seed=2))
    simulate(plan.folder, absolute_scores(careless={4}, inconsistent={5}), skip={6})
    h = human_eval(plan.folder, n_boot=500)
    r = h.raters.set_index("rater_id")
    assert r.loc[4, "excluded"] and "broken video rated 5 on video_quality" in r.loc[4, "reason"]
    assert r.loc[5, "excluded"] and "repeated item answered" in r.loc[5, "reason"]
    assert not r.loc[[1, 2, 3], "excluded"].any() and r.loc[6, "answered"] == 0
    assert h.counts() == {"raters": 6, "answered_any": 5, "complete": 5, "excluded": 2,
                          "unchecked": 0}
    rows = {row["name"]: row["cells"] for row in h.rows}
    assert list(rows) == ["zeta-model", "omega-model"]
    for d in DIMENSION_KEYS:
        z, o = rows["zeta-model"][d], rows["omega-model"][d]
        assert 4 <= z["mean"] <= 5 and 1 <= o["mean"] <= 3
        assert z["low"] > o["high"]  # separated beyond the intervals
        assert z["low"] <= z["mean"] <= z["high"]
        # only the kept raters' rated items: 4 instances x ratings of raters 1-3
        con = connect(plan.folder)
        n = con.execute("SELECT COUNT(*) FROM assignments a JOIN items i USING (item_id) "
                        "JOIN models m ON m.model_id = i.model_a WHERE i.kind = 'rated' AND "
                        "m.name = 'zeta-model' AND a.rater_id IN (1, 2, 3)").fetchone()[0]
        con.close()
        assert z["n"] == n
    assert all(0.5 < a <= 1 for a in h.alpha.values())  # raters agree on the ordering
    md = markdown(h)
    assert "| zeta-model | " in md and "Krippendorff" in md and "2 excluded" in md
    folder = write_results(plan.folder, h)
    assert {p.name for p in folder.iterdir()} == {
        "human_eval.md", "human_eval.tex", "human_eval.csv", "human_eval.json",
        "agreement.csv", "raters.csv"}
    assert "\\begin{tabular}" in (folder / "human_eval.tex").read_text()
    csv = pd.read_csv(folder / "human_eval.csv")
    assert len(csv) == 2 * 7 and set(csv.columns) >= {"row", "dimension", "mean", "low", "high",
                                                       "n", "alpha"}
    data = json.loads((folder / "human_eval.json").read_text())
    assert data["raters"]["excluded"] == 2 and len(data["excluded"]) == 2


def test_pairwise_table_gives_good_same_bad_and_the_net_preference(study_inputs, tmp_path):
    plan = create_study(tmp_path / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(protocol="pairwise", raters=5, ratings=5, repeats=1,
                                     broken=1, seed=4))

    def score(rater, r, d, rng, given):
        if r["kind"] == "broken":
            return -1  # model a is the broken video: b (the real one) is better
        if r["kind"] == "repeat":
            return given[(rater, r["repeat_of"], d)]
        if d == "timbre":
            return rng.choice((1, 0, -1))
        return 1 if rng.random() < 0.8 else 0  # a is better or the same

    simulate(plan.folder, score, seed=1)
    h = human_eval(plan.folder, n_boot=500)
    assert h.counts()["excluded"] == 0
    (row,) = h.rows
    assert row["name"] == "zeta-model vs omega-model"
    for c in row["cells"].values():
        assert abs(c["good"] + c["same"] + c["bad"] - 1) < 1e-9
        assert c["mean"] == pytest.approx(c["good"] - c["bad"])
        assert c["low"] <= c["mean"] <= c["high"] and c["n"] == 20  # 4 instances x 5
    ident = row["cells"]["identity"]
    assert ident["good"] > 0.55 and ident["bad"] == 0 and ident["low"] > 0
    assert "/" in markdown(h) and "net preference" in markdown(h)


def test_answers_export_as_csv_and_parquet(study_inputs, tmp_path):
    plan = create_study(tmp_path / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(raters=2, ratings=1, repeats=0, broken=0))
    simulate(plan.folder, absolute_scores(), stop_after={1: 2, 2: 1})
    assert export_answers(plan.folder, tmp_path / "a.csv") == 3 * 7
    assert export_answers(plan.folder, tmp_path / "a.parquet") == 3 * 7
    df = pd.read_parquet(tmp_path / "a.parquet")
    assert len(df) == 21 and set(df.model_a) <= {"zeta-model", "omega-model"}
    assert "token" not in " ".join(df.columns) and "rater_id" not in df.columns
    assert set(pd.read_csv(tmp_path / "a.csv").rater) == {"rater 1", "rater 2"}


def test_the_table_joins_the_comparisons_html_report(study_inputs, tmp_path, chromium):
    """A study made from an `omni benchmark run` folder: `omni study aggregate` writes the
    table into the comparison and its report shows it."""
    from conftest import job_summary, stage_entry

    from omni_cli.main import main
    from omni_core.manifests import write_manifest

    out = tmp_path / "cmp"
    write_manifest(study_inputs.instances, "bench_instances", out / "instances.parquet")
    for name, folder in study_inputs.predictions.items():
        (out / "predictions").mkdir(parents=True, exist_ok=True)
        (out / "predictions" / name).symlink_to(folder)
    models = [{"name": n, "kind": "predictions", "predictions": str(f), "reference": i == 0}
              for i, (n, f) in enumerate(study_inputs.predictions.items())]
    (out / "summary.json").write_text(json.dumps(job_summary(
        "benchmark", [stage_entry("eval", 4, 4, 0, 1.0)], out=str(out),
        details={"models": models, "reference_model": "zeta-model"})))
    assert main(["study", "create", "--comparison", str(out), "--out", str(tmp_path / "s"),
                 "--raters", "3", "--ratings", "2"]) == 0
    simulate(tmp_path / "s", absolute_scores())
    assert main(["study", "aggregate", str(tmp_path / "s"), "--n-boot", "200"]) == 0
    assert (out / "human_eval" / "human_eval.json").is_file()
    html, tree = chromium.dom(out / "report" / "index.html")
    section = tree.one("section", data_testid="human")
    rows = section.find_all(data_testid="human-row")
    assert [r.find_all("th")[0].text() for r in rows] == ["zeta-model", "omega-model"]
    assert "Krippendorff" in section.text() and "Lip-sync" in section.text()
