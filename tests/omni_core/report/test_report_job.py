"""The job sections of the report kit (omni_core.report.job) on summaries of the common shape,
of older shapes and of hostile content; and one whole page through headless Chromium.

The summaries come from tests/conftest.py's ``job_summary`` (the shape every batch job writes);
error rows from the real ``errors`` schema, so the section reads what the jobs write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from omni_core.manifests import ERRORS, write_manifest
from omni_core.report import (
    ReportOptions,
    SummaryView,
    errors_section,
    job_facts,
    load_run,
    page,
    parse_summary_view,
    provenance_section,
    read_summary_view,
    rows_per_table,
    section,
    stages_section,
    write_page,
)

HOSTILE = "<script>document.body.dataset.pwned='yes'</script>"
IMG = '<img src="data:," data-testid="injected">'


def crosspair_like() -> dict:
    """A two-stage job, the second with steps (the shape of cross-pair's voices stage)."""
    from conftest import job_summary, stage_entry

    return job_summary("crosspair", [
        stage_entry("retrieval", 6, 3, 0, 1.5, 4.0),
        stage_entry("voices", 4, 3, 1, 20.0, 6.0, actors=2, steps=[
            ("labels", 4, 4, 0, 0.5), ("prompt", 4, 4, 0, 1.0), ("clone", 4, 4, 0, 15.0),
            ("enhance", 4, 4, 0, 0.0), ("check", 4, 3, 1, 3.5)]),
        stage_entry("samples", 3, 3, 0, 0.25)],
        timing={"wall_s": 12.0, "compute_s": 21.75, "setup_s": 10.0},
        errors_by_stage={"check": 1})


def errors_frame(items, stages, reasons) -> pd.DataFrame:
    n = len(items)
    return ERRORS.dummy(n, item=items, stage=stages, error_type="ValueError", reason=reasons)


def dom(html_text: str):
    from conftest import parse_html

    return parse_html(html_text)


# ----------------------------------------------------------------------------- reading


def test_read_summary_never_raises(tmp_path: Path) -> None:
    assert read_summary_view(tmp_path).problem == "summary.json is absent"
    (tmp_path / "summary.json").write_text("{not json")
    assert read_summary_view(tmp_path).problem.startswith("summary.json is unreadable")
    (tmp_path / "summary.json").write_text("[1, 2]")
    view = read_summary_view(tmp_path / "summary.json")
    assert view.problem == "summary.json is not a JSON object"
    (tmp_path / "summary.json").write_text(json.dumps({"inputs": 3, "wall_s": 1.0}))
    old = read_summary_view(tmp_path)
    assert "older or unknown shape" in old.problem and "job, items, stages, timing" in old.problem
    assert old.stages == [] and old.items["total"] is None and old.details == {}
    (tmp_path / "summary.json").write_text(json.dumps(crosspair_like()))
    s = read_summary_view(tmp_path)
    assert s.ok and s.job == "crosspair" and s.items["total"] == 6
    assert [st.name for st in s.stages] == ["retrieval", "voices", "samples"]
    assert [x.name for x in s.stages[1].steps] == ["labels", "prompt", "clone", "enhance",
                                                   "check"]
    assert s.order()[:3] == ["retrieval", "voices", "labels"]
    assert s.parent("check") == "voices" and s.parent("voices") is None


@pytest.mark.parametrize("bad", [None, "x", 3, [1], {"a": "b"}, float("nan"), True])
def test_fields_of_the_wrong_type_render_as_none(bad) -> None:
    """Any top-level field (and any stage or step field) of the wrong type: no exception,
    and the figure shows as a dash or "none"."""
    base = crosspair_like()
    for key in list(base):
        s = parse_summary_view({**base, key: bad})
        html = (stages_section(s) + errors_section(s, None) + provenance_section(s)
                + str(job_facts(s)))
        assert "<section" in html
    broken = {**base, "stages": [bad, {"stage": bad, "in": bad, "steps": [bad, {"step": bad}]}]}
    html = stages_section(parse_summary_view(broken))
    assert 'data-testid="stage-row"' in html


# ----------------------------------------------------------------------------- stages


def test_stages_table_has_each_step_under_its_stage() -> None:
    root = dom(stages_section(parse_summary_view(crosspair_like())))
    table = root.one("table", data_testid="stages-table")
    names = [(r.attrs["data-testid"], r.attrs.get("data-step", r.attrs.get("data-stage")))
             for r in table.find_all("tr") if r.attrs.get("data-testid") in ("stage-row",
                                                                              "step-row")]
    assert names == [("stage-row", "retrieval"), ("stage-row", "voices"),
                     ("step-row", "labels"), ("step-row", "prompt"), ("step-row", "clone"),
                     ("step-row", "enhance"), ("step-row", "check"), ("stage-row", "samples")]
    check = root.one("tr", data_step="check")
    assert check.attrs["data-stage"] == "voices" and check.attrs["class"] == "step"
    assert [c.text() for c in check.find_all("td")] == ["check", "4", "3", "1", "3.50", "", ""]
    voices = root.one("tr", data_testid="stage-row", data_stage="voices")
    assert [c.text() for c in voices.find_all("td")] == ["voices", "4", "3", "1", "20.00",
                                                         "6.00", "2"]
    total = [c.text() for c in root.one("tr", data_testid="stages-total").find_all("td")]
    assert total == ["all stages", "", "", "1", "21.75", "10.00", "4"]
    # wall vs compute vs setup
    assert root.one(data_testid="fact-timing-wall").text() == "12.00 s"
    assert root.one(data_testid="fact-timing-compute").text() == "21.75 s (1.81 × wall)"
    assert root.one(data_testid="fact-timing-setup").text() == "10.00 s (31% of actor time)"
    # one bar per step, one per stage without steps, in table order
    bars = root.one("svg", data_testid="step-seconds").find_all("rect")
    assert [(b.attrs["data-label"], float(b.attrs["data-value"])) for b in bars] == [
        ("retrieval", 1.5), ("voices › labels", 0.5), ("voices › prompt", 1.0),
        ("voices › clone", 15.0), ("voices › enhance", 0.0), ("voices › check", 3.5),
        ("samples", 0.25)]
    widths = {b.attrs["data-label"]: float(b.attrs["width"]) for b in bars}
    assert widths["voices › clone"] == max(widths.values()) and widths["voices › enhance"] == 0


def test_stages_of_an_old_or_missing_summary_say_why() -> None:
    for s in (SummaryView({}, "summary.json is absent"),
              parse_summary_view({"stage_seconds": {"a": 1.0}, "wall_s": 3.0})):
        root = dom(stages_section(s))
        assert root.one(data_testid="summary-note").text() == s.problem
        assert not root.find_all("table")
    assert "none" in stages_section(parse_summary_view({**crosspair_like(), "stages": []}))


def test_job_facts() -> None:
    facts = {k: v for k, _, v in job_facts(parse_summary_view(crosspair_like()), items="inputs")}
    assert facts["items"] == "6" and facts["failed"] == "1" and facts["wall"] == "12 s"
    assert facts["job"] == "crosspair" and facts["skipped"] == "0"
    facts = {k: v for k, _, v in job_facts(SummaryView({}, "absent"))}
    assert facts["items"] == facts["wall"] == facts["job"] == "none"


# ----------------------------------------------------------------------------- errors


def test_errors_are_escaped_grouped_by_step_and_truncated() -> None:
    items = [f"{HOSTILE}{i}.mp4" for i in range(7)] + ["clip1", "clip2"]
    stages = ["check"] * 7 + ["retrieval", "weird"]
    reasons = [f"reason {i % 4} {IMG}" for i in range(7)] + ["no face", HOSTILE]
    opts = ReportOptions(examples=1, max_reason_groups=3, max_error_rows=5)
    html = errors_section(parse_summary_view(crosspair_like()),
                          errors_frame(items, stages, reasons), opts)
    assert "<script>" not in html and "<img" not in html
    root = dom(html)
    assert not root.find_all("script") and not root.find_all(data_testid="injected")
    groups = root.find_all(data_testid="error-group")
    # job order (retrieval, then voices' step check), unknown names after
    assert [(g.attrs["data-stage"], g.attrs["data-count"]) for g in groups] == [
        ("retrieval", "1"), ("check", "7"), ("weird", "1")]
    check = groups[1]
    assert "voices › check: 7" in check.text()
    assert IMG in check.text() and HOSTILE + "0.mp4" in check.text()  # as text
    assert "+1 more" in check.text()  # each of reasons 0-2 has 2 items, 1 example shown
    assert "and 1 more reason(s), 1 error(s)" in check.text()  # 4 reasons, 3 listed
    counts = {r.attrs["data-stage"]: (r.attrs.get("data-parent"), r.find_all("td")[1].text())
              for r in root.find_all("tr", data_testid="error-count")}
    assert counts == {"retrieval": (None, "1"), "check": ("voices", "7"), "weird": (None, "1")}
    assert len(root.find_all("tr", data_testid="error-row")) == 5
    assert "showing 5 of 9 error rows (4 more not shown)" in root.one(
        data_testid="error-rows-more").text()
    # summary says check 1, the table has 7: named, not hidden
    assert "check 1 vs 7" in root.one(data_testid="errors-mismatch").text()


def test_errors_without_rows() -> None:
    s = parse_summary_view(crosspair_like())
    root = dom(errors_section(s, None, state="unreadable: bad parquet"))
    assert "unreadable: bad parquet" in root.one(data_testid="errors-note").text()
    assert root.one("tr", data_testid="error-count").attrs["data-stage"] == "check"
    ok = parse_summary_view({**crosspair_like(), "errors_by_stage": {}})
    assert "none" in errors_section(ok, ERRORS.empty())
    assert "none" in errors_section(SummaryView({}, "absent"), None)


# ----------------------------------------------------------------------------- provenance


def test_provenance_section() -> None:
    data = crosspair_like()
    prov = data["provenance"]
    prov["argv"] = ["omni", "curate", HOSTILE]
    prov["inputs"] = [f"/data/{i}.mp4" for i in range(30)]
    prov["config"] = {"note": HOSTILE + "</pre></details>" + IMG}
    prov["weights"]["checkpoints"].append(
        {"entry": "arcface", "file": None, "path": f"/w/{IMG}.onnx", "size": 3 * 1024 ** 3,
         "mtime": "yesterday", "sha256": None})
    html = provenance_section(parse_summary_view(data), ReportOptions(max_list=10))
    assert "<script>" not in html and "<img" not in html
    root = dom(html)
    assert root.one(data_testid="fact-suite-version").text() == "0.1.0"
    assert root.one(data_testid="fact-git-commit").text() == "3f2c1ab"
    assert root.one(data_testid="fact-date").text() == "2025-01-02T03:04:05Z"
    assert root.one(data_testid="fact-weights-mode").text() == "debug"
    assert root.one(data_testid="fact-result-key").text().startswith("0123")
    command = root.one(data_testid="fact-command").text()  # shell-quoted, as text
    assert command.startswith("omni curate '<script>document.body.dataset.pwned=")
    rows = root.find_all("tr", data_testid="checkpoint-row")
    assert [r.attrs["data-entry"] for r in rows] == ["whisper", "arcface"]
    whisper = [c.text() for c in rows[0].find_all("td")]
    assert whisper[:5] == ["whisper", "model.safetensors", "/w/whisper/m.st", "1.5 KiB",
                           "2023-11-14 22:13:20 UTC"]
    assert whisper[5] == "abababababababab…"
    assert rows[0].one("code").attrs["title"] == "ab" * 32
    arc = [c.text() for c in rows[1].find_all("td")]
    assert arc[2] == f"/w/{IMG}.onnx" and arc[3] == "3.0 GiB" and arc[4] == "—"
    assert arc[5] == "not hashed"
    assert len(root.one(data_testid="inputs").find_all("li")) == 10
    assert "showing 10 of 30 entries" in root.one(data_testid="inputs-more").text()
    config = root.one("details", data_testid="config")
    assert json.loads(config.one("pre").text()) == prov["config"]
    no_prov = dom(provenance_section(parse_summary_view({**data, "provenance": None})))
    assert "no provenance" in no_prov.one(data_testid="provenance-note").text()


# ----------------------------------------------------------------------------- a whole page


def test_a_job_page_renders_in_chromium(tmp_path: Path, chromium) -> None:
    """A page of only the kit's job sections over a run folder with a hostile error table: it
    loads, nothing injected runs, and its screenshot shows the table and the step chart."""
    out = tmp_path / "run"
    data = crosspair_like()
    data["counts"] = {"errors": 3, "voices": 4}
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(data))
    write_manifest(errors_frame([HOSTILE, IMG, "ok.wav"], ["check", "check", "retrieval"],
                                [IMG, HOSTILE, "fine"]), "errors", out / "errors.parquet")
    run = load_run(out, ["errors", "voices"])
    assert run.state == {"errors": "ok", "voices": "absent"} and not run.problems
    html = page("job page", [
        section("header", "A job", rows_per_table(run, ["errors", "voices"])),
        stages_section(run.summary), errors_section(run.summary, run.tables["errors"]),
        provenance_section(run.summary)])
    path = write_page(run, html)
    assert path == out / "report.html"
    text, root = chromium.dom(path)
    assert "data-pwned" not in text and not root.find_all(data_testid="injected")
    assert len(root.find_all("script")) == 1
    assert root.one("body").attrs["data-images-loaded"] == "0/0"
    assert root.one("tr", data_table="voices").find_all("td")[1].text() == "4"  # counted
    assert len(root.find_all("tr", data_testid="error-row")) == 3

    from PIL import Image

    png = chromium.screenshot(path, tmp_path / "page.png", 1000, 1400)
    with Image.open(png) as im:
        rgb = im.convert("RGB")
        assert rgb.size == (1000, 1400)
        colours = {c for _, c in rgb.getcolors(maxcolors=1 << 20)}
    # the step chart's first two groups' colours (.bars .g0 / .g1) were painted
    assert (0x4A, 0x78, 0xB5) in colours and (0xD0, 0x8A, 0x2E) in colours
