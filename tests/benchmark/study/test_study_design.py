"""Creating a study: balanced assignments, attention checks placed, media playable with
sound, tokens and links, refusals."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter

import pytest

from benchmark.study.db import connect
from benchmark.study.design import StudyOptions, create_study, write_links
from omni_core.errors import OmniError
from omni_core.media import probe


def _rows(study, sql, *args):
    con = connect(study)
    try:
        return [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def test_every_item_gets_its_ratings_from_distinct_raters_with_balanced_loads(study_inputs,
                                                                               tmp_path):
    plan = create_study(tmp_path / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(raters=4, ratings=3, repeats=1, broken=1, seed=3))
    assert plan.models == ["zeta-model", "omega-model"] and len(plan.instances) == 4
    assert plan.items == 8  # 4 instances x 2 models
    rated = _rows(plan.folder, "SELECT a.rater_id, a.item_id FROM assignments a JOIN items i "
                  "USING (item_id) WHERE i.kind = 'rated'")
    per_item = Counter(r["item_id"] for r in rated)
    assert set(per_item.values()) == {3} and len(per_item) == 8  # 3 ratings each
    assert len({(r["rater_id"], r["item_id"]) for r in rated}) == len(rated)  # distinct raters
    loads = Counter(r["rater_id"] for r in rated)
    assert max(loads.values()) - min(loads.values()) <= 1 and sum(loads.values()) == 24
    # attention checks: one repeat after its original, one broken item, per rater
    for rater in range(1, 5):
        order = _rows(plan.folder, "SELECT a.position, i.item_id, i.kind, i.repeat_of, "
                      "i.video_a FROM assignments a JOIN items i USING (item_id) WHERE "
                      "a.rater_id = ? ORDER BY a.position", rater)
        kinds = Counter(r["kind"] for r in order)
        assert kinds["repeat"] == 1 and kinds["broken"] == 1
        pos = {r["item_id"]: r["position"] for r in order}
        (rep,) = [r for r in order if r["kind"] == "repeat"]
        orig = [r for r in order if r["item_id"] == rep["repeat_of"]][0]
        assert pos[rep["item_id"]] >= pos[rep["repeat_of"]] + 2
        assert rep["video_a"] != orig["video_a"]  # a new id: the page cannot tell
        assert [r["position"] for r in order] == list(range(len(order)))
    assert plan.per_rater == [loads[r] + 2 for r in range(1, 5)]


def test_media_play_with_sound_and_the_broken_video_is_obvious(study_inputs, tmp_path):
    plan = create_study(tmp_path / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(raters=2, ratings=1))
    videos = _rows(plan.folder, "SELECT m.path, i.kind FROM items i JOIN media m ON "
                   "m.media_id = i.video_a")
    for v in videos:
        info = probe(v["path"])
        assert info.has_video and info.has_audio, v  # the silent grey mp4s got their .wav
    muxed = [v for v in videos if str(plan.folder / "media") in v["path"]]
    assert muxed and all(v["kind"] in ("rated", "repeat", "broken") for v in muxed)
    broken = [v["path"] for v in videos if v["kind"] == "broken"][0]
    import numpy as np

    from omni_core.media import read_frames

    real = [v["path"] for v in videos if v["kind"] == "rated"][0]

    def texture(path):  # mean step between neighbouring pixels, and between two frames
        f = read_frames(path, [0, 10]).astype(float)
        return np.abs(np.diff(f, axis=2)).mean(), np.abs(f[0] - f[1]).mean()

    (b_space, b_time), (r_space, r_time) = texture(broken), texture(real)
    assert b_space > 12 and b_space > 3 * r_space  # noise, not a picture
    assert b_time > 30 and b_time > 3 * r_time  # and it changes every frame


def test_pairwise_items_hold_two_models_videos_with_sides_drawn(study_inputs, tmp_path):
    plan = create_study(tmp_path / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(protocol="pairwise", raters=6, ratings=6, broken=1,
                                     repeats=0, seed=1))
    items = _rows(plan.folder, "SELECT i.kind, i.model_a, i.model_b, i.video_a, i.video_b "
                  "FROM items i")
    rated = [i for i in items if i["kind"] == "rated"]
    assert len(rated) == 4 and all(i["model_a"] == 1 and i["model_b"] == 2 for i in rated)
    assert all(i["video_b"] for i in items)
    broken = [i for i in items if i["kind"] == "broken"]
    assert broken and all(i["model_a"] is None and i["model_b"] in (1, 2) for i in broken)
    flips = [r["flipped"] for r in _rows(plan.folder, "SELECT flipped FROM assignments")]
    assert 0 < sum(flips) < len(flips)  # both sides drawn


def test_links_are_secret_and_unguessable(study_inputs, tmp_path):
    plan = create_study(tmp_path / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(raters=3, ratings=2, labels=("ann", "bo", "cy")))
    path = write_links(plan, "https://study.example.org/")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["ann", "bo", "cy"]
    tokens = [line.rsplit("/", 1)[1] for line in lines]
    assert len(set(tokens)) == 3 and all(len(t) >= 24 for t in tokens)
    assert all(line.split("\t")[1].startswith("https://study.example.org/r/") for line in lines)


def test_refusals(study_inputs, tmp_path):
    inst, preds = study_inputs.instances, study_inputs.predictions
    with pytest.raises(OmniError, match="3 ratings from different raters, but the study has 2"):
        create_study(tmp_path / "a", inst, preds, StudyOptions(raters=2, ratings=3))
    with pytest.raises(OmniError, match="two or more models"):
        create_study(tmp_path / "b", inst, {"zeta-model": preds["zeta-model"]})
    with pytest.raises(OmniError, match="no instance of task rv2av"):
        create_study(tmp_path / "c", inst, preds, StudyOptions(tasks=("rv2av",)))
    with pytest.raises(OmniError, match="protocol must be one of"):
        StudyOptions(protocol="ranking")
    create_study(tmp_path / "d", inst, preds, StudyOptions(raters=2, ratings=1))
    with pytest.raises(OmniError, match="already holds a study"):
        create_study(tmp_path / "d", inst, preds, StudyOptions(raters=2, ratings=1))
    # an instance missing from one model, or whose video cannot be read, is left out and
    # counted with the reason; the others are rated
    short = tmp_path / "short"
    short.mkdir()
    mp4s = sorted(preds["zeta-model"].glob("*.mp4"))
    for mp4 in mp4s[2:]:
        (short / mp4.name).symlink_to(mp4)
    (short / mp4s[1].name).write_bytes(b"\x00\x00\x00\x18ftypmp42 cut short")
    plan = create_study(tmp_path / "e", inst, {"zeta-model": preds["zeta-model"],
                                               "short": short},
                        StudyOptions(raters=2, ratings=1))
    assert len(plan.instances) == 2 and len(plan.left_out["short"]) == 2
    missing, broken = sorted(plan.left_out["short"], key=lambda r: "no video" not in r)
    assert missing.endswith(": no video") and mp4s[0].stem in missing
    assert broken.startswith(mp4s[1].stem) and "no video" not in broken
    meta = {r["key"]: json.loads(r["value"]) for r in _rows(plan.folder, "SELECT * FROM meta")}
    assert meta["protocol"] == "absolute" and len(meta["dimensions"]) == 7


def test_the_cli_creates_reports_progress_and_exports(study_inputs, tmp_path, capsys):
    from omni_cli.main import main

    preds = [f"--predictions={n}={p}" for n, p in study_inputs.predictions.items()]
    assert main(["study", "create", "--bench", str(study_inputs.bench), *preds, "--out",
                 str(tmp_path / "s"), "--raters", "2", "--ratings", "1", "--labels", "ann,bo",
                 "--base-url", "https://study.example.org"]) == 0
    out = capsys.readouterr().out
    assert "2 models, 4 instances, 8 items x 1 ratings, 2 raters" in out
    assert out.count("https://study.example.org/r/") == 2
    assert main(["study", "status", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "ann: 0/" in out and "bo: 0/" in out and "0/" in out.splitlines()[-1]
    assert main(["study", "export", str(tmp_path / "s"), "--out", str(tmp_path / "a.csv")]) == 0
    assert (tmp_path / "a.csv").read_text().startswith("rater,")
    # mistakes are one line each
    assert main(["study", "create", "--bench", str(study_inputs.bench), "--predictions", "x",
                 "--out", str(tmp_path / "t")]) == 1
    assert "write NAME=DIR" in capsys.readouterr().err
    assert main(["study", "serve", str(tmp_path / "nothing")]) == 1
    assert "not a study folder" in capsys.readouterr().err
