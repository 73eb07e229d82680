"""Curation scoring against the sample corpus truth: runs are built by hand from the truth
tables (perfect, then with one known defect each) so every expected number is exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from omni_core.errors import OmniError
from omni_core.manifests import read_manifest, write_manifest
from pipelines.inpair.score import (
    UNMATCHED,
    ScoreOptions,
    Turn,
    box_iou,
    score_json,
    score_run,
    voice_person,
    wer_texts,
)

OMNI = str(Path(sys.executable).with_name("omni"))
TWO = "talking/talk02_2p.mp4"  # p0, p1, p0
THREE = "talking/talk04_3p.mp4"
OVERLAP = "talking/talk05_3p.mp4"  # p1 and p2 overlap for 0.35 s


@pytest.fixture(scope="module")
def corpus(sample_corpus) -> Path:
    return Path(sample_corpus.out)


@pytest.fixture(scope="module")
def truth(corpus) -> dict[str, pd.DataFrame]:
    t = corpus / "truth"
    return {"files": read_manifest(t / "files.parquet", "corpus_files"),
            "people": read_manifest(t / "people.parquet", "corpus_people"),
            "turns": read_manifest(t / "turns.parquet", "corpus_turns")}


def generated(truth, file: str) -> pd.DataFrame:
    t = truth["turns"]
    return t[(t["file"] == file) & (t["source"] == "generated")].sort_values("start_s")


def label(person: str) -> str:
    return f"SPEAKER_{int(person[1:]):02d}"


def build_run(corpus: Path, truth, spans: dict[str, list[tuple[float, float]]] | None = None
              ) -> dict[str, list[dict]]:
    """A perfect run: one clip per talking file over its whole length (or ``spans``), the
    truth turns cut to it as speech segments, one track per person on its face box with an
    identity holding that person's speaker label, and an error row per non-talking input."""
    files = truth["files"]
    now = pd.Timestamp("2026-01-01", tz="UTC")
    run: dict[str, list[dict]] = {k: [] for k in ("videos", "clips", "speech_segments",
                                                  "face_tracks", "identities", "errors")}
    for vi, f in enumerate(files[files["kind"] == "talking"].itertuples()):
        vid = f"v{vi}"
        run["videos"].append({
            "video_id": vid, "path": str(corpus / f.file), "content_hash": "0" * 64,
            "duration_s": f.duration_s, "fps": 25.0, "n_frames": round(f.duration_s * 25),
            "width": 640, "height": 360, "video_codec": "h264", "has_audio": True,
            "audio_codec": "aac", "sample_rate": 16000, "vfr": False})
        people = truth["people"][truth["people"]["file"] == f.file]
        for ci, (s, e) in enumerate((spans or {}).get(f.file, [(0.0, f.duration_s)])):
            cid = f"{vid}c{ci}"
            run["clips"].append({
                "clip_id": cid, "video_id": vid, "shot_index": 0, "start_s": s, "end_s": e,
                "path": f"clips/{cid}.mp4", "fps": 24.0, "n_frames": round((e - s) * 24),
                "width": 640, "height": 360, "sample_rate": 16000, "status": "sample",
                "status_reason": None, "n_speakers": len(people), "n_faces": len(people),
                "best_sync": 6.0})
            for t in generated(truth, f.file).itertuples():
                a, b = max(t.start_s, s), min(t.end_s, e)
                if b > a:
                    run["speech_segments"].append({
                        "segment_id": f"{cid}s{t.Index}", "clip_id": cid,
                        "speaker": label(t.speaker), "start_s": a - s, "end_s": b - s,
                        "text": t.text, "confidence": 0.9})
            for p in people.itertuples():
                tid, iid = f"{cid}t{p.person}", f"{cid}i{p.person}"
                run["face_tracks"].append({
                    "track_id": tid, "clip_id": cid, "frame_indices": [0, 12, 24],
                    "boxes": [list(p.face_box)] * 3, "det_scores": [0.9] * 3,
                    "min_face_px": 136.0, "sharpness": 100.0, "embedding": None,
                    "identity_id": iid, "passed": True, "reject_reason": None})
                run["identities"].append({
                    "identity_id": iid, "clip_id": cid, "track_ids": [tid],
                    "speaker": label(p.person), "sync_confidence": 6.0, "margin": 2.0,
                    "embedding": None})
    for f in files[files["kind"] != "talking"].itertuples():
        run["errors"].append({
            "item": str(corpus / f.file), "stage": "prepare", "error_type": "OmniError",
            "reason": f.expected_error if isinstance(f.expected_error, str)
            else "no video stream: a talking clip needs both", "time": now})
    return run


