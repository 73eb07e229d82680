"""``omni benchmark run``: several models on one benchmark, made where missing, scored once.

The models are real: the corpus clips (another system's folder, named by a rename rule), the
copy-paste baseline (built here) and the debug flavor at random init (sampled by omni
generate). The metric is a small one registered the documented way, so the test stays fast;
it reports a per-turn breakdown like WER and T-Sim do.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from benchmark.compare import load_models, run_comparison, source_name
from evaluation.registry import Metric, MetricSpec, Output, register
from omni_core.errors import ConfigError
from omni_core.manifests import read_manifest

CALLS = {"n": 0}


class Loud(Metric):
    """Mean absolute amplitude; per caption turn on multi-person instances."""

    spec = MetricSpec(name="loud_cmp_test", version="1", needs=("audio16k", "caption"),
                      outputs=(Output("loud_cmp_test", "Loud", "higher", split=True),))

    def compute(self, inp):
        CALLS["n"] += 1
        a = inp.audio(16000)
        turns = [{"speaker": s, "turn": k, "start_s": t0, "end_s": t1,
                  "value": _mean_abs(a[int(t0 * 16000):int(t1 * 16000)])}
                 for s, spans in inp.caption.speaker_timestamps.items()
                 for k, (t0, t1) in enumerate(sorted(spans))] if inp.split == "M" else []
        return {"loud_cmp_test": float(np.abs(a).mean()), "loud_cmp_test_turns": turns}


def _mean_abs(x):
    return float(np.abs(x).mean()) if len(x) else None  # a turn past the audio's end


@pytest.fixture(scope="module", autouse=True)
def loud_registered():
    from evaluation import registry

    register(Loud)
    yield
    registry.unregister("loud_cmp_test")


@pytest.fixture
def setup(bench_fixtures, tmp_path):
    """Another system's folder laid out <set>/<case>.mp4 (one video missing) and a
    models.yaml with the three kinds of entry."""
    other = tmp_path / "other_system"
    ids = []
    for mp4 in sorted(bench_fixtures.pred.glob("*.mp4")):
        iid = mp4.stem
        ids.append(iid)
        dest = other / source_name("{set}/{case}.mp4", iid)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mp4, dest)
    (other / source_name("{set}/{case}.mp4", ids[0])).unlink()
    models = tmp_path / "models.yaml"
    models.write_text(
        "reference: copy-paste\n"
        "models:\n"
        "  - {name: corpus-clips, predictions: other_system, pattern: '{set}/{case}.mp4'}\n"
        "  - {name: copy-paste, baseline: copy_paste}\n"
        "  - {name: untrained, checkpoint: random-init, generate: {flavor: debug, steps: 1}}\n")
    return models, ids


def test_three_kinds_of_model_made_scored_and_tabled(setup, bench_fixtures, tmp_path,
                                                     chromium):
    models_yaml, ids = setup
    models, reference = load_models(models_yaml)
    assert reference == "copy-paste" and [m.kind for m in models] == [
        "predictions", "baseline", "checkpoint"]
    out = tmp_path / "cmp"
    CALLS["n"] = 0
    cmp = run_comparison(bench_fixtures.bench, models, out, reference=reference,
                         metrics=["loud_cmp_test"], with_published=True, n_boot=300,
                         report=True, progress=False)
    res = read_manifest(out / "results.parquet", "eval_results")
    assert set(res.model) == {"corpus-clips", "copy-paste", "untrained"}
    assert len(res) == 3 * len(ids)
    # the rename rule found every file but the removed one, which is counted, not averaged
    clips = res[res.model == "corpus-clips"].set_index("instance_id")
    assert clips.loc[ids[0], "status"] == "missing" and (clips.drop(ids[0]).status == "ok").all()
    d = cmp.summary["details"]
    by = {m["name"]: m for m in d["models"]}
    assert by["corpus-clips"]["missing_predictions"] == 1
    assert by["copy-paste"]["made"]["written"] == len(ids)
    assert by["untrained"]["made"]["written"] == len(ids) and by["copy-paste"]["reference"]
    assert CALLS["n"] == 3 * len(ids) - 1
    # cells: every model, with intervals; the reference untested; published rows apart
    cells = pd.read_parquet(out / "cells.parquet")
    measured = cells[~cells.published]
    assert set(measured.model) == {"corpus-clips", "copy-paste", "untrained"}
    assert measured[measured.model == "copy-paste"].p_value.isna().all()
    two = measured[(measured.n >= 2)]
    assert (two.low <= two["mean"]).all() and (two["mean"] <= two.high).all()
    assert set(cells[cells.published].model) == set()  # no published Loud column
    pairs = pd.read_csv(out / "pairs.csv")
    assert len(pairs[pairs.view == "table2"]) == 3 * 2  # 3 pairs x (S, M)
    # the views: Table 2 and the two ablation views over R2AV; per speaker turn
    for view in ("table2", "table5", "table6"):
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{view}.{ext}").is_file()
    assert not (out / "tables" / "table3.md").exists()  # no RV2AV instance
    turns = read_manifest(out / "turns.parquet", "eval_turns")
    assert set(turns.split) == {"M"} and set(turns.speaker) == {"<sub1>", "<sub2>"}
    speakers = (out / "tables" / "speakers.md").read_text()
    assert "| method | <sub1> | <sub2> | all turns |" in speakers
    md = (out / "tables.md").read_text()
    assert "significantly better/worse than copy-paste" in md
    summary = json.loads((out / "summary.json").read_text())
    assert summary["job"] == "benchmark" and summary["details"]["reference_model"] == "copy-paste"

    # the report of this real comparison: every page loads without a console message and
    # every player has its file
    index = out / "report" / "index.html"
    _, root, console = chromium.console(index)
    assert console == [] and root.find_all("table")
    for page in sorted((out / "report" / "instances").glob("*.html")):
        _, root, console = chromium.console(page)
        assert console == [], (page.name, console)
        players = root.find_all("video") + root.find_all("audio")
        assert len(players) >= 3  # voices and the models' videos
        assert root.one("body").attrs["data-media-failed"] == "0", page.name
        missing = root.find_all(data_testid="model-video-missing")
        assert len(missing) == (1 if page.stem == ids[0] else 0), page.name

    # a rerun makes and scores nothing again; a changed sampler setting regenerates
    CALLS["n"] = 0
    again = run_comparison(bench_fixtures.bench, models, out, reference=reference,
                           metrics=["loud_cmp_test"], n_boot=300, report=False,
                           progress=False)
    made = {m["name"]: m["made"] for m in again.summary["details"]["models"]}
    assert made["untrained"]["written"] == 0 and made["untrained"]["kept"] == len(ids)
    assert made["copy-paste"]["kept"] == len(ids) and CALLS["n"] == 0
    models[2].generate["steps"] = 2
    run_comparison(bench_fixtures.bench, models, out, reference=reference,
                   metrics=["loud_cmp_test"], n_boot=300, report=False, progress=False)
    assert CALLS["n"] == len(ids)  # only the regenerated videos are scored again


def test_models_yaml_mistakes_are_one_line_each(tmp_path):
    bad = {
        "models: []\n": "expected 'models:'",
        "models:\n  - {name: a}\n": "exactly one of predictions, checkpoint, baseline",
        "models:\n  - {name: a, predictions: x, baseline: copy_paste}\n": "exactly one",
        "models:\n  - {name: a, baseline: nope}\n": "unknown baseline 'nope'",
        "models:\n  - {name: a, predictions: x}\n  - {name: a, predictions: y}\n": "used twice",
        "models:\n  - {name: a/b, predictions: x}\n": "without '/'",
        "models:\n  - {name: a, predictions: x, pattern: '{id}.mp4'}\n": "pattern",
        "reference: z\nmodels:\n  - {name: a, predictions: x}\n": "reference 'z'",
        "models:\n  - {name: a, predictions: x, generate: {steps: 2}}\n": "goes with a checkpoint",
        "model: []\n": "expected 'models:'",
    }
    for k, (text, want) in enumerate(bad.items()):
        path = tmp_path / f"m{k}.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=want.replace("(", r"\(")):
            load_models(path)


def test_the_rename_rule():
    assert source_name("{instance_id}.mp4", "twoip_20") == "twoip_20.mp4"
    assert source_name("{set}/{case}.mp4", "twoip_20") == "twoip/20.mp4"
    assert source_name("{set}/{case}.mp4", "oneip_a_b") == "oneip/a_b.mp4"
