"""The cross-pair report on a synthetic run folder (real manifest writer, real WAVs, a
``summary.json`` of the common job shape with cross-pair's figures in ``details``), loaded in
headless Chromium; and the same folder with an older summary. The report of a real run is
checked by test_crosspair_dag.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from omni_core.manifests import (
    CROSSPAIR_SOURCES,
    ERRORS,
    IDENTITY_MATCHES,
    SAMPLES,
    VOICES,
    write_manifest,
)
from pipelines.crosspair.report import SECTIONS, write_report

HOSTILE = "<script>document.body.dataset.pwned='yes'</script>"
VOICE_STEPS = ["labels", "prompt", "clone", "enhance", "check"]


def summary(out: Path) -> dict:
    from conftest import job_summary, stage_entry

    return job_summary(
        "crosspair",
        [stage_entry("retrieval", 6, 5, 0, 1.5, 3.0),
         stage_entry("voices", 4, 3, 1, 20.0, 5.0, actors=2, steps=[
             ("labels", 4, 4, 0, 0.5), ("prompt", 4, 4, 0, 1.0), ("clone", 4, 4, 0, 14.0),
             ("enhance", 4, 4, 0, 0.0), ("check", 4, 3, 1, 4.5)]),
         stage_entry("samples", 5, 3, 0, 0.5)],
        out=str(out), items={"total": 6, "done": 6, "skipped": 0, "failed": 0},
        timing={"wall_s": 9.5, "compute_s": 22.0, "setup_s": 8.0},
        errors_by_stage={"check": 1},
        counts={"identity_matches": 5, "voices": 4, "samples": 3, "errors": 1},
        details={"runs": ["/runs/inpair-a", "/runs/inpair-b"], "inpair_samples": 6,
                 "sources": {"sample": 3, "no_match": 2, "no_voice": 1},
                 "retrieval": {"queries": 3, "verified": 3, "refused": 2},
                 "voices": {"cloned": 4, "checked": 4, "passed": 3,
                            "similarity_pass_rate": 0.75, "wer_pass_rate": None,
                            "min_similarity": 0.5, "max_wer": None},
                 "stage3_tasks": {"r2av": 1, "rv2av": 1, "ra2v": 1}})


@pytest.fixture
def crosspair_run(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    write_manifest(IDENTITY_MATCHES.dummy(
        5, query_identity_id=["q0", "q0", "q1", "q2", "q2"], cosine=[0.95, 0.91, 0.97, 0.94, 0.7],
        verified=[True, False, True, True, False],
        reason=[None, "margin 0.01 < 0.02", None, None, "margin 0.005 < 0.02"]),
        "identity_matches", out / "identity_matches.parquet")
    (out / "voices").mkdir()
    paths = []
    for i in range(4):
        rel = f"voices/v{i}.wav"
        t = np.arange(16000) / 16000
        sf.write(out / rel, (0.4 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32),
                 16000)
        paths.append(rel if i < 3 else None)
    write_manifest(VOICES.dummy(
        4, voice_id=[f"v{i}" for i in range(4)], backend="espeak", path=paths,
        text=["one", "two", "three", f"four {HOSTILE}"], similarity=[0.8, 0.7, 0.6, 0.2],
        wer=None, transcript=None, passed=[True, True, True, False],
        reason=[None, None, None, "similarity 0.20 < 0.50"]), "voices", out / "voices.parquet")
    write_manifest(CROSSPAIR_SOURCES.dummy(
        6, status=["sample", "sample", "sample", "no_match", "no_match", "no_voice"],
        reason=[None, None, None, "no verified face", "no verified face", "clone failed"]),
        "crosspair_sources", out / "crosspair_sources.parquet")
    write_manifest(SAMPLES.dummy(3), "samples", out / "samples.parquet")
    (out / "stage3").mkdir()
    write_manifest(SAMPLES.dummy(3, task=["r2av", "rv2av", "ra2v"]), "samples",
                   out / "stage3" / "samples.parquet")
    write_manifest(ERRORS.dummy(1, item="v3", stage="check", error_type="CheckError",
                                reason=f"bad clone {HOSTILE}"), "errors", out / "errors.parquet")
    (out / "score.json").write_text(json.dumps({"retrieval": {
        "precision": 1.0, "recall": 0.75, "correct": 3, "matches": 3, "found": 3,
        "positives": 4}}))
    (out / "summary.json").write_text(json.dumps(summary(out)))
    return out


def test_crosspair_report_renders_in_chromium(crosspair_run: Path, chromium) -> None:
    page = write_report(crosspair_run)
    assert page == crosspair_run / "report.html"
    dom, root = chromium.dom(page)
    assert "data-pwned" not in dom and len(root.find_all("script")) == 1
    for testid in SECTIONS:
        assert len(root.find_all("section", data_testid=testid)) == 1, testid

    header = root.one("section", data_testid="header")
    assert header.one(data_testid="fact-runs").text() == "/runs/inpair-a, /runs/inpair-b"
    assert header.one(data_testid="fact-samples").text() == "6"
    assert header.one(data_testid="fact-wall").text() == "9.50 s"
    assert header.one("tr", data_table="stage3/samples").find_all("td")[1].text() == "3"

    stages = [r.attrs["data-stage"] for r in root.find_all("tr", data_testid="stage-row")]
    assert stages == ["retrieval", "voices", "samples"]
    steps = root.find_all("tr", data_testid="step-row", data_stage="voices")
    assert [r.attrs["data-step"] for r in steps] == VOICE_STEPS
    group = root.one(data_testid="error-group")
    assert group.attrs["data-stage"] == "check" and "voices › check: 1" in group.text()
    assert HOSTILE in group.text()

    retrieval = root.one("section", data_testid="retrieval")
    assert "precision 1 (3/3" in retrieval.one(data_testid="retrieval-score").text()
    assert "3 verified match(es)" in retrieval.text() and "2 refused" in retrieval.text()
    cos = retrieval.one("svg", data_testid="cosine-hist").find_all("rect")
    assert sum(int(r.attrs["data-count"]) for r in cos) == 5

    rates = root.one(data_testid="voice-rates").text()
    assert rates.startswith("4 voice(s) cloned, 3 passed (of 4 checked)")
    assert "pass rate 75%" in rates and "words not checked" in rates
    assert len(root.find_all("svg", data_testid="waveform")) == 3  # the failed clone has none
    voices = root.one("section", data_testid="voices")
    assert HOSTILE in voices.text() and "similarity 0.20 < 0.50" in voices.text()

    samples = root.one("section", data_testid="samples")
    assert {r.attrs["data-status"]: r.find_all("td")[1].text()
            for r in samples.find_all("tr") if "data-status" in r.attrs} == {
        "no_match": "2", "no_voice": "1", "sample": "3"}
    assert [r.find_all("td")[1].text() for r in samples.find_all("tr", data_task="rv2av")] \
        == ["1"]
    assert root.one("section", data_testid="provenance").one(
        data_testid="fact-git-commit").text() == "3f2c1ab"


def test_crosspair_report_of_an_older_summary(crosspair_run: Path) -> None:
    """The summary cross-pair wrote before the common shape (figures at the top level): the
    page is written, says why stages are missing, and the tables still speak."""
    (crosspair_run / "summary.json").write_text(json.dumps({
        "runs": ["/runs/x"], "inpair_samples": 6, "voices": {"similarity_pass_rate": 0.75},
        "stages": [{"stage": "retrieval", "seconds": 1.0}], "wall_s": 9.5}))
    from conftest import parse_html

    root = parse_html(write_report(crosspair_run).read_text())
    assert "older or unknown shape" in root.one("section", data_testid="stages").one(
        data_testid="summary-note").text()
    assert root.one(data_testid="fact-runs").text() == "none"
    rates = root.one(data_testid="voice-rates").text()
    assert rates.startswith("4 voice(s) cloned, 3 passed") and "pass rate n/a" in rates
    assert root.one(data_testid="error-group").attrs["data-stage"] == "check"


def test_crosspair_report_without_summary_or_tables(tmp_path: Path) -> None:
    from conftest import parse_html

    out = tmp_path / "empty"
    out.mkdir()
    root = parse_html(write_report(out).read_text())
    assert "summary.json is absent" in root.one(data_testid="problems").text()
    for testid in ("retrieval", "voices", "samples", "errors"):
        assert "none" in root.one("section", data_testid=testid).text()


def test_crosspair_report_of_a_run_in_s3(crosspair_run: Path, s3, tmp_path: Path,
                                         monkeypatch) -> None:
    """A run in a bucket (a real S3 server): the tables, the stage-3 table and score.json are
    staged, and the page is uploaded next to them."""
    from conftest import parse_html

    monkeypatch.setenv("OMNI_CACHE", str(tmp_path / "cache"))
    url = f"{s3.bucket()}/runs/cross"
    s3.upload(crosspair_run, url)
    page = write_report(url)
    assert s3.fs().exists(url.removeprefix("s3://") + "/report.html")
    root = parse_html(page.read_text())
    assert root.one(data_testid="fact-output").text() == url
    assert root.one("tr", data_table="stage3/samples").find_all("td")[1].text() == "3"
    assert root.find_all(data_testid="retrieval-score")
    assert len(root.find_all("svg", data_testid="waveform")) == 3