def write_run(run: dict[str, list[dict]], out: Path) -> Path:
    for name, rows in run.items():
        write_manifest(rows, name, out / f"{name}.parquet")
    (out / "summary.json").write_text(json.dumps({"job": "inpair"}))  # what a run says it is
    return out


def clip_of(run, file: str, corpus: Path) -> str:
    vid = next(v["video_id"] for v in run["videos"] if v["path"] == str(corpus / file))
    return next(c["clip_id"] for c in run["clips"] if c["video_id"] == vid)


def n_words(texts) -> int:
    return sum(len(t.split()) for t in texts)


# --------------------------------------------------------------------------------------------
# helpers


def test_iou_voice_and_wer_texts() -> None:
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    turns = [Turn("p0", 0.0, 2.0, "a b"), Turn("p1", 3.0, 5.0, "c d")]
    assert voice_person([(0.5, 1.0), (2.5, 4.0)], turns) == "p1"  # 1.0 s vs 0.5 s
    assert voice_person([(2.1, 2.9)], turns) == UNMATCHED
    segs = [Turn("X", 3.5, 4.5, "d"), Turn("X", 3.0, 3.4, "c"), Turn("Y", 2.2, 2.8, "noise")]
    # clip [1, 6] in source time: turns 1..3 and 4..6 in clip time; "noise" lies in no turn
    assert wer_texts([Turn("p0", 1.0, 3.0, "a b"), Turn("p1", 4.0, 6.0, "c d")], 1.0, 6.0,
                     segs) == ("a b c d", "c d")
    assert wer_texts(turns, 1.0, 6.0, segs) == "unscorable"  # p0's turn starts before the clip
    assert wer_texts(turns, 2.1, 2.9, segs) is None
    with pytest.raises(OmniError):
        ScoreOptions(face_iou=0.0)


# --------------------------------------------------------------------------------------------
# runs built from the truth


def test_perfect_run(corpus, truth, tmp_path) -> None:
    out = write_run(build_run(corpus, truth), tmp_path / "run")
    s = score_run(out, corpus)
    o = s.overall
    assert len(s.files) == 6 and o.clips == 6 and s.missing_tables == []
    assert o.der.value == 0.0 and o.der.clips == 6
    all_turns = truth["turns"][truth["turns"]["source"] == "generated"]
    # pyannote's total counts overlapped reference speech once per speaker
    assert o.der.total_s == pytest.approx((all_turns["end_s"] - all_turns["start_s"]).sum())
    assert all(f.der.value == 0.0 for f in s.files)
    assert (o.association.correct, o.association.assigned) == (12, 12)
    assert o.association.accuracy == 1.0
    assert (o.association.people_correct, o.association.people_total) == (12, 12)
    assert o.wer.value == 0.0 and o.wer.clips_scored == 6 and o.wer.clips_unscorable == 0
    assert o.wer.reference_words == n_words(all_turns["text"])
    assert (o.faces.found, o.faces.total, o.faces.recall) == (12, 12, 1.0)
    assert (o.faces.tracks, o.faces.tracks_unmatched, o.faces.precision) == (12, 0, 1.0)
    st = s.stages
    assert st.clips_by_status == {"sample": 6} and st.errors_by_stage == {"prepare": 8}
    assert st.inputs_by_kind == {
        "broken": {"files": 7, "videos": 0, "with_clips": 0, "errors": 7},
        "recording": {"files": 1, "videos": 0, "with_clips": 0, "errors": 1},
        "talking": {"files": 6, "videos": 6, "with_clips": 6, "errors": 0}}
    assert st.broken_not_in_errors == [] and len(st.broken_errors) == 7
    assert st.broken_errors["broken/empty.mp4"] == ["prepare: empty file (0 bytes)"]
    assert st.unmapped_videos == []
    d = json.loads(json.dumps(score_json(s)))
    assert d["overall"]["association"]["accuracy"] == 1.0 and len(d["identities"]) == 12
    text = "\n".join(s.lines())
    assert "12/12 identities correct" in text and "broken files not in errors: none" in text


