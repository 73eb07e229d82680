"""The evaluation harness with a metric added the documented way (one class, one register)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from benchmark.released import import_released
from evaluation import registry
from evaluation.registry import Metric, MetricSpec, Output, register
from evaluation.runner import evaluate
from omni_core.jobs.summary import KEYS
from omni_core.manifests import read_manifest

CALLS = {"n": 0}


class Loudness(Metric):
    """Mean absolute amplitude of the prediction's audio, and a split (S/M) frame statistic."""

    spec = MetricSpec(name="loudness_test", version="1", needs=("audio16k", "frames"),
                      outputs=(Output("loudness_test", "Loud", "higher"),
                               Output("brightness_test", "Bright", "lower", scale=100.0,
                                      split=True)))

    def compute(self, inp):
        CALLS["n"] += 1
        return {"loudness_test": float(np.abs(inp.audio(16000)).mean()),
                "brightness_test": float(inp.frames((0, 1)).mean() / 255)}


@pytest.fixture(scope="module", autouse=True)
def loudness_registered():
    """Registered the documented way while this module's tests run, and only then: a
    module-level ``@register`` runs at collection and would add the metric to every other
    test's default metric list."""
    from evaluation import registry

    register(Loudness)
    yield
    registry.unregister("loudness_test")


@pytest.fixture
def bench(bench_fixtures, tmp_path):
    """The fixtures with one prediction deleted and one corrupted."""
    inst, _ = import_released(bench_fixtures.bench)
    pred = tmp_path / "pred"
    shutil.copytree(bench_fixtures.pred, pred)
    ids = sorted(inst.instance_id)
    (pred / f"{ids[0]}.mp4").unlink()
    (pred / f"{ids[1]}.mp4").write_bytes(b"\x00" * 100)
    return inst, pred, ids


def test_run_tables_missing_resume_recompute(bench, tmp_path):
    inst, pred, ids = bench
    out = tmp_path / "out"
    CALLS["n"] = 0
    run = evaluate(inst, pred, out, ["loudness_test"], progress=False)
    assert CALLS["n"] == len(ids) - 2
    res = read_manifest(out / "results.parquet", "eval_results")
    assert len(res) == 2 * len(ids)
    miss = res[res.instance_id.isin(ids[:2])]
    assert set(miss.status) == {"missing"} and miss.value.isna().all()
    assert "no prediction" in miss[miss.instance_id == ids[0]].reason.iloc[0]
    assert "unreadable prediction" in miss[miss.instance_id == ids[1]].reason.iloc[0]
    summary = json.loads((out / "summary.json").read_text())
    assert tuple(summary) == KEYS and summary["job"] == "eval"
    assert summary["items"]["total"] == len(ids)
    assert summary["errors_by_stage"] == {"inputs": 2}  # the missing ones, at inputs
    summary = summary["details"]
    assert set(summary["missing_predictions"]) == set(ids[:2])
    assert summary["counts"]["loudness_test"] == {"missing": 2, "ok": len(ids) - 2}
    assert summary["debug_weights"] and summary["metrics"]["loudness_test"]["version"] == "1"
    # the table averages only the scored instances
    ok = res[(res.status == "ok") & (res.metric == "loudness_test")]
    assert summary["table"]["r2av"]["loudness_test"] == f"{ok.value.mean():.3f}"
    s_m = summary["table"]["r2av"]["brightness_test"]
    assert "/" in s_m  # S/M split
    md = (out / "table.md").read_text()
    assert "Loud ↑" in md and "Bright S/M ↓" in md and "R2AV (Table 2)" in md
    long = pd.read_csv(out / "table.csv")
    bright = long[long.metric == "brightness_test"].set_index("split")
    assert list(bright.index) == ["S", "M"] and (bright.method == "pred").all()
    assert bright.n.sum() == (ok.split.isin(["S", "M"])).sum()
    loud = long[long.metric == "loudness_test"].iloc[0]
    assert loud.low <= loud["mean"] <= loud.high and loud.n == len(ok)
    assert r"\toprule" in (out / "table.tex").read_text()

    CALLS["n"] = 0  # a rerun reuses the cache: identical numbers, nothing recomputed
    again = evaluate(inst, pred, out, ["loudness_test"], progress=False)
    assert CALLS["n"] == 0
    pd.testing.assert_frame_equal(again.results, run.results)
    evaluate(inst, pred, out, ["loudness_test"], progress=False, recompute=["loudness_test"])
    assert CALLS["n"] == len(ids) - 2


