"""The in-pair DAG end to end on real Ray, real decoders and the debug models."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omni_core.config import load_config
from omni_core.jobs.summary import KEYS as SUMMARY_KEYS
from omni_core.manifests import CLIP_STATUS
from omni_core.media import load_audio, probe, read_image
from omni_core.ray_helpers import shutdown_ray
from pipelines.inpair.config import InpairConfig
from pipelines.inpair.dag import STAGES, TABLES, list_inputs, run_inpair


@pytest.fixture(scope="module")
def inputs(sample_corpus, tmp_path_factory):
    """One talking clip of each kind that yields a clip, the broken files, an audio-only wav."""
    root = tmp_path_factory.mktemp("inpair_in")
    src = sample_corpus.out
    for name in ("talking/talk00_1p.mp4", "talking/talk03_2p.mp4"):
        shutil.copy(src / name, root / name.split("/")[1])
    shutil.copytree(src / "broken", root / "broken")
    shutil.copy(src / "recording" / "sample.wav", root / "sample.wav")
    return root


@pytest.fixture(scope="module")
def run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("inpair_out")
    cfg = load_config(InpairConfig, None, ["ray.num_cpus=2", "ray.include_dashboard=false"])
    try:
        summary = run_inpair(inputs, out, cfg, progress=False)
        first = {t: (out / f"{t}.parquet").read_bytes() for t in TABLES}
        again = run_inpair(inputs, out, cfg, progress=False)
    finally:
        shutdown_ray()
    return summary, again, out, first


def frames(out):
    return {t: pd.read_parquet(out / f"{t}.parquet") for t in TABLES}


def test_every_input_is_processed_or_an_error_row(inputs, run):
    summary, _, out, _ = run
    f = frames(out)
    every = set(list_inputs(inputs).files)
    assert summary.items["total"] == len(every) == 10
    assert set(f["videos"].path) | set(f["errors"].item) == every
    # a usable video that gives no clip is a videos row and an error row saying why
    vfr = str(inputs / "broken" / "vfr.mp4")
    assert set(f["videos"].path) & set(f["errors"].item) == {vfr}
    errors = f["errors"].set_index("item")
    assert errors.loc[vfr, "reason"].startswith("no clip: no shot holds a 5.04 s clip")
    for name in ("empty", "not_a_video", "truncated_no_moov", "truncated_faststart",
                 "no_audio", "audio_only"):
        assert errors.loc[str(inputs / "broken" / f"{name}.mp4"), "stage"] == "prepare"
    assert "no video stream" in errors.loc[str(inputs / "sample.wav"), "reason"]
    assert summary.errors_by_stage == {"prepare": 8}
    # the debug models run every stage; every clip ends with a status
    clips = f["clips"]
    assert len(clips) == 2 and clips.status.notna().all()
    assert set(clips.status) <= set(CLIP_STATUS)
    # every stage's actors booked their start-up and model loading as setup, never as
    # compute; the booking files are gone
    setup = {s["stage"]: s["setup_s"] for s in summary.stages}
    assert setup["audio"] > 0 and setup["visual"] > 0 and all(v > 0 for v in setup.values())
    assert all(s["actors"] >= 1 for s in summary.stages)
    assert not (out / "_setup").exists()
    again = run[1]  # the rerun found everything done: no actor was started
    assert again.timing["setup_s"] == 0 and again.items["skipped"] == again.items["total"]
    data = json.loads((out / "summary.json").read_text())
    assert tuple(data) == SUMMARY_KEYS and data["job"] == "inpair"
    stages = data["stages"]
    assert [r["stage"] for r in stages] == [s.name for s in STAGES]
    assert stages[0] == {**stages[0], "in": 10, "out": 2, "failed": 8}
    steps = {st["step"]: st for r in stages for st in r["steps"]}
    assert list(steps) == ["prepare", "cut", "audio", "faces", "associate", "references",
                           "caption", "finish"]
    assert all(steps[k]["in"] == 2 and steps[k]["failed"] == 0
               for k in ("cut", "audio", "faces"))
    # stage compute is the sum of its items' step times: no item counted twice
    for r in stages:
        assert r["compute_s"] == pytest.approx(sum(st["seconds"] for st in r["steps"]),
                                               abs=1e-2)
    assert data["timing"]["compute_s"] == pytest.approx(
        sum(r["compute_s"] for r in stages), abs=1e-2)
    prov = data["provenance"]
    assert prov["config"]["clip"]["fps"] == 24 and prov["weights"]["mode"] == "debug"
    assert prov["inputs"] == [str(inputs)] and prov["git_commit"]


def test_clips_are_cut_to_the_model_rate(run):
    _, _, out, _ = run
    clips = frames(out)["clips"]
    assert len(clips) == 2  # one 5.04 s clip from each ~8 s talking clip
    for row in clips.itertuples():
        info = probe(out / row.path)
        assert info.n_frames == 121 and abs(info.fps - 24.0) < 1e-6
        assert info.sample_rate == 16000 and info.channels == 1
        assert abs(row.end_s - row.start_s - 121 / 24) < 1e-6


def test_speech_segments_lie_inside_their_clips(run):
    _, _, out, _ = run
    f = frames(out)
    seg = f["speech_segments"]
    assert len(seg) and set(seg.clip_id) <= set(f["clips"].clip_id)
    assert (seg.start_s >= 0).all() and (seg.end_s <= 121 / 24 + 1 / 16000).all()  # 1 sample
    assert (seg.start_s < seg.end_s).all() and seg.segment_id.is_unique


def test_rerun_skips_everything_and_writes_the_same_manifests(run):
    summary, again, out, first = run
    assert again.items["skipped"] == again.items["total"] == summary.items["total"]
    assert again.counts == summary.counts
    for t, data in first.items():  # every table, errors included: nothing was redone
        assert (out / f"{t}.parquet").read_bytes() == data, t
    f = frames(out)
    assert f["clips"].clip_id.is_monotonic_increasing


def test_killed_run_resumes_to_the_same_manifests(inputs, run, tmp_path):
    """``kill -9`` of the whole run (driver and its Ray processes) once the first input is
    planned; the rerun finishes the rest and its manifests equal the uninterrupted run's."""
    *_, first = run
    out = tmp_path / "out"
    omni = Path(sys.executable).with_name("omni")
    proc = subprocess.Popen(
        [omni, "curate", "inpair", "--input", inputs, "--out", out, "--quiet",
         "--set", "ray.num_cpus=2", "--set", "ray.include_dashboard=false",
         "--set", "output.part_clips=1"],  # a result part per clip: some finish before
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not list(out.glob("_results/inpair/inputs/*/*.items.parquet")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "clips.parquet").exists()  # killed before the merge
    cfg = load_config(InpairConfig, None, ["ray.num_cpus=2", "ray.include_dashboard=false"])
    try:
        resumed = run_inpair(inputs, out, cfg, progress=False)
    finally:
        shutdown_ray()
    assert 0 < resumed.items["skipped"] < resumed.items["total"]  # planned ones not redone
    from conftest import assert_same_manifests

    assert_same_manifests(out, first)


def test_results_that_cannot_be_published_are_error_rows_and_a_rerun_retries_them(
        inputs, run, tmp_path):
    """Storage that refuses the finish stage's writes (here the clips' part folder is a
    file) does not stop the run: its clips become ``finish`` error rows, every input is still
    accounted for, and once the storage works a rerun finishes them, to the same manifests as
    a clean run."""
    from conftest import assert_same_manifests

    *_, first = run
    out = tmp_path / "out"
    blocker = out / "_results" / "inpair" / "clips"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    cfg = load_config(InpairConfig, None, ["ray.num_cpus=2", "ray.include_dashboard=false"])
    try:
        broken = run_inpair(inputs, out, cfg, progress=False)
        lost = frames(out)
        blocker.unlink()
        fixed = run_inpair(inputs, out, cfg, progress=False)
    finally:
        shutdown_ray()
    clean = pd.read_parquet(io.BytesIO(first["errors"]))
    finish = lost["errors"][lost["errors"].stage == "finish"]
    assert len(finish) == 2 and len(lost["clips"]) == 0  # the two talking clips
    assert finish.reason.str.contains("could not be published").all()
    assert finish.reason.str.contains("a rerun retries it").all()
    assert set(lost["errors"].item) - set(finish.item) == set(clean.item)
    assert broken.errors_by_stage == {**{"finish": 2}, **_stage_counts(clean)}
    assert fixed.items["skipped"] == 8  # the failed inputs stay done; the two are redone
    assert_same_manifests(out, first)


def _stage_counts(errors):
    return {str(k): int(v) for k, v in errors.groupby("stage").size().items()}


def test_every_entry_is_accounted_for_and_a_rerun_never_lists_its_own_output(sample_corpus,
                                                                            tmp_path):
    """``--input corpus --out corpus/out``, run twice: the rerun lists what the first run
    listed (nothing under its own output), finds it all done and starts nothing. Entries that
    cannot be inputs (a pipe, a broken symlink, a symlink loop) are error rows of step
    ``list``; a symlink to a file is an input; hidden entries are counted."""
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copy(sample_corpus.out / "talking" / "talk00_1p.mp4", root)
    (root / "notes.txt").write_text("not a video\n")
    (root / "notes-link.mp4").symlink_to("notes.txt")
    os.mkfifo(root / "pipe.mp4")  # never opened: the run would block
    (root / "gone.mp4").symlink_to("missing.mp4")
    (root / "loop.mp4").symlink_to("loop.mp4")
    (root / ".DS_Store").write_bytes(b"x")
    out = root / "out"
    cfg = load_config(InpairConfig, None, ["ray.num_cpus=2", "ray.include_dashboard=false"])
    try:
        first = run_inpair(root, out, cfg, progress=False)
        n_out = sum(1 for p in out.rglob("*") if p.is_file())
        again = run_inpair(root, out, cfg, progress=False)
    finally:
        shutdown_ray()
    inputs = {str(root / n) for n in ("talk00_1p.mp4", "notes.txt", "notes-link.mp4")}
    problems = {str(root / "pipe.mp4"): "named pipe, not a regular file",
                str(root / "gone.mp4"): "broken symlink: its target does not exist",
                str(root / "loop.mp4"): "symlink loop"}
    assert first.details["listing"] == {"inputs": 3, "not_inputs": 3, "hidden": 1,
                                        "under_output": 0}
    assert again.details["listing"] == {**first.details["listing"], "under_output": n_out}
    assert n_out > 10 and f"{n_out} files under the output folder" in "\n".join(again.lines())
    for s in (first, again):
        assert s.items["total"] == 6 and s.items["failed"] == 5
        assert s.errors_by_stage == {"list": 3, "prepare": 2}
    assert again.items["skipped"] == 3 and again.timing["setup_s"] == 0  # nothing redone
    f = frames(out)
    assert set(f["videos"].path) == {str(root / "talk00_1p.mp4")} and len(f["clips"]) == 1
    assert set(f["videos"].path) | set(f["errors"].item) == inputs | set(problems)
    listed = f["errors"][f["errors"].stage == "list"]
    assert dict(zip(listed.item, listed.reason, strict=True)) == problems
    data = json.loads((out / "summary.json").read_text())
    assert data["details"]["listing"]["under_output"] == n_out


def test_runs_as_a_ray_job_on_a_local_head(inputs, run, tmp_path, ray_head):
    """A real head on 127.0.0.1, the DAG submitted through the Job Submission API, then the
    same manifests as the embedded run."""
    from conftest import run_job

    *_, first = run
    omni = Path(sys.executable).with_name("omni")
    out = tmp_path / "out"
    logs = run_job(ray_head, [str(omni), "curate", "inpair", "--input", str(inputs), "--out",
                              str(out), "--quiet"])
    assert "inpair: 10 items (10 this run" in logs
    from conftest import assert_same_manifests

    assert_same_manifests(out, first)


# --------------------------------------------------------------------------------------------
# the whole DAG to training samples: offline backends (LBP faces, mouth-motion association),
# the annotations test double for stage 2, and a caption VLM stub on 127.0.0.1


def _vlm_answer(body: dict) -> str:
    """What a VLM would reply: one image caption per reference photo sent, tags of real
    subjects only."""
    text = json.dumps(body["messages"][1]["content"])
    n = text.count("Reference photo <img")
    return json.dumps({"image_captions": [f"a person in photo {k}" for k in range(1, n + 1)],
                       "scene": "A plain studio backdrop, frontal camera.",
                       "appearance": "<sub1> faces the camera.",
                       "actions": "<sub1> talks and then listens.",
                       "audio_description": f"{n} voice(s) in a quiet room."})


#: the caption endpoint's password in the offline run (sent as Basic auth, recorded nowhere)
PASSWORD = "PASS-7f3c9e"


def _offline_config(base_url: str) -> InpairConfig:
    return load_config(InpairConfig, None, [
        "ray.num_cpus=2", "ray.include_dashboard=false", "audio.backend=annotations",
        "faces.backend=lbp", "associate.backend=motion", f"caption.base_url={base_url}",
        "caption.model=stub-vl", "caption.max_retries=0"])


@pytest.fixture(scope="module")
def offline(sample_corpus, tmp_path_factory, chat_stub_module):
    base_url, stub = chat_stub_module
    stub["default"] = _vlm_answer
    out = tmp_path_factory.mktemp("inpair_offline")
    cfg = _offline_config(base_url.replace("http://", f"http://curator:{PASSWORD}@"))
    try:
        summary = run_inpair(sample_corpus.out / "talking", out, cfg, progress=False)
    finally:
        shutdown_ray()
    return summary, out, stub


def test_offline_backends_turn_every_talking_clip_into_a_sample(offline, sample_corpus):
    from omni_core.captions import parse_caption
    from omni_core.manifests import read_manifest

    summary, out, stub = offline
    t = {name: read_manifest(out / f"{name}.parquet", name) for name in TABLES}
    assert summary.items["total"] == 6 and len(t["errors"]) == 0
    assert (t["clips"].status == "sample").all() and len(t["samples"]) == 6
    assert len(stub["requests"]) == 6  # one caption request per sample
    run = json.loads((out / "summary.json").read_text())
    assert run["details"]["filters"] == {"sample": 6}
    # each clip's media is decoded once per stage (the VLM's 4 frames in caption)
    assert run["details"]["max_decodes_per_clip"] == {"caption video": 1, "visual audio": 1,
                                           "visual video": 1}
    refs = t["references"].set_index("reference_id")
    segs = t["speech_segments"]
    for s in t["samples"].itertuples():
        clip = t["clips"].set_index("clip_id").loc[s.clip_id]
        n = len(s.identity_ids)
        assert n == s.n_speakers == clip.n_speakers
        assert len(s.image_reference_ids) == len(s.audio_reference_ids) == n
        doc = json.loads((out / s.caption_path).read_text())
        cap = parse_caption(doc["caption"])
        assert cap.subjects == [f"<sub{k}>" for k in range(1, n + 1)]
        assert cap.scene and cap.actions and len(cap.image_captions) == n
        assert "descriptive_fields_missing" not in doc["flags"]
        assert doc["vlm"]["model"] == "stub-vl"
        clip_segs = segs[segs.clip_id == s.clip_id]
        assert cap.speech_text() == " ".join(clip_segs.sort_values("start_s").text)
        speakers = [sub["speaker"] for sub in doc["subjects"]]
        for k in range(n):
            img = refs.loc[s.image_reference_ids[k]]
            wav = refs.loc[s.audio_reference_ids[k]]
            assert img.kind == "image" and wav.kind == "audio"
            # M_v: the crop's frame and box; the box covers that subject's face there
            assert img.frame_index == s.mask_frames[k]
            np.testing.assert_allclose(img.box, s.mask_boxes[k])
            png = read_image(out / img.path)
            assert png.shape == (512, 512, 3)
            tracks = t["face_tracks"][t["face_tracks"].identity_id == s.identity_ids[k]]
            hits = [np.asarray(b) for tr in tracks.itertuples()
                    for f, b in zip(tr.frame_indices, tr.boxes, strict=True)
                    if f == img.frame_index]
            assert len(hits) == 1
            bx = hits[0]
            assert img.box[0] <= bx[0] and img.box[1] <= bx[1]
            assert img.box[2] >= bx[2] and img.box[3] >= bx[3]
            # M_a: 1-3 s of this subject's own speech, clear of every other speaker's
            a, b = s.mask_spans[k]
            assert (a, b) == (wav.start_s, wav.end_s) and 1.0 <= b - a <= 3.0 + 1e-9
            mine = clip_segs[clip_segs.speaker == speakers[k]]
            assert ((mine.start_s <= a + 1e-6) & (mine.end_s >= b - 1e-6)).any()
            others = clip_segs[clip_segs.speaker != speakers[k]]
            assert not ((others.start_s < b) & (others.end_s > a)).any()
            audio = load_audio(out / wav.path, 16000)
            assert abs(len(audio) / 16000 - (b - a)) < 0.002


def test_the_endpoint_password_goes_as_basic_auth_and_is_in_no_file_of_the_run(offline):
    """The caption endpoint ``http://curator:PASSWORD@127.0.0.1:port/v1``: every request went
    to 127.0.0.1 with HTTP Basic credentials; the password is in no byte of any file of the
    output (summary, provenance, manifests, report, caption JSON, result records)."""
    import base64

    summary, out, stub = offline
    basic = "Basic " + base64.b64encode(f"curator:{PASSWORD}".encode()).decode()
    assert len(stub["requests"]) >= 6 and {r["auth"] for r in stub["requests"]} == {basic}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 50 and any(p.suffix == ".parquet" for p in files)
    for p in files:
        assert PASSWORD.encode() not in p.read_bytes(), p
    data = json.loads((out / "summary.json").read_text())
    assert data["provenance"]["config"]["caption"]["base_url"].startswith("http://***@127.0.0.1:")


def test_offline_run_scores_against_the_corpus_truth(offline, sample_corpus):
    from pipelines.inpair.score import score_run

    _, out, _ = offline
    score = score_run(out, sample_corpus.out).to_dict()
    assoc, faces = score["overall"]["association"], score["overall"]["faces"]
    assert assoc["assigned"] == 10 and assoc["correct"] == 10  # every speaker's own face
    assert faces["found"] == faces["total"] == 12  # the classical backend finds every face


def test_report_renders_in_a_headless_browser(offline):
    import re

    _, out, _ = offline
    page = out / "report.html"
    dom = subprocess.run([shutil.which("chromium") or "chromium", "--headless", "--no-sandbox",
                          "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) == "10"  # one crop per identity
    for section in ("stages", "filters", "histograms", "contact-sheet", "captions"):
        assert f'data-testid="{section}"' in dom


# --------------------------------------------------------------------------------------------
# inputs and output in S3 (a real S3 server on 127.0.0.1): the same run as the local one


def _content(df: pd.DataFrame) -> pd.DataFrame:
    """A table without its id and path columns (ids derive from the source, which is a URL
    here), cells as text, rows sorted: what must not depend on where the files live."""
    keep = [c for c in df.columns if not c.endswith(("_id", "_ids", "path"))]
    text = df[keep].map(lambda v: json.dumps(v.tolist() if isinstance(v, np.ndarray) else v,
                                             default=str, sort_keys=True))
    return text.sort_values(keep).reset_index(drop=True)


def _digests(paths) -> list[str]:
    import hashlib

    return sorted(hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths)


def test_inputs_and_output_in_s3_give_the_local_run(offline, sample_corpus, chat_stub_module,
                                                    s3, tmp_path, monkeypatch):
    """The offline DAG with ``--input s3://.../talking --out s3://.../run``: every table equals
    the local run's but for ids and paths (ids derive from the source, here a URL), the media
    are the same bytes, everything is in the bucket, and a rerun on a machine with an empty
    staging folder finds every part in the bucket and writes byte-identical manifests."""
    from omni_core.manifests import read_manifest
    from omni_core.storage import RunFolder

    _, local, _ = offline
    bucket = s3.bucket()
    fs = s3.fs()
    s3.upload(sample_corpus.out / "talking", f"{bucket}/corpus/talking")
    s3.upload(sample_corpus.out / "truth" / "turns.parquet",
              f"{bucket}/corpus/truth/turns.parquet")  # what the annotations double reads
    monkeypatch.setenv("OMNI_CACHE", str(tmp_path / "node1"))  # input cache and staging
    cfg = _offline_config(chat_stub_module[0])
    try:
        summary = run_inpair(f"{bucket}/corpus/talking", f"{bucket}/run", cfg, progress=False)
    finally:
        shutdown_ray()
    assert summary.out == f"{bucket}/run" and summary.items["total"] == 6
    assert summary.counts["samples"] == 6 and summary.timing["setup_s"] > 0
    remote = RunFolder(f"{bucket}/run", staging=tmp_path / "check")
    t = {name: read_manifest(remote.local(f"{name}.parquet"), name) for name in TABLES}
    here = {name: read_manifest(local / f"{name}.parquet", name) for name in TABLES}
    # the recorded source is the URL; the rest of every table is the local run's
    names = sorted(p.name for p in (sample_corpus.out / "talking").iterdir())
    assert sorted(t["videos"].path) == [f"{bucket}/corpus/talking/{n}" for n in names]
    for name in TABLES:
        pd.testing.assert_frame_equal(_content(t[name]), _content(here[name]), obj=name)
    # every media file is in the bucket, with the local run's bytes
    clips = [remote.local(p) for p in t["clips"].path]
    refs = [remote.local(p) for p in t["references"].path]
    assert _digests(clips) == _digests(local / p for p in here["clips"].path)
    assert _digests(refs) == _digests(local / p for p in here["references"].path)
    caps = [json.loads(remote.read_text(p)) for p in t["samples"].caption_path]
    local_caps = [json.loads((local / p).read_text()) for p in here["samples"].caption_path]
    assert sorted(c["caption"] for c in caps) == sorted(c["caption"] for c in local_caps)
    for rel in ("summary.json", "report.html"):
        assert remote.exists(rel)
    assert not remote.exists("_setup")
    # a rerun on another machine: nothing staged there; every part is found in the bucket
    monkeypatch.setenv("OMNI_CACHE", str(tmp_path / "node2"))
    node2 = RunFolder(f"{bucket}/run", staging=tmp_path / "node2" / "run")
    again = run_inpair(f"{bucket}/corpus/talking", node2, cfg, progress=False)
    assert again.items["skipped"] == again.items["total"] == 6
    assert again.timing["setup_s"] == 0
    for name in TABLES:
        assert (tmp_path / "node2" / "run" / f"{name}.parquet").read_bytes() == \
            remote.local(f"{name}.parquet").read_bytes(), name
    assert fs.cat_file(f"{bucket}/run/clips.parquet".removeprefix("s3://")) == \
        remote.local("clips.parquet").read_bytes()
    # its report embeds the crops it fetched from the bucket
    page = (tmp_path / "node2" / "run" / "report.html").read_text()
    assert page.count('data-testid="identity-crop"') == 10
    assert 'data-testid="identity-crop-missing"' not in page
    assert f"{bucket}/run" in page


# --------------------------------------------------------------------------------------------
# one bad clip in a stage: an error row naming the step and the reason, the next clip goes on
# (the stage classes called directly, as a Ray actor calls them)


def _work(tmp_path, clip_file: str, source: str) -> dict:
    from pipelines.inpair.dag import ClipWork

    clip = {"clip_id": "c1", "video_id": "v1", "path": clip_file, "start_s": 0.0,
            "end_s": 5.04, "n_frames": 121, "status": "sample", "n_speakers": 1}
    work = ClipWork.start("c1", "v1", source, clip)
    work.tables["speech_segments"] = [{"speaker": "p0", "start_s": 0.5, "end_s": 2.0,
                                       "text": "hello there"}]
    work.subjects = [{"anchor": "<sub1>", "speaker": "p0", "identity_id": "i1",
                      "image_reference_id": "r1", "audio_reference_id": "r2",
                      "image_path": "face.png", "frame_index": 0, "box": [0, 0, 1, 1],
                      "span": [0.5, 1.5]}]
    return work.to_row()


def _job(tmp_path):
    from omni_core.jobs import JobContext
    from omni_core.storage import RunFolder

    return JobContext("inpair", RunFolder(tmp_path), "k")


def _config(*overrides: str) -> dict:
    from omni_core.config import to_dict

    return to_dict(load_config(InpairConfig, None, list(overrides)))


def test_a_broken_clip_is_an_error_row_in_every_stage(tmp_path, sample_corpus, judge):
    import skimage.data

    from omni_core.media import write_image
    from pipelines.inpair.dag import AudioStage, CaptionStage, ClipWork, VisualStage

    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 cut short")
    write_image(tmp_path / "face.png", skimage.data.astronaut()[:200, 150:350])
    cases = [
        # the annotations double on a file outside any sample corpus
        (AudioStage(_job(tmp_path), config=_config("audio.backend=annotations")), "audio",
         "not inside a sample corpus", str(tmp_path / "broken.mp4")),
        # the lite models on sound that cannot be decoded
        (AudioStage(_job(tmp_path), config=_config("models=lite")), "audio", "broken.mp4",
         str(tmp_path / "broken.mp4")),
        # frames that cannot be decoded
        (VisualStage(_job(tmp_path),
                     config=_config("faces.backend=lbp", "associate.backend=motion")),
         "faces", "broken.mp4", str(tmp_path / "broken.mp4")),
    ]
    good = sample_corpus.out / "talking" / "talk00_1p.mp4"
    base_url, stub = judge
    stub["default"] = "this is not JSON"  # a VLM that never answers as asked
    cases.append((CaptionStage(_job(tmp_path), config=_config(
                      f"caption.base_url={base_url}", "caption.model=m",
                      "caption.max_retries=0")),
                  "caption", "caption VLM", str(good)))
    for stage, step, words, source in cases:
        row = stage(_work(tmp_path, "broken.mp4" if step != "caption" else str(good), source))
        work = ClipWork.from_row(row)
        assert work.failed == step, (step, work.tables)
        (err,) = work.tables["errors"]
        assert err["item"] == "c1" and err["stage"] == step and err["reason"]
        assert words in err["reason"], err
        assert step in work.steps  # the failing step's time is booked
        # a clip that failed earlier passes through the next stage untouched
        again = ClipWork.from_row(stage(row))
        assert again.tables["errors"] == work.tables["errors"] and again.failed == step


def test_the_decoder_option_reaches_the_stages_that_decode_frames(tmp_path):
    """``decoder`` picks the frame decoder of the visual (and caption) stage: torchcodec's
    own error for a broken clip; NVDEC refused when its actor starts on a machine without a
    GPU; an unknown name refused when the config is read."""
    import torch

    from omni_core.errors import ConfigError
    from pipelines.inpair.dag import ClipWork, VisualStage

    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 cut short")
    stage = VisualStage(_job(tmp_path), config=_config(
        "faces.backend=lbp", "associate.backend=motion", "decoder=torchcodec"))
    work = ClipWork.from_row(stage(_work(tmp_path, "broken.mp4", str(tmp_path / "broken.mp4"))))
    (err,) = work.tables["errors"]
    assert err["stage"] == "faces" and "torchcodec cannot open it" in err["reason"]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            VisualStage(_job(tmp_path), config=_config("faces.backend=lbp",
                                                       "decoder=torchcodec-cuda"))
    with pytest.raises(ConfigError, match="decoder must be one of decord, torchcodec"):
        _config("decoder=nvdec")


def test_prepare_plans_where_picture_and_sound_are_and_refuses_odd_inputs(tmp_path,
                                                                           quirky_media):
    """The prepare stage as an actor calls it, on odd inputs: 8 s of picture with 30 s of
    sound gives its clip inside the 8 s (and none past them); a 1 fps slide show and a PNG
    named .mp4 are error rows of the stage with a reason that says what they are."""
    from pipelines.inpair.dag import ClipWork, PrepareStage

    stage = PrepareStage(_job(tmp_path), config=_config())

    def prepare(path):
        plan, *works = [ClipWork.from_row(r) for r in stage({"source": str(path)})]
        assert plan.carried and plan.item == str(path)  # the input's plan, to be published
        assert plan.data["clip_ids"] == [w.clip_id for w in works]
        return works, plan.tables["errors"]

    works, errors = prepare(quirky_media.long_audio)
    assert errors == [] and len(works) == 1
    assert works[0].failed is None and works[0].clip["end_s"] <= 8.0
    assert probe(tmp_path / works[0].clip["path"]).n_frames == 121
    for path, reason in [
            (quirky_media.one_fps, "frame rate 1.0 fps is below the minimum of 5 fps"),
            (quirky_media.still, "a still image (png), not a video")]:
        works, errors = prepare(path)
        assert works == [] and [(e["stage"], e["reason"]) for e in errors] == [
            ("prepare", f"{path}: {reason}")]


def test_finished_inputs_and_clips_are_decided_from_the_parts_alone(tmp_path):
    """An input is complete when its plan is fresh and every planned clip is finished;
    clips of a stale plan and clips no plan names are not finished."""
    from omni_core.jobs import ResultStore
    from omni_core.jobs.store import Entry
    from omni_core.storage import Listing
    from pipelines.inpair.dag import finished

    store = ResultStore(tmp_path, "inpair")
    stat = {f"in{i}": [100 + i, 7] for i in range(4)}
    plans = {"in0": ["a", "b"], "in1": ["c", "d"], "in2": [], "in3": ["e"]}
    store.put_part("inputs", "k", [Entry(s, {"clip_ids": ids, "stats": {}}, source=s,
                                         stat=stat[s]) for s, ids in plans.items()])
    store.put_part("clips", "k", [Entry(c, {"stats": {}}, parent=p) for c, p in (
        ("a", "in0"), ("c", "in1"), ("e", "in3"), ("f", "in0"))])
    store.put_part("clips", "k", [Entry("b", {"stats": {}}, parent="in0")])
    listing = Listing(files=sorted(stat), stats={**stat, "in3": [999, 8]})  # in3 changed
    done = finished(ResultStore(tmp_path, "inpair"), "k", listing)
    assert done.complete == {"in0", "in2"}
    assert done.partial == {"in1": ["c"]}
    assert sorted(done.clips.table.column("item").to_pylist()) == ["a", "b", "c"]
    assert sorted(done.inputs.table.column("item").to_pylist()) == ["in0", "in1", "in2"]