def test_swapped_speakers_break_association_not_der(corpus, truth, tmp_path) -> None:
    run = build_run(corpus, truth)
    cid = clip_of(run, TWO, corpus)
    swap = {"SPEAKER_00": "SPEAKER_01", "SPEAKER_01": "SPEAKER_00"}
    for seg in run["speech_segments"]:
        if seg["clip_id"] == cid:
            seg["speaker"] = swap[seg["speaker"]]
    s = score_run(write_run(run, tmp_path / "run"), corpus)
    f = s.file(TWO)
    assert (f.association.correct, f.association.assigned, f.association.accuracy) == (0, 2, 0.0)
    assert (f.association.people_correct, f.association.people_total) == (0, 2)
    checks = {(c.face_person, c.voice_person) for c in s.identities if c.clip_id == cid}
    assert checks == {("p0", "p1"), ("p1", "p0")}
    # by hand: a relabelling of the hypothesis; the optimal mapping undoes it, DER stays 0
    assert f.der.value == 0.0 and s.overall.der.value == 0.0
    assert (s.overall.association.correct, s.overall.association.assigned) == (10, 12)
    assert s.overall.association.people_correct == 10


def test_confusion_and_missed_speech_der(corpus, truth, tmp_path) -> None:
    run = build_run(corpus, truth)
    two, ovl = clip_of(run, TWO, corpus), clip_of(run, OVERLAP, corpus)
    t2, t5 = generated(truth, TWO), generated(truth, OVERLAP)
    last = t2.iloc[2]  # p0's second turn, now labelled as p1's speaker
    p1_end = float(t5[t5["speaker"] == "p1"]["end_s"].iloc[0])
    p2 = t5[t5["speaker"] == "p2"].iloc[0]
    for seg in run["speech_segments"]:
        if seg["clip_id"] == two and seg["start_s"] == last["start_s"]:
            seg["speaker"] = "SPEAKER_01"
        if seg["clip_id"] == ovl and seg["speaker"] == "SPEAKER_02":
            seg["start_s"] = p1_end  # p2's turn starts when p1 stops: the overlap is missed
    out = write_run(run, tmp_path / "run")
    s = score_run(out, corpus)
    dur = lambda t: float((t["end_s"] - t["start_s"]).sum())  # noqa: E731
    confusion = float(last["end_s"] - last["start_s"])
    missed = p1_end - float(p2["start_s"])
    assert missed == pytest.approx(0.35, abs=1e-3)
    f2, f5 = s.file(TWO), s.file(OVERLAP)
    # mapping {00: p0, 01: p1} matches 2.15 + 2.23 s, {01: p0} only 2.23 s: the last turn is
    # confused; talk02's DER is its length over talk02's speech
    assert f2.der.confusion_s == pytest.approx(confusion)
    assert f2.der.value == pytest.approx(confusion / dur(t2))
    assert f5.der.missed_s == pytest.approx(missed) and f5.der.confusion_s == 0
    assert f5.der.value == pytest.approx(missed / dur(t5))
    gen = truth["turns"][truth["turns"]["source"] == "generated"]
    assert s.overall.der.value == pytest.approx((confusion + missed) / dur(gen))
    # the missed region is overlapped speech, and lies within 0.4 s of p2's start boundary
    s = score_run(out, corpus, ScoreOptions(skip_overlap=True))
    assert s.file(OVERLAP).der.value == 0.0
    assert s.file(TWO).der.value == pytest.approx(confusion / dur(t2))
    assert score_run(out, corpus, ScoreOptions(collar=0.8)).file(OVERLAP).der.value == 0.0
    # a 0.2 s collar (0.1 s each side) takes 0.1 s off each end of the missed region
    narrow = score_run(out, corpus, ScoreOptions(collar=0.2)).file(OVERLAP).der
    assert narrow.missed_s == pytest.approx(missed - 0.2)


