"""The curation report: a realistic output folder rendered, then loaded in headless Chromium.

The folder is written with the real manifest writer, real PNG crops (skimage's astronaut), real
WAVs (soundfile), caption JSON files and a ``summary.json`` of the common job shape; the
assertions read the DOM Chromium dumps after the page's load handler ran (the ``chromium``
fixture of tests/conftest.py). The kit's own pieces are tested in tests/omni_core/report.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image
from skimage import data as skdata

from omni_core.manifests import (
    CLIPS,
    ERRORS,
    FACE_TRACKS,
    IDENTITIES,
    SAMPLES,
    SPEECH_SEGMENTS,
    VIDEOS,
    write_manifest,
)
from pipelines.inpair.caption import Segment, assemble_caption
from pipelines.inpair.report import SECTIONS, InpairOptions, write_report

STAGES = ("prepare", "audio", "visual", "caption", "finish")
STEPS = {"prepare": ["probe", "cut"], "visual": ["faces", "associate", "references"]}
INJECT = "<script>document.body.dataset.pwned='yes'</script>"
IMG_INJECT = '<img src="data:," data-testid="injected">'

# ----------------------------------------------------------------------------- a run's output


def inpair_stages(prepare_in: int = 4, prepare_failed: int = 2, clips: int = 6,
                  zero: bool = False) -> list[dict]:
    """The in-pair job's stages and steps (figures of the fixture run, or all zero)."""
    from conftest import stage_entry

    if zero:
        return [stage_entry("prepare", prepare_in, 0, prepare_failed, 0.4, steps=[
            ("probe", prepare_in, 0, prepare_failed, 0.4), ("cut", 0, 0, 0, 0.0)])] + [
            stage_entry(s, 0, 0, 0, 0.0) for s in STAGES[1:]]
    return [
        stage_entry("prepare", prepare_in, clips, prepare_failed, 4.75, 0.5, steps=[
            ("probe", prepare_in, 2, prepare_failed, 1.25), ("cut", 2, clips, 0, 3.5)]),
        stage_entry("audio", clips, 5, 1, 12.0, 2.0),
        stage_entry("visual", 5, 3, 0, 3.75, 1.0, actors=2, steps=[
            ("faces", 5, 4, 0, 2.5), ("associate", 4, 3, 0, 0.75),
            ("references", 3, 3, 0, 0.5)]),
        stage_entry("caption", 3, 3, 0, 0.25),
        stage_entry("finish", clips, clips, 0, 0.1)]


def write_summary(out: Path, counts: dict[str, int], stages: list[dict], errors: dict[str, int],
                  inputs: int, wall: float, **details) -> dict:
    """``summary.json`` of the common job shape for an in-pair run; returns it."""
    from conftest import job_summary

    data = job_summary(
        "inpair", stages, out=str(out), counts=counts, errors_by_stage=errors,
        items={"total": inputs, "done": inputs - stages[0]["failed"], "skipped": 0,
               "failed": stages[0]["failed"]},
        timing={"wall_s": wall, "compute_s": sum(s["compute_s"] for s in stages),
                "setup_s": sum(s["setup_s"] for s in stages)},
        details={"filters": {}, "max_decodes_per_clip": {"audio": 1, "video": 2}, **details})
    (out / "summary.json").write_text(json.dumps(data))
    return data


def sine_wav(path: Path, freq: float, seconds: float, sr: int = 16000) -> None:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(int(freq))
    y = 0.5 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t)) + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")


CROPS = [(slice(0, 256), slice(120, 376)), (slice(256, 512), slice(0, 256)),
         (slice(300, 500), slice(300, 500))]
DURATIONS = [4.0, 6.5, 3.0, 9.0, 2.5, 5.0]
STATUSES = ["sample", "sample", "sample", "no_speech", "no_faces", "filtered"]
REASONS = [None, None, None, "no words from any speaker", "no face track passed <b>filters</b>",
           "best sync 0.80 < floor 1.50"]
