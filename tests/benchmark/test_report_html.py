"""The benchmark report (benchmark/report.py): a comparison folder rendered to ``O/report/``,
then opened from disk in headless Chromium.

The comparison folder is synthetic but follows the contract of ``omni benchmark run`` exactly
and is made of real media: the instances are the benchmark fixtures (``bench_fixtures``: the
sample corpus clips in the released layout) imported with ``import_released``, one turned into
an editing (RV2AV) and one into an animation (RA2V) instance; three models: ``ours`` (the
fixtures' predictions, the reference), ``baseline`` (a copy with one prediction missing) and
a checkpoint model with a hostile name whose predictions folder does not exist. Results,
speaker turns and table cells carry known values, so the worst-first order, the marks and the
filters are checked against numbers written here.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest

from benchmark.released import import_released
from benchmark.report import REPORT_DIR, file_name, write_report
from omni_core.manifests import write_manifest

HOSTILE = 'Ovi <img src=x onerror="document.body.dataset.pwned=1">'
MODELS = ("ours", "baseline", HOSTILE)
I0, I1, I2, I3 = "oneip_talk00_1p", "oneip_talk01_1p", "twoip_talk02_2p", "twoip_talk03_2p"
DROPPED = I2  # the baseline has no prediction for it
#: per metric: {instance: (ours, baseline)}; None = no value (missing prediction / error)
VALUES = {
    "aes": {I0: (0.5, 0.6), I1: (0.3, 0.2), I2: (0.7, None), I3: (0.1, 0.3)},
    "wer": {I0: (0.1, 0.3), I1: (0.4, 0.2), I2: (0.25, None), I3: (0.05, 0.15)},
    "viclip": {I0: (0.21, 0.20), I1: (0.19, 0.22), I2: (0.25, None), I3: (0.18, 0.17)},
    "t_sim_ge2e": {I0: (None, 0.8), I1: (0.7, 0.75), I2: (0.6, None), I3: (0.9, 0.85)},
}
#: worst first by the mean over the models that scored the instance
WORST = {"aes": [I3, I1, I0, I2],  # means .2 .25 .55 .7, higher is better
         "wer": [I1, I2, I0, I3],  # means .3 .25 .2 .1, lower is better
         "viclip": [I3, I0, I1, I2],  # means .175 .205 .205 -> I0 before I1 (by id), .25
         "t_sim_ge2e": [I2, I1, I0, I3]}  # means .6 .725 .8 .875
OUTPUTS = {
    "aes": {"label": "AES", "direction": "higher", "scale": 1.0, "split": False, "caveat": ""},
    "viclip": {"label": "ViCLIP", "direction": "higher", "scale": 100.0, "split": False,
               "caveat": ""},
    "wer": {"label": "WER", "direction": "lower", "scale": 1.0, "split": False, "caveat": ""},
    "t_sim_ge2e": {"label": "T-Sim (GE2E)", "direction": "higher", "scale": 1.0, "split": True,
                   "caveat": "GE2E speaker encoder, not WavLM + ECAPA"},
}
ERROR_REASON = "decoder failed <script>document.body.dataset.pwned=2</script>"


# ----------------------------------------------------------------------------- the folder


def instances_of(bench_fixtures) -> pd.DataFrame:
    inst, errors = import_released(bench_fixtures.bench)
    assert errors.empty
    inst = inst.set_index("instance_id", drop=False)
    inst.loc[I1, "task"] = "rv2av"  # an editing instance: its source video is a real clip
    inst.loc[I1, "source_video"] = str(bench_fixtures.pred / f"{I0}.mp4")
    inst.loc[I3, "task"] = "ra2v"  # an animation instance: driven by its first voice
    inst.loc[I3, "driving_audio"] = str(inst.loc[I3, "audio_refs"][0])
    return inst.reset_index(drop=True)


def results_rows(inst: pd.DataFrame) -> list[dict]:
    meta = inst.set_index("instance_id")
    rows = []
    for metric, per in VALUES.items():
        for iid, vals in per.items():
            for model, v in zip(MODELS, (*vals, None), strict=True):
                status, reason = "ok", None
                if v is None:
                    status = "missing"
                    reason = "no prediction" if model != "ours" else None
                    if model == "ours":
                        status, reason = "error", ERROR_REASON
                rows.append({"model": model, "instance_id": iid, "task": meta.loc[iid, "task"],
                             "split": meta.loc[iid, "split"], "metric": metric,
                             "metric_version": "1", "value": math.nan if v is None else v,
                             "status": status, "reason": reason})
    return rows


def speaker_rows(inst: pd.DataFrame) -> list[dict]:
    rows = []
    for iid in (I2, I3):
        for model, base in (("ours", 0.1), ("baseline", 0.3)):
            if model == "baseline" and iid == DROPPED:
                continue
            for k, (speaker, turn, start, end) in enumerate(
                    [("<sub1>", 0, 0.39, 2.35), ("<sub2>", 0, 2.84, 4.79),
                     ("<sub1>", 1, 5.23, 7.82)]):
                rows.append({"model": model, "instance_id": iid, "task": "r2av", "split": "M",
                             "metric": "wer", "speaker": speaker, "turn": turn,
                             "start_s": start, "end_s": end, "value": base + k / 100})
    return rows


def cell(view, title, model, metric, split, mean, text, *, published=False, low=math.nan,
         high=math.nan, n=math.nan, p=math.nan, significant=False) -> dict:
    return {"view": view, "title": title, "model": model, "published": published,
            "metric": metric, "split": split, "mean": mean, "low": low, "high": high, "n": n,
            "p_value": p, "significant": significant, "text": text}


def cells_rows() -> list[dict]:
    t2 = ("table2", "R2AV (Table 2)")
    return [
        cell(*t2, "ours", "aes", None, 0.40, "0.400", low=0.21, high=0.58, n=4),
        cell(*t2, "ours", "viclip", None, 0.21, "21.0", low=0.19, high=0.24, n=4),
        cell(*t2, "ours", "wer", None, 0.20, "0.200", low=0.06, high=0.33, n=4),
        cell(*t2, "ours", "t_sim_ge2e", "S", 0.70, "0.700", low=0.70, high=0.70, n=1),
        cell(*t2, "ours", "t_sim_ge2e", "M", 0.75, "0.750", low=0.60, high=0.90, n=2),
        cell(*t2, "baseline", "aes", None, 0.37, "0.367", low=0.2, high=0.6, n=3, p=0.012,
             significant=True),
        cell(*t2, "baseline", "viclip", None, 0.197, "19.7", low=0.17, high=0.22, n=3,
             p=0.61),
        cell(*t2, "baseline", "wer", None, 0.217, "0.217", low=0.15, high=0.3, n=3, p=0.5),
        cell(*t2, "baseline", "t_sim_ge2e", "S", 0.775, "0.775", low=0.75, high=0.8, n=2,
             p=0.4),
        cell(*t2, "baseline", "t_sim_ge2e", "M", 0.85, "0.850", low=0.85, high=0.85, n=1,
             p=math.nan),
        cell(*t2, "DreamID-Omni", "aes", None, 0.63, "0.63", published=True),
        cell(*t2, "DreamID-Omni", "wer", None, 0.05, "0.05", published=True),
        cell("table3", "RV2AV (Table 3)", "ours", "aes", None, 0.3, "0.300", low=0.3,
             high=0.3, n=1),
    ]


def build_comparison(bench_fixtures, root: Path) -> Path:
    """A comparison folder at ``root / "cmp"`` as ``omni benchmark run`` writes one."""
    from conftest import job_summary, stage_entry

    out = root / "cmp"
    inst = instances_of(bench_fixtures)
    baseline = root / "baseline_pred"
    baseline.mkdir(parents=True)
    for p in bench_fixtures.pred.glob("*.mp4"):
        if p.stem != DROPPED:
            shutil.copyfile(p, baseline / p.name)
    write_manifest(inst, "bench_instances", out / "instances.parquet")
    pd.DataFrame(results_rows(inst)).to_parquet(out / "results.parquet")
    pd.DataFrame(speaker_rows(inst)).to_parquet(out / "turns.parquet")
    pd.DataFrame(cells_rows()).to_parquet(out / "cells.parquet")
    (out / "tables").mkdir()
    for view in ("table2", "table3"):
        (out / "tables" / f"{view}.md").write_text(f"| model | AES |\n|---|---|\n| {view} |\n")
        (out / "tables" / f"{view}.csv").write_text("model,AES\nours,0.4\n")
        (out / "tables" / f"{view}.tex").write_text("\\begin{tabular}{ll}\\end{tabular}\n")
    models = [
        {"name": "ours", "kind": "predictions", "predictions": str(bench_fixtures.pred),
         "reference": True},
        {"name": "baseline", "kind": "predictions", "predictions": str(baseline),
         "reference": False},
        {"name": HOSTILE, "kind": "checkpoint", "predictions": str(root / "never_generated"),
         "reference": False}]
    summary = job_summary(
        "benchmark", [stage_entry("eval", 12, 11, 1, 3.5)], out=str(out),
        details={"models": models, "reference_model": "ours", "outputs": OUTPUTS,
                 "note": "debug weights: scores are not meaningful"})
    (out / "summary.json").write_text(json.dumps(summary))
    return out


@pytest.fixture(scope="module")
def comparison(bench_fixtures, tmp_path_factory) -> Path:
    return build_comparison(bench_fixtures, tmp_path_factory.mktemp("bench_report"))


@pytest.fixture(scope="module")
def report(comparison) -> Path:
    return write_report(comparison)


# ----------------------------------------------------------------------------- the browser


def load(chromium, page: Path, fragment: str = ""):
    """The page's DOM after its scripts ran and the console lines it logged (the report's
    scripts log nothing)."""
    return chromium.console(page, fragment)


def local_targets(root, page: Path, tags=("video", "audio", "img", "a")) -> list[Path]:
    """Every file a page links to (media sources and posters, images, links), resolved against
    the page; asserts each is relative (no scheme, no absolute path)."""
    out = []
    for node in root.iter():
        if node.tag not in tags:
            continue
        for attr in ("href", "src", "poster"):
            url = node.attrs.get(attr)
            if url is None:
                continue
            assert not re.match(r"^[a-z]+:", url) and not url.startswith("/"), url
            out.append((page.parent / urllib.parse.unquote(url.split("#")[0])).resolve())
    return out


def body(root):
    return root.one("body").attrs


# ----------------------------------------------------------------------------- tests


def test_index_tables_marks_and_worst_first(report: Path, comparison: Path, chromium) -> None:
    assert report == comparison / REPORT_DIR / "index.html"
    raw = report.read_text()
    assert "http://" not in raw.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in raw and "<link" not in raw and "data:video" not in raw
    dom, root, console = load(chromium, report)
    assert console == []
    assert "pwned" not in body(root)
    assert body(root)["data-images-loaded"] == "6/6"  # 1+1+2+2 reference photos on the cards
    for testid in ("header", "tables", "filters", "worst", "gallery", "stages", "provenance"):
        assert len(root.find_all("section", data_testid=testid)) == 1, testid
    for target in local_targets(root, report):
        assert target.is_file(), target

    # models: videos found per model; the hostile name is text
    found = {r.attrs["data-model"]: r.attrs["data-found"]
             for r in root.find_all("tr", data_testid="model-row")}
    assert found == {"ours": "4", "baseline": "3", HOSTILE: "0"}
    assert root.one(data_testid="comparison-note").text().startswith("debug weights")
    assert "T-Sim (GE2E)" in root.one(data_testid="lite-note").text()

    # tables: one per view, measured rows before the published one, marks where due
    views = [t.attrs["data-view"] for t in root.find_all("table", data_testid="view-table")]
    assert views == ["table2", "table3"]
    t2 = root.one("table", data_view="table2")
    rows = t2.find_all("tr", data_testid="cell-row")
    assert [(r.attrs["data-model"], r.attrs["data-published"]) for r in rows] == [
        ("ours", "false"), ("baseline", "false"), ("DreamID-Omni", "true")]
    ours, base, pub = rows
    assert ours.attrs["data-reference"] == "true" and ours.find_all(data_testid="badge-reference")
    assert pub.attrs["class"] == "published" and ours.attrs["class"] == "measured"
    assert pub.one(data_testid="badge-published").text() == "published"
    assert not ours.find_all(data_testid="badge-published")
    pub_cells = pub.find_all("td", data_testid="cell")
    assert {c.attrs["data-metric"]: c.text() for c in pub_cells} == {"aes": "0.63", "wer": "0.05"}
    assert all(c.attrs["data-published"] == "true" and not c.find_all(data_testid="interval")
               for c in pub_cells)
    aes = base.one("td", data_metric="aes")
    assert aes.attrs["data-significant"] == "true" and aes.one(data_testid="significant")
    assert aes.one(data_testid="interval").text() == "[0.200, 0.600]"
    assert aes.attrs["data-n"] == "3" and "p = 0.012 against ours" in aes.attrs["title"]
    assert not base.one("td", data_metric="wer").find_all(data_testid="significant")
    assert not ours.find_all(data_testid="significant")
    # ViCLIP is printed x100: the interval follows the printed figure
    vic = ours.one("td", data_metric="viclip")
    assert vic.one("span", **{"class": "v"}).text() == "21.0"
    assert vic.one(data_testid="interval").text() == "[19.0, 24.0]"
    # best measured value of a column in bold: the lower WER
    assert "best" in ours.one("td", data_metric="wer").attrs["class"]
    assert "best" not in base.one("td", data_metric="wer").attrs["class"]
    tsim = ours.find_all("td", data_metric="t_sim_ge2e")
    assert [c.attrs["data-split"] for c in tsim] == ["S", "M"]
    head = t2.one("thead").text()
    assert "T-Sim (GE2E)† ↑" in head and "WER ↓" in head and "AES ↑" in head
    assert [[th.text() for th in tr.find_all("th")] for tr in t2.one("thead").find_all("tr")] \
        == [["model", "AES ↑", "ViCLIP ↑", "WER ↓", "T-Sim (GE2E)† ↑"], ["S", "M"]]
    t3 = root.one("table", data_view="table3")
    assert [[th.text() for th in tr.find_all("th")] for tr in t3.one("thead").find_all("tr")] \
        == [["model", "AES ↑"]]
    assert root.one("div", data_view="table2").one(data_testid="caveat").text().startswith("†")
    files = [a.attrs["href"] for a in root.find_all("a", data_testid="table-file")]
    assert files == ["tables/table2.md", "tables/table2.csv", "tables/table2.tex",
                     "tables/table3.md", "tables/table3.csv", "tables/table3.tex"]

    # worst instances first, per metric, with each model's value or status
    for metric, expected in WORST.items():
        block = root.one("details", data_testid="worst-metric", data_metric=metric)
        got = [r.attrs["data-instance"] for r in block.find_all("tr", data_testid="worst-row")]
        assert got == expected, metric
    wer_rows = root.one("details", data_metric="wer").find_all("tr", data_testid="worst-row")
    dropped = next(r for r in wer_rows if r.attrs["data-instance"] == DROPPED)
    assert dropped.one("td", data_model="baseline").attrs["data-status"] == "missing"
    assert dropped.one("td", data_model="baseline").text() == "missing"
    first = root.one("details", data_metric="viclip").find_all("tr", data_testid="worst-row")[0]
    assert first.one("td", data_model="ours").text() == "18"  # scaled like the table
    err = root.one("details", data_metric="t_sim_ge2e").find_all(
        "tr", data_instance=I0)[0].one("td", data_model="ours")
    assert err.attrs["data-status"] == "error" and err.attrs["title"] == ERROR_REASON

    # gallery: one card per instance with filter attributes and a link to its page
    cards = root.find_all("a", data_testid="instance-card")
    assert [(c.attrs["data-instance"], c.attrs["data-task"], c.attrs["data-split"])
            for c in cards] == [(I0, "r2av", "S"), (I1, "rv2av", "S"), (I2, "r2av", "M"),
                                (I3, "ra2v", "M")]
    assert all("data-filter-item" in c.attrs for c in cards)
    assert "baseline" in cards[2].one(data_testid="card-lacking").text()
    assert len(root.find_all("img", data_testid="card-photo")) == 6


def test_filters_hide_what_does_not_match(report: Path, chromium) -> None:
    _, root, console = load(chromium, report)
    assert console == []
    assert body(root)["data-filter-shown"] == "20/20"  # 4 cards + 4 metrics x 4 rows
    options = {s.attrs["data-filter"]: [o.attrs["value"] for o in s.find_all("option")]
               for s in root.find_all("select")}
    assert options == {"task": ["", "r2av", "rv2av", "ra2v"], "split": ["", "S", "M"]}

    _, root, console = load(chromium, report, "split=M")
    assert console == [] and body(root)["data-filter-state"] == "split=M"
    shown = [c.attrs["data-instance"] for c in root.find_all("a", data_testid="instance-card")
             if "hidden" not in c.attrs]
    assert shown == [I2, I3] and body(root)["data-filter-shown"] == "10/20"
    block = root.one("details", data_metric="aes")
    visible = [r.attrs["data-instance"] for r in block.find_all("tr", data_testid="worst-row")
               if "hidden" not in r.attrs]
    assert visible == [I3, I2]  # still worst first
    assert block.one(data_filter_count="").text() == "2"

    _, root, _ = load(chromium, report, "task=r2av&split=S")
    shown = [c.attrs["data-instance"] for c in root.find_all("a", data_testid="instance-card")
             if "hidden" not in c.attrs]
    assert shown == [I0] and body(root)["data-filter-shown"] == "5/20"

    _, root, _ = load(chromium, report, "task=nonsense")  # an unknown choice filters nothing
    assert body(root)["data-filter-shown"] == "20/20" and body(root)["data-filter-state"] == ""


def test_instance_pages_play_every_medium(report: Path, comparison: Path, chromium) -> None:
    pages = report.parent / "instances"
    assert sorted(p.name for p in pages.iterdir()) == [f"{i}.html" for i in (I0, I1, I2, I3)]
    expected_media = {I0: 1 + 2, I1: 1 + 2 + 1, I2: 2 + 1, I3: 2 + 2 + 1}  # voices+videos+input
    for iid, n_media in expected_media.items():
        page = pages / f"{file_name(iid)}.html"
        dom, root, console = load(chromium, page)
        assert console == [], (iid, console)
        assert "pwned" not in body(root)
        players = root.find_all("video") + root.find_all("audio")
        assert len(players) == n_media, iid
        assert body(root)["data-media-loaded"] == f"{n_media}/{n_media}", (iid, body(root))
        assert body(root)["data-media-failed"] == "0"
        for target in local_targets(root, page):
            assert target.is_file(), (iid, target)
            assert report.parent.resolve() in target.parents or target == report.resolve()
        models = root.find_all("figure", data_testid="model")
        assert [m.attrs["data-model"] for m in models] == list(MODELS)
        hostile = models[2]
        assert hostile.find_all(data_testid="model-video-missing")
        assert not hostile.find_all("video") and not root.find_all(data_testid="injected")
        base_missing = models[1].find_all(data_testid="model-video-missing")
        assert bool(base_missing) == (iid == DROPPED), iid
        assert models[0].one("video").attrs["src"] == f"../media/pred/ours/{iid}.mp4"
        assert models[0].one("video").attrs["poster"] == f"../media/pred/ours/{iid}.jpg"
        assert body(root)["data-images-loaded"] == ("1/1" if iid.startswith("oneip") else "2/2")

    # the two-person caption: spans highlighted in their speakers' colours, in order
    _, root, _ = load(chromium, pages / f"{I2}.html")
    spans = root.find_all("mark", data_testid="speech-span")
    assert [s.attrs["data-speaker"] for s in spans] == ["<sub1>", "<sub2>", "<sub1>"]
    assert [s.attrs["class"] for s in spans] == ["say s0", "say s1", "say s0"]
    assert all(float(s.attrs["data-end"]) > float(s.attrs["data-start"]) for s in spans)
    assert len(root.find_all("tr", data_testid="utterance")) == 3
    subjects = root.find_all("figure", data_testid="subject")
    assert [s.attrs["data-subject"] for s in subjects] == ["<sub1>", "<sub2>"]
    assert all(s.find_all("audio", data_testid="ref-voice") and s.find_all("svg")
               for s in subjects)
    # metric values per model with the rank among the worst
    aes = root.one("tr", data_testid="metric-row", data_metric="aes")
    assert aes.one("td", data_model="ours").text() == "0.700"
    assert aes.one("td", data_model="baseline").text().startswith("missing")
    assert aes.one(data_testid="rank").text() == "4 of 4"
    wer = root.one("tr", data_testid="metric-row", data_metric="wer")
    assert wer.one(data_testid="rank").text() == "2 of 4"
    turns = root.find_all("tr", data_testid="speaker-row")
    assert [(t.attrs["data-speaker"], t.attrs["data-turn"]) for t in turns] == [
        ("<sub1>", "0"), ("<sub1>", "1"), ("<sub2>", "0")]
    assert turns[2].one("td", data_model="ours").text() == "0.110"

    # the editing and animation instances show their inputs
    _, root, _ = load(chromium, pages / f"{I1}.html")
    assert root.one("video", data_testid="source-video").attrs["src"].endswith("source.mp4")
    assert root.one(data_testid="fact-task").text() == "RV2AV"
    _, root, _ = load(chromium, pages / f"{I3}.html")
    assert root.one("audio", data_testid="driving-audio").attrs["data-media-state"] == "loaded"
    err = root.one("tr", data_testid="metric-row", data_metric="t_sim_ge2e").one(
        "td", data_model="ours")
    assert err.attrs["data-status"] == "ok"  # I3's value exists; I0's is the error
    _, root, _ = load(chromium, pages / f"{I0}.html")
    err = root.one("tr", data_testid="metric-row", data_metric="t_sim_ge2e").one(
        "td", data_model="ours")
    assert err.attrs["data-status"] == "error" and ERROR_REASON in err.text()
    assert len(root.find_all("script")) == 2  # the kit's and the media check: nothing injected


def test_screenshots_show_the_marks(report: Path, chromium, tmp_path: Path) -> None:
    from PIL import Image

    png = chromium.screenshot(report, tmp_path / "index.png", 1280, 1400)
    with Image.open(png) as im:
        colours = {c for _, c in im.convert("RGB").getcolors(maxcolors=1 << 22)}
    assert len(colours) > 50  # not blank
    assert (0xFB, 0xF1, 0xD9) in colours  # the published row's hatching
    png = chromium.screenshot(report.parent / "instances" / f"{I2}.html",
                              tmp_path / "instance.png", 1280, 1400)
    with Image.open(png) as im:
        colours = {c for _, c in im.convert("RGB").getcolors(maxcolors=1 << 22)}
    assert len(colours) > 200  # photos and video frames
    assert (0xCF, 0xE0, 0xFA) in colours and (0xFC, 0xD9, 0xB6) in colours  # <sub1>, <sub2>


def test_the_folder_works_after_a_move(report: Path, comparison: Path, chromium,
                                       tmp_path: Path) -> None:
    moved = shutil.copytree(report.parent, tmp_path / "elsewhere" / "my report")
    size = sum(p.stat().st_size for p in moved.rglob("*") if p.is_file())
    videos = sum(p.stat().st_size for p in comparison.parent.rglob("*.mp4")
                 if "report" not in p.parts)
    assert size < videos + 3_000_000  # the videos once each, small thumbnails, pages
    for page in [moved / "index.html", *sorted((moved / "instances").glob("*.html"))]:
        _, root, console = load(chromium, page)
        assert console == [], page
        for target in local_targets(root, page):
            assert target.is_file() and moved.resolve() in target.parents, (page, target)
        players = root.find_all("video") + root.find_all("audio")
        assert body(root)["data-media-loaded"] == f"{len(players)}/{len(players)}", page


def test_media_are_linked_or_copied_and_a_rerun_prunes(bench_fixtures, tmp_path: Path,
                                                       monkeypatch) -> None:
    out = build_comparison(bench_fixtures, tmp_path)
    index = write_report(out)
    media = index.parent / "media"
    video = media / "pred" / "ours" / f"{I0}.mp4"
    assert os.path.samefile(video, bench_fixtures.pred / f"{I0}.mp4")  # a hard link
    photo = media / "refs" / I2 / "photo-1.jpg"
    from PIL import Image

    with Image.open(photo) as im:
        assert max(im.size) <= 256
    assert sorted(p.name for p in (media / "refs" / I2).iterdir()) == [
        "photo-1.jpg", "photo-2.jpg", "voice-1.wav", "voice-2.wav"]

    # another filesystem: copies; an instance dropped from the comparison: its files go
    def no_links(*_a, **_k):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    shutil.rmtree(media / "pred" / "ours")
    inst = pd.read_parquet(out / "instances.parquet")
    write_manifest(inst[inst.instance_id != I3], "bench_instances", out / "instances.parquet")
    write_report(out)
    assert video.is_file() and not os.path.samefile(video, bench_fixtures.pred / f"{I0}.mp4")
    assert video.read_bytes() == (bench_fixtures.pred / f"{I0}.mp4").read_bytes()
    assert not (index.parent / "instances" / f"{I3}.html").exists()
    assert not (media / "refs" / I3).exists() and not (media / "pred" / "ours" / f"{I3}.mp4"
                                                       ).exists()
    assert (index.parent / "tables" / "table2.md").is_file()


def test_a_broken_comparison_still_renders(bench_fixtures, tmp_path: Path, chromium) -> None:
    out = build_comparison(bench_fixtures, tmp_path)
    (out / "cells.parquet").write_bytes(b"not parquet")
    (out / "results.parquet").unlink()
    (out / "turns.parquet").unlink()
    summary = json.loads((out / "summary.json").read_text())
    del summary["details"]["outputs"]
    (out / "summary.json").write_text(json.dumps(summary))
    index = write_report(out)
    _, root, console = load(chromium, index)
    assert console == []
    problems = root.one(data_testid="problems").text()
    assert "cells.parquet: unreadable" in problems and "results.parquet is absent" in problems
    assert root.one(data_testid="tables-note").text().startswith("cells.parquet is unreadable")
    assert len(root.find_all("a", data_testid="instance-card")) == 4
    _, page, console = load(chromium, index.parent / "instances" / f"{I2}.html")
    assert console == [] and page.find_all("mark", data_testid="speech-span")
    assert body(page)["data-media-failed"] == "0"

    (out / "summary.json").unlink()  # no models known: no videos, still a page
    index = write_report(out)
    _, root, console = load(chromium, index)
    assert console == [] and "summary.json is absent" in root.one(data_testid="problems").text()
    assert not list((index.parent / "media").glob("pred/*/*.mp4"))


def test_hostile_instance_ids_get_safe_stable_names() -> None:
    assert file_name("oneip_3") == "oneip_3"
    odd = file_name("../x y#?<b>")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", odd) and not odd.startswith(".")
    assert odd == file_name("../x y#?<b>") and odd != file_name("../x y#?<i>")