def test_missing_face_and_spurious_track(corpus, truth, tmp_path) -> None:
    run = build_run(corpus, truth)
    cid = clip_of(run, THREE, corpus)
    run["face_tracks"] = [t for t in run["face_tracks"] if t["track_id"] != f"{cid}tp1"]
    run["identities"] = [i for i in run["identities"] if i["identity_id"] != f"{cid}ip1"]
    extra = dict(run["face_tracks"][0], track_id="stray", boxes=[[0.0, 0.0, 40.0, 40.0]] * 3)
    run["face_tracks"].append(extra)
    s = score_run(write_run(run, tmp_path / "run"), corpus)
    o, f = s.overall, s.file(THREE)
    assert (o.faces.found, o.faces.total) == (11, 12) and o.faces.recall == 11 / 12
    assert (f.faces.found, f.faces.total) == (2, 3)
    assert (o.faces.tracks, o.faces.tracks_unmatched) == (12, 1)
    assert o.faces.precision == 11 / 12
    assert (o.association.correct, o.association.assigned) == (11, 11)
    assert (o.association.people_correct, o.association.people_total) == (11, 12)


def test_wer_wrong_word_split_turn_and_unscorable_clip(corpus, truth, tmp_path) -> None:
    talk00, talk01 = "talking/talk00_1p.mp4", "talking/talk01_1p.mp4"
    t1 = generated(truth, talk01)
    cross = float(t1.iloc[1]["start_s"]) + 0.5  # inside talk01's second turn
    run = build_run(corpus, truth, spans={talk01: [(0.0, cross)]})
    cid = clip_of(run, talk00, corpus)
    segs = [g for g in run["speech_segments"] if g["clip_id"] == cid]
    assert segs[0]["text"] == "Four hours of steady work faced us."
    segs[0]["text"] = "Four hours of steady work faced them."
    # the second turn split in two segments: joined in time order it is still right
    second = segs[1]
    words = second["text"].split()
    mid = (second["start_s"] + second["end_s"]) / 2
    run["speech_segments"].remove(second)
    run["speech_segments"] += [
        dict(second, segment_id="b", start_s=mid, text=" ".join(words[3:])),
        dict(second, segment_id="a", end_s=mid, text=" ".join(words[:3]))]
    s = score_run(write_run(run, tmp_path / "run"), corpus)
    f0, f1, o = s.file(talk00), s.file(talk01), s.overall
    n00 = n_words(generated(truth, talk00)["text"])
    assert (f0.wer.substitutions, f0.wer.deletions, f0.wer.insertions) == (1, 0, 0)
    assert f0.wer.value == pytest.approx(1 / n00)
    assert (f1.wer.clips_scored, f1.wer.clips_unscorable, f1.wer.value) == (0, 1, None)
    gen = truth["turns"][truth["turns"]["source"] == "generated"]
    n_all = n_words(gen[gen["file"] != talk01]["text"])
    assert (o.wer.reference_words, o.wer.clips_scored, o.wer.clips_unscorable) == (n_all, 5, 1)
    assert o.wer.value == pytest.approx(1 / n_all)
    assert f1.der.value == 0.0  # the truth cut to the shorter clip is still perfect
    assert "1 unscorable" in "\n".join(s.lines())