N_SPEAKERS = [1, 2, 1, 0, 1, 3]
BEST_SYNC = [6.2, 4.1, 5.5, None, None, 0.8]
FACE_PX = [180.0, 150.0, 40.0, 30.0, 220.0]
REJECTS = [None, None, "small_face 40px < 64px; blurred sharpness 12.0 < 50.0",
           "small_face 30px < 64px; short_track 5 frames < 12", None]


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    vids = VIDEOS.dummy(2)
    write_manifest(vids, "videos", out / "videos.parquet")

    clips = CLIPS.dummy(6, clip_id=[f"clip{i}" for i in range(6)], video_id="video_id-0000",
                        start_s=10.0, end_s=[10.0 + d for d in DURATIONS], status=STATUSES,
                        status_reason=REASONS, n_speakers=N_SPEAKERS, best_sync=BEST_SYNC,
                        n_faces=[1, 2, 1, 1, 0, 3],
                        path=[f"clips/v0/clip{i}.mp4" for i in range(6)])
    write_manifest(clips, "clips", out / "clips.parquet")
    write_manifest(SPEECH_SEGMENTS.dummy(3, clip_id="clip0", start_s=0.5, end_s=2.5),
                   "speech_segments", out / "speech_segments.parquet")
    tracks = FACE_TRACKS.dummy(5, clip_id="clip0", min_face_px=FACE_PX,
                               passed=[r is None for r in REJECTS], reject_reason=REJECTS)
    write_manifest(tracks, "face_tracks", out / "face_tracks.parquet")
    idents = IDENTITIES.dummy(4, identity_id=[f"id{i}" for i in range(4)],
                              speaker=[f"SPEAKER_0{i}" for i in range(4)],
                              sync_confidence=[6.2, 4.1, 3.9, 5.5])
    write_manifest(idents, "identities", out / "identities.parquet")

    astro = skdata.astronaut()
    refs = []
    for i in range(4):  # id0..id2: crop + voice; id3: voice only
        if i < 3:
            rel = f"references/id{i}.png"
            (out / "references").mkdir(exist_ok=True)
            rows, cols = CROPS[i]
            Image.fromarray(astro[rows, cols]).save(out / rel)
            refs.append({"reference_id": f"r{i}i", "identity_id": f"id{i}", "kind": "image",
                         "path": rel, "source_clip_id": "clip0", "frame_index": 12 + i,
                         "box": [10.0, 20.0, 110.0, 140.0], "start_s": None, "end_s": None,
                         "augment": None})
        rel = f"references/id{i}.wav"
        sine_wav(out / rel, 220.0 + 110 * i, 2.0)
        refs.append({"reference_id": f"r{i}a", "identity_id": f"id{i}", "kind": "audio",
                     "path": rel, "source_clip_id": "clip0", "frame_index": None, "box": None,
                     "start_s": 0.5, "end_s": 2.5, "augment": None})
    write_manifest(pd.DataFrame(refs), "references", out / "references.parquet")

    cap, flags = assemble_caption(["SPEAKER_00"], [Segment("SPEAKER_00", 0.5, 2.5,
                                                           f"hello {INJECT} there")])
    (out / "captions").mkdir()
    for i in range(2):  # sample 2's caption file is missing
        (out / f"captions/clip{i}.json").write_text(json.dumps({
            "clip_id": f"clip{i}", "subjects": [{"anchor": "<sub1>", "speaker": "SPEAKER_00",
                                                 "identity_id": f"id{i}"}],
            "caption": cap.render(), "flags": flags + [f"flag_{i}"], "vlm": None}))
    samples = SAMPLES.dummy(3, sample_id=[f"s{i}" for i in range(3)],
                            clip_id=[f"clip{i}" for i in range(3)],
                            caption_path=[f"captions/clip{i}.json" for i in range(3)])
    write_manifest(samples, "samples", out / "samples.parquet")

    errs = ERRORS.dummy(3, item=["a.mp4", "b.mp4", "clip9"], stage=["prepare", "prepare", "audio"],
                        error_type=["MediaError", "MediaError", "RuntimeError"],
                        reason=["no video stream", "no video stream", f"asr failed {IMG_INJECT}"])
    write_manifest(errs, "errors", out / "errors.parquet")
    counts = {"videos": 2, "clips": 6, "speech_segments": 3, "face_tracks": 5, "identities": 4,
              "references": 7, "samples": 3, "errors": 3}
    write_summary(out, counts, inpair_stages(), {"prepare": 2, "audio": 1}, inputs=4,
                  wall=17.5, filters={"sample": 3, "no_speech": 1, "no_faces": 1,
                                      "filtered": 1})
    return out


# ----------------------------------------------------------------------------- tests