def test_killed_run_resumes(bench, tmp_path):
    inst, pred, ids = bench
    out = tmp_path / "out"
    evaluate(inst.iloc[:3], pred, out, ["loudness_test"], progress=False)  # "killed" after 3
    CALLS["n"] = 0
    evaluate(inst, pred, out, ["loudness_test"], progress=False)
    assert CALLS["n"] == len([i for i in ids[2:] if i not in set(inst.instance_id[:3])])


def test_metric_errors_are_rows_not_crashes(bench, tmp_path):
    inst, pred, ids = bench

    @register
    class Broken(Metric):
        spec = MetricSpec(name="broken_test", version="1", needs=(),
                          outputs=(Output("broken_test", "Broken", "higher"),))

        def compute(self, inp):
            from omni_core.errors import OmniError

            raise OmniError(f"no face found in {inp.instance_id}")

    try:
        run = evaluate(inst, pred, tmp_path / "o", ["broken_test"], progress=False)
    finally:
        registry.unregister("broken_test")
    res = run.results
    assert set(res.status) == {"error", "missing"}
    assert res[res.status == "error"].reason.str.startswith("no face found").all()
    assert run.summary["details"]["table"]["r2av"]["broken_test"] == "-"


def test_an_unexpected_exception_is_an_error_row_and_is_retried(bench, tmp_path):
    inst, pred, ids = bench
    calls = {"n": 0}

    @register
    class Crashing(Metric):
        spec = MetricSpec(name="crashing_test", version="1", needs=(),
                          outputs=(Output("crashing_test", "Crash", "higher"),))

        def compute(self, inp):
            calls["n"] += 1
            raise RuntimeError("Given input size: (512x1x1). Output size is too small")

    try:
        run = evaluate(inst, pred, tmp_path / "o", ["crashing_test"], progress=False)
        first = calls["n"]
        evaluate(inst, pred, tmp_path / "o", ["crashing_test"], progress=False)
    finally:
        registry.unregister("crashing_test")
    err = run.results[run.results.status == "error"]
    assert len(err) == len(ids) - 2  # every readable prediction, none lost
    assert err.reason.str.startswith("RuntimeError: Given input size").all()
    assert first == len(ids) - 2 and calls["n"] == 2 * first  # not cached: retried


def test_files_that_match_no_instance_are_listed_not_silently_ignored(bench, tmp_path):
    """A prediction under a wrong name (``foo.mp4``) or a stray file is named in the summary;
    hidden files, the bookkeeping ``omni generate`` leaves beside its videos and the eval's
    own output folder are not predictions and are not listed."""
    inst, pred, ids = bench
    shutil.copy(pred / f"{ids[2]}.mp4", pred / "foo.mp4")
    (pred / "notes.txt").write_text("seed 100")
    (pred / "old").mkdir()
    (pred / ".DS_Store").write_bytes(b"")
    (pred / ".x.tmp.mp4").write_bytes(b"")
    (pred / "summary.json").write_text("{}")  # omni generate's
    (pred / "errors.parquet").write_bytes(b"")
    (pred / "_results").mkdir()
    run = evaluate(inst, pred, pred / "eval", ["loudness_test"], progress=False)
    listed = run.summary["details"]["unexpected_predictions"]
    assert listed == {"count": 3, "names": ["foo.mp4", "notes.txt", "old/"]}
    assert json.loads((pred / "eval" / "summary.json").read_text())["details"][
        "unexpected_predictions"] == listed
    # many: the count is exact, the listing capped
    for i in range(30):
        (pred / f"extra_{i:02d}.wav").write_bytes(b"")
    run = evaluate(inst, pred, tmp_path / "o", ["loudness_test"], progress=False)
    listed = run.summary["details"]["unexpected_predictions"]
    # 3 + 30, and eval/: now another run's output, not this one's
    assert listed["count"] == 34 and len(listed["names"]) == 20
    assert listed["names"] == sorted(listed["names"])
    assert listed["names"][:2] == ["eval/", "extra_00.wav"]
    # a clean folder lists nothing
    clean = tmp_path / "clean"
    clean.mkdir()
    for i in ids[2:]:
        shutil.copy(pred / f"{i}.mp4", clean)
    run = evaluate(inst, clean, tmp_path / "o2", ["loudness_test"], progress=False)
    assert run.summary["details"]["unexpected_predictions"] == {"count": 0, "names": []}