def test_broken_file_missing_from_errors(corpus, truth, tmp_path) -> None:
    run = build_run(corpus, truth)
    vfr = str(corpus / "broken/vfr.mp4")
    run["errors"] = [e for e in run["errors"] if e["item"] != vfr]
    # the run took it as a video and cut a clip from it (a relative path maps all the same)
    video = dict(run["videos"][0], video_id="vfr", path=os.path.relpath(vfr), vfr=True)
    run["videos"].append(video)
    run["clips"].append(dict(run["clips"][0], clip_id="vfrc0", video_id="vfr",
                             status="no_faces"))
    run["videos"].append(dict(video, video_id="elsewhere", path=str(tmp_path / "x.mp4")))
    s = score_run(write_run(run, tmp_path / "run"), corpus)
    st = s.stages
    assert st.broken_not_in_errors == ["broken/vfr.mp4"]
    assert "broken/vfr.mp4" not in st.broken_errors and len(st.broken_errors) == 6
    assert st.inputs_by_kind["broken"] == {"files": 7, "videos": 1, "with_clips": 1,
                                           "errors": 6}
    assert st.clips_by_status == {"sample": 6, "no_faces": 1}
    assert st.unmapped_videos == [str(tmp_path / "x.mp4")]
    assert s.overall.clips == 6  # a clip of a non-talking file is no metric sample
    assert "broken files not in errors: broken/vfr.mp4" in "\n".join(s.lines())


def test_run_without_faces_stage(corpus, truth, tmp_path) -> None:
    run = build_run(corpus, truth)
    del run["face_tracks"], run["identities"], run["errors"]
    s = score_run(write_run(run, tmp_path / "run"), corpus)
    assert s.missing_tables == ["face_tracks", "identities", "errors"]
    assert s.overall.der.value == 0.0 and s.overall.association.accuracy is None
    assert (s.overall.faces.found, s.overall.faces.total) == (0, 12)
    assert len(s.stages.broken_not_in_errors) == 7
    assert "tables not in the run (read as empty): face_tracks" in "\n".join(s.lines())
    with pytest.raises(OmniError, match="clips.parquet is missing"):
        (tmp_path / "run" / "clips.parquet").unlink()
        score_run(tmp_path / "run", corpus)


# --------------------------------------------------------------------------------------------
# CLI


def omni(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OMNI, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_cli_score(corpus, truth, tmp_path) -> None:
    run = build_run(corpus, truth)
    cid = clip_of(run, TWO, corpus)
    for ident in run["identities"]:
        if ident["clip_id"] == cid:
            ident["speaker"] = {"SPEAKER_00": "SPEAKER_01"}.get(ident["speaker"], "SPEAKER_00")
    out = write_run(run, tmp_path / "run")
    r = omni("curate", "score", "--run", out, "--corpus", corpus)
    assert r.returncode == 0, r.stderr
    assert "10/12 identities correct" in r.stdout and "score written to" in r.stdout
    saved = json.loads((out / "score.json").read_text())
    assert saved == json.loads(json.dumps(score_json(score_run(out, corpus))))
    assert saved["overall"]["association"]["correct"] == 10
    r = omni("curate", "score", "--run", out, "--corpus", corpus, "--json",
             tmp_path / "s.json", "--skip-overlap", "--collar", "0.25")
    assert r.returncode == 0, r.stderr
    opts = json.loads((tmp_path / "s.json").read_text())["options"]
    assert opts["skip_overlap"] is True and opts["collar"] == 0.25
    r = omni("curate", "score", "--run", tmp_path / "nowhere", "--corpus", corpus)
    assert r.returncode == 1
    assert r.stderr.strip() == f"omni curate: error: run folder not found: {tmp_path/'nowhere'}"
    assert omni("curate", "score", "--run", out).returncode == 2  # no --corpus