def test_report_of_a_full_run_renders_in_chromium(full_run: Path, chromium) -> None:
    page = write_report(full_run)
    assert page == full_run / "report.html"
    raw = page.read_text()
    assert "http://" not in raw.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in raw and "<link" not in raw
    assert len(raw) < 200_000  # thumbnails, not the full crops
    dom, root = chromium.dom(page)
    body = root.one("body")

    # every embedded image decoded: the three identity crops, nothing injected
    assert body.attrs.get("data-images-loaded") == "3/3", body.attrs
    assert not root.find_all(data_testid="injected")
    crops = root.find_all("img", data_testid="identity-crop")
    assert len(crops) == 3
    for img in crops:
        src = img.attrs["src"]
        assert src.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert max(im.size) <= InpairOptions().thumb_px
    for testid in SECTIONS:
        assert len(root.find_all("section", data_testid=testid)) == 1, testid
    fact_ids = [n.attrs["data-testid"] for n in root.find_all("dd")]
    assert len(fact_ids) == len(set(fact_ids))  # each fact found by its own hook

    # header: the job's items are the inputs
    header = root.one("section", data_testid="header")
    assert header.one(data_testid="fact-items").text() == "4"
    assert header.one(data_testid="fact-wall").text() == "17.5 s"
    assert header.one(data_testid="fact-job").text() == "inpair"
    assert header.one(data_testid="fact-decodes").text() == "audio 1, video 2"
    assert "7" in header.one("tr", data_table="references").text()
    assert not header.find_all(data_testid="problems")

    # stages with their steps, errors
    rows = root.find_all("tr", data_testid="stage-row")
    assert [r.attrs["data-stage"] for r in rows] == list(STAGES)
    for stage_name, steps in STEPS.items():
        got = root.find_all("tr", data_testid="step-row", data_stage=stage_name)
        assert [r.attrs["data-step"] for r in got] == steps
    table = root.one("table", data_testid="stages-table")
    order = [r.attrs.get("data-step", r.attrs.get("data-stage")) for r in table.find_all("tr")
             if r.attrs.get("data-testid") in ("stage-row", "step-row")]
    assert order == ["prepare", "probe", "cut", "audio", "visual", "faces", "associate",
                     "references", "caption", "finish"]  # each step right under its stage
    audio = [c.text() for c in root.one("tr", data_testid="stage-row",
                                        data_stage="audio").find_all("td")]
    assert audio == ["audio", "6", "5", "1", "12.00", "2.00", "1"]
    prepare = [c.text() for c in root.one("tr", data_testid="stage-row",
                                          data_stage="prepare").find_all("td")]
    assert prepare == ["prepare", "4", "6", "2", "4.75", "0.50", "1"]
    probe = [c.text() for c in root.one("tr", data_step="probe").find_all("td")]
    assert probe[:5] == ["probe", "4", "2", "2", "1.25"]
    bars = root.one("svg", data_testid="step-seconds").find_all("rect")
    assert len(bars) == 8  # 5 steps + the 3 stages without steps
    assert {b.attrs["data-label"]: float(b.attrs["data-value"]) for b in bars}[
        "prepare › cut"] == 3.5
    groups = root.find_all(data_testid="error-group")
    assert [(g.attrs["data-stage"], g.attrs["data-count"]) for g in groups] == [
        ("prepare", "2"), ("audio", "1")]
    assert "no video stream" in groups[0].text() and "b.mp4" in groups[0].text()
    assert IMG_INJECT in groups[1].text()  # shown as text, not as an element
    assert len(root.find_all("tr", data_testid="error-row")) == 3

    # filters
    status = {r.attrs["data-status"]: int(r.attrs["data-count"])
              for r in root.find_all("tr", data_testid="status-row")}
    assert status == {"sample": 3, "no_speech": 1, "no_faces": 1, "unmatched": 0,
                      "filtered": 1, "ambiguous": 0, "no_reference": 0}
    no_faces = root.one("tr", data_status="no_faces")
    assert "no face track passed <b>filters</b>" in no_faces.text()
    assert not no_faces.find_all("b")
    rejects = {r.attrs["data-kind"]: int(r.attrs["data-count"])
               for r in root.find_all("tr", data_testid="reject-row")}
    assert rejects == {"small_face": 2, "blurred": 1, "short_track": 1}
    assert "3 of 5 track(s) passed" in root.one(data_testid="tracks-passed").text()

    # histograms: 12 duration bins over 6 clips; speakers 0..3 -> 4 bars
    dur = root.one("svg", data_testid="hist-duration").find_all("rect")
    assert len(dur) == InpairOptions().hist_bins
    assert sum(int(r.attrs["data-count"]) for r in dur) == len(DURATIONS)
    spk = root.one("svg", data_testid="hist-speakers").find_all("rect")
    assert [int(r.attrs["data-count"]) for r in spk] == [1, 3, 1, 1]
    spk_text = root.one("svg", data_testid="hist-speakers").text()
    assert "speakers per clip" in spk_text and "clips" in spk_text
    sync = root.one("svg", data_testid="hist-sync").find_all("rect")
    assert sum(int(r.attrs["data-count"]) for r in sync) == 4  # two clips without a score
    face = root.one("svg", data_testid="hist-face-px").find_all("rect")
    assert sum(int(r.attrs["data-count"]) for r in face) == len(FACE_PX)

    # contact sheet: 4 identities, 3 crops, 4 waveforms of 200 columns
    cards = root.find_all(data_testid="identity-card")
    assert [c.attrs["data-identity"] for c in cards] == ["id0", "id1", "id2", "id3"]
    waves = root.find_all("svg", data_testid="waveform")
    assert len(waves) == 4 and {w.attrs["data-columns"] for w in waves} == {"200"}
    assert cards[3].find_all(data_testid="identity-crop-missing")
    assert "frame 13" in cards[1].text()
    assert "0.50–2.50 s (2.00 s)" in cards[0].one(data_testid="span").text()

    # captions: escaped text in a <pre>, never executed
    assert "data-pwned" not in dom
    arts = root.find_all("article", data_testid="caption")
    assert [a.attrs["data-sample"] for a in arts] == ["s0", "s1", "s2"]
    pre = arts[0].one("pre", data_testid="caption-text")
    assert INJECT in pre.text() and not pre.find_all("script")
    assert "[CO_ANALYSIS_START]" in pre.text()
    assert "flag_0" in arts[0].one(data_testid="caption-flags").text()
    assert arts[2].find_all(data_testid="caption-missing")
    assert len(root.find_all("script")) == 1  # only the report's own

    # provenance: what produced the run
    prov = root.one("section", data_testid="provenance")
    assert prov.one(data_testid="fact-git-commit").text() == "3f2c1ab"
    assert prov.one(data_testid="fact-weights-mode").text() == "debug"
    assert prov.one("tr", data_testid="checkpoint-row").attrs["data-entry"] == "whisper"
    assert '"seed": 0' in prov.one("details", data_testid="config").text()


