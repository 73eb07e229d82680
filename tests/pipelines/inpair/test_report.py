"""The curation report: a realistic output folder rendered, then loaded in headless Chromium.

The folder is written with the real manifest writer, real PNG crops (skimage's astronaut), real
WAVs (soundfile) and caption JSON files; the assertions read the DOM Chromium dumps after the
page's load handler ran.
"""

from __future__ import annotations

import base64
import html.parser
import io
import json
import shutil
import subprocess
from dataclasses import dataclass, field
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
from pipelines.inpair.report import (
    SECTIONS,
    ReportOptions,
    histogram_bins,
    waveform_envelope,
    write_report,
)

STAGES = ("prepare", "cut", "audio", "faces", "associate", "references", "caption", "finish")
INJECT = "<script>document.body.dataset.pwned='yes'</script>"
IMG_INJECT = '<img src="data:," data-testid="injected">'

# ----------------------------------------------------------------------------- a tiny DOM


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [n for n in self.iter() if (tag is None or n.tag == tag)
                and all(n.attrs.get(k) == v for k, v in want.items())]

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"expected one {tag} {attrs}, found {len(found)}"
        return found[0]


VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class _Builder(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(dom: str) -> Node:
    b = _Builder()
    b.feed(dom)
    b.close()
    return b.root


def chromium_dom(page: Path, tmp_path: Path) -> tuple[str, Node]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed; scripts/setup.sh installs it")
    res = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
         "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "<body" in res.stdout, res.stderr[-2000:]
    return res.stdout, parse(res.stdout)


# ----------------------------------------------------------------------------- a run's output


def stage(name, n_in, n_out, failed, seconds):
    return {"stage": name, "in": n_in, "out": n_out, "failed": failed, "seconds": seconds}


def write_summary(out: Path, counts: dict[str, int], stages: list[dict], errors: dict[str, int],
                  inputs: int, wall: float) -> None:
    (out / "summary.json").write_text(json.dumps({
        "inputs": inputs, "skipped_inputs": 0, "counts": counts, "errors_by_stage": errors,
        "stage_seconds": {s["stage"]: s["seconds"] for s in stages}, "wall_s": wall,
        "stages": stages}))


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
    stages = [stage("prepare", 4, 2, 2, 1.25), stage("cut", 2, 6, 0, 3.5),
              stage("audio", 6, 5, 1, 12.0), stage("faces", 5, 4, 0, 2.5),
              stage("associate", 4, 3, 0, 0.75), stage("references", 3, 3, 0, 0.5),
              stage("caption", 3, 3, 0, 0.25), stage("finish", 6, 6, 0, 0.1)]
    write_summary(out, counts, stages, {"prepare": 2, "audio": 1}, inputs=4, wall=17.5)
    return out


# ----------------------------------------------------------------------------- tests


def test_report_of_a_full_run_renders_in_chromium(full_run: Path, tmp_path: Path) -> None:
    page = write_report(full_run)
    assert page == full_run / "report.html"
    raw = page.read_text()
    assert "http://" not in raw.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in raw and "<link" not in raw
    assert len(raw) < 200_000  # thumbnails, not the full crops
    dom, root = chromium_dom(page, tmp_path)
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
            assert max(im.size) <= ReportOptions().thumb_px
    for testid in SECTIONS:
        assert len(root.find_all("section", data_testid=testid)) == 1, testid

    # header
    header = root.one("section", data_testid="header")
    assert header.one(data_testid="fact-inputs").text() == "4"
    assert header.one(data_testid="fact-wall").text() == "17.5 s"
    assert "7" in header.one("tr", data_table="references").text()

    # stages, errors
    rows = root.find_all("tr", data_testid="stage-row")
    assert [r.attrs["data-stage"] for r in rows] == list(STAGES)
    audio = [c.text() for c in root.one("tr", data_stage="audio").find_all("td")]
    assert audio == ["audio", "6", "5", "1", "12.00"]
    prepare = [c.text() for c in root.one("tr", data_stage="prepare").find_all("td")]
    assert prepare == ["prepare", "4", "2", "2", "1.25"]
    groups = root.find_all(data_testid="error-group")
    assert [(g.attrs["data-stage"], g.attrs["data-count"]) for g in groups] == [
        ("prepare", "2"), ("audio", "1")]
    assert "no video stream" in groups[0].text() and "b.mp4" in groups[0].text()
    assert IMG_INJECT in groups[1].text()  # shown as text, not as an element

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
    assert len(dur) == ReportOptions().hist_bins
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


def test_report_of_a_run_where_every_input_failed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_manifest(VIDEOS.empty(), "videos", out / "videos.parquet")
    errs = ERRORS.dummy(3, item=["x.mp4", "y.mp4", "z.txt"], stage="prepare",
                        error_type="MediaError", reason="not a media file")
    write_manifest(errs, "errors", out / "errors.parquet")
    stages = [stage("prepare", 3, 0, 3, 0.4)] + [stage(s, 0, 0, 0, 0.0) for s in STAGES[1:]]
    write_summary(out, {"videos": 0, "errors": 3}, stages, {"prepare": 3}, inputs=3, wall=1.2)
    page = write_report(out, ReportOptions(n_captions=5))
    _, root = chromium_dom(page, tmp_path)
    assert root.one("body").attrs.get("data-images-loaded") == "0/0"
    for testid in SECTIONS:
        assert len(root.find_all("section", data_testid=testid)) == 1, testid
    group = root.one(data_testid="error-group")
    assert (group.attrs["data-stage"], group.attrs["data-count"]) == ("prepare", "3")
    for testid in ("filters", "histograms", "contact-sheet", "captions"):
        assert "none" in root.one("section", data_testid=testid).text()
    assert not root.find_all("svg")
    assert "absent" in root.one("tr", data_table="clips").text()


def test_report_survives_a_missing_summary_and_a_corrupt_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "clips.parquet").write_bytes(b"not parquet")
    html_text = write_report(out).read_text()
    assert "summary.json is absent" in html_text
    assert "clips: unreadable" in html_text


def test_helpers() -> None:
    bins = histogram_bins([0, 1, 1, 3], integer=True)
    assert [(b.lo, b.count) for b in bins] == [(0, 1), (1, 2), (2, 0), (3, 1)]
    bins = histogram_bins([1.0, 2.0, float("nan"), None, 3.0], bins=4)
    assert len(bins) == 4 and sum(b.count for b in bins) == 3
    assert histogram_bins([5.0, 5.0])[0].count == 2 and histogram_bins([]) == []
    # every clip is clip_frames / fps long: equal up to float rounding is one bin
    same = histogram_bins([121 / 24, 5.041666666666667, 5.0416666666666661])
    assert len(same) == 1 and same[0].count == 3
    lo, hi = waveform_envelope(np.sin(np.linspace(0, 20, 16000)), 200)
    assert len(lo) == len(hi) == 200 and (lo <= hi).all() and hi.max() > 0.99