def test_report_of_a_run_where_every_input_failed(tmp_path: Path, chromium) -> None:
    out = tmp_path / "out"
    write_manifest(VIDEOS.empty(), "videos", out / "videos.parquet")
    errs = ERRORS.dummy(3, item=["x.mp4", "y.mp4", "z.txt"], stage="probe",
                        error_type="MediaError", reason="not a media file")
    write_manifest(errs, "errors", out / "errors.parquet")
    write_summary(out, {"videos": 0, "errors": 3}, inpair_stages(3, 3, zero=True),
                  {"probe": 3}, inputs=3, wall=1.2)
    page = write_report(out, InpairOptions(n_captions=5))
    _, root = chromium.dom(page)
    assert root.one("body").attrs.get("data-images-loaded") == "0/0"
    for testid in SECTIONS:
        assert len(root.find_all("section", data_testid=testid)) == 1, testid
    group = root.one(data_testid="error-group")
    assert (group.attrs["data-stage"], group.attrs["data-count"]) == ("probe", "3")
    assert "prepare › probe: 3" in group.text()  # the step named under its stage
    assert root.one("tr", data_testid="error-count").attrs["data-parent"] == "prepare"
    assert root.one(data_testid="fact-failed").text() == "3"
    for testid in ("filters", "histograms", "contact-sheet", "captions"):
        assert "none" in root.one("section", data_testid=testid).text()
    assert not root.find_all("svg", data_testid="hist-duration")
    assert not root.find_all("svg", data_testid="waveform")
    assert "absent" in root.one("tr", data_table="clips").text()


def test_report_survives_a_missing_summary_and_a_corrupt_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "clips.parquet").write_bytes(b"not parquet")
    html_text = write_report(out).read_text()
    assert "summary.json is absent" in html_text
    assert "clips: unreadable" in html_text


def test_report_of_an_older_summary_says_so(full_run: Path) -> None:
    """A run written before the common job summary (top-level stage_seconds, wall_s, filters)
    still gets its page: the job sections say why they are empty, the rest is all there."""
    (full_run / "summary.json").write_text(json.dumps({
        "inputs": 4, "skipped_inputs": 0, "counts": {"clips": 6}, "wall_s": 17.5,
        "stage_seconds": {"prepare": 1.0}, "stages": [{"stage": "prepare", "seconds": 1.0}],
        "filters": {"sample": 3}}))
    from conftest import parse_html

    root = parse_html(write_report(full_run).read_text())
    for testid in ("stages", "provenance"):
        sec = root.one("section", data_testid=testid)
        assert "older or unknown shape" in sec.one(data_testid="summary-note").text()
    assert "older or unknown shape" in root.one(data_testid="problems").text()
    assert len(root.find_all(data_testid="error-group")) == 2  # from the errors table
    assert len(root.find_all(data_testid="identity-card")) == 4


def test_clips_per_status_from_the_summary_when_the_table_is_broken(full_run: Path) -> None:
    (full_run / "clips.parquet").write_bytes(b"not parquet")
    from conftest import parse_html

    root = parse_html(write_report(full_run).read_text())
    status = {r.attrs["data-status"]: int(r.attrs["data-count"])
              for r in root.find_all("tr", data_testid="status-row")}
    assert status["sample"] == 3 and status["filtered"] == 1 and status["unmatched"] == 0
    assert "counts from summary.json" in root.one("section", data_testid="filters").text()
