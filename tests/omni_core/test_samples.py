"""The sample corpus: contents, ground truth, visible speech, determinism, broken inputs."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omni_core.errors import MediaError, OmniError
from omni_core.manifests import read_manifest
from omni_core.media.ffmpeg import binary, run
from omni_core.samples import make_corpus, plan_corpus
from omni_core.samples.broken import top_level_atoms
from omni_core.samples.corpus import FPS, HEIGHT, WIDTH, talking_rows
from omni_core.samples.recording import sample_dir

SR = 16_000


# ----------------------------------------------------------------------------- helpers


@lru_cache(maxsize=8)
def _decode_video(path: str) -> np.ndarray:
    raw = run([binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:v:0",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], what="decode video")
    return np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH, 3)


@lru_cache(maxsize=16)
def _decode_audio(path: str) -> np.ndarray:
    raw = run([binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:a:0",
               "-f", "s16le", "-ac", "1", "-ar", str(SR), "-"], what="decode audio")
    return np.frombuffer(raw, np.int16).astype(np.float32) / 32768


def _ffprobe(path: Path, *entries: str) -> str:
    return run([binary("ffprobe"), "-v", "error", *entries, "-of", "json", str(path)],
               what="ffprobe").decode()


def _streams(path: Path) -> list[str]:
    info = json.loads(_ffprobe(path, "-show_entries", "stream=codec_type,codec_name"))
    return [s["codec_type"] for s in info.get("streams", [])]


def _frame_rms(audio: np.ndarray, n_frames: int) -> np.ndarray:
    hop = SR // FPS
    a = np.zeros(n_frames * hop, np.float32)
    a[:min(len(audio), len(a))] = audio[:len(a)]
    return np.sqrt(np.mean(a.reshape(n_frames, hop) ** 2, axis=1))


def _speaking(turns: pd.DataFrame, n_frames: int) -> np.ndarray:
    t = (np.arange(n_frames) + 0.5) / FPS
    on = np.zeros(n_frames, bool)
    for r in turns.itertuples():
        on |= (t >= r.start_s) & (t < r.end_s)
    return on


@pytest.fixture(scope="module")
def truth(sample_corpus):
    return (read_manifest(sample_corpus.files_table, "corpus_files"),
            read_manifest(sample_corpus.people_table, "corpus_people"),
            read_manifest(sample_corpus.turns_table, "corpus_turns"))


# ----------------------------------------------------------------------------- contents


def test_counts_per_kind(sample_corpus, truth):
    files, people, turns = truth
    counts = files["kind"].value_counts().to_dict()
    assert counts == {"talking": sample_corpus.n_talking, "recording": 1,
                      "broken": sample_corpus.n_broken}
    assert sample_corpus.n_talking >= 6 and sample_corpus.n_broken >= 6
    assert len(people) == sample_corpus.n_people and len(turns) == sample_corpus.n_turns
    for rel in files["file"]:
        assert (sample_corpus.out / rel).is_file(), rel
    assert "source = rttm" in (sample_corpus.out / "README.md").read_text()


def test_talking_clips(sample_corpus, truth):
    files, people, _ = truth
    talking = files[files["kind"] == "talking"]
    assert talking["n_people"].value_counts().to_dict().keys() >= {1, 2, 3}
    assert talking["n_people"].value_counts().min() >= 2
    assert talking["duration_s"].between(4, 10).all()
    for row in talking.itertuples():
        info = json.loads(_ffprobe(sample_corpus.out / row.file, "-show_entries",
                                   "stream=codec_type,codec_name,width,height,r_frame_rate,"
                                   "sample_rate:format=duration"))
        codecs = {s["codec_type"]: s for s in info["streams"]}
        assert codecs["video"]["codec_name"] == "h264" and codecs["audio"]["codec_name"] == "aac"
        assert (codecs["video"]["width"], codecs["video"]["height"]) == (row.width, row.height)
        assert codecs["video"]["r_frame_rate"] == f"{FPS}/1"
        assert int(codecs["audio"]["sample_rate"]) == SR
        assert abs(float(info["format"]["duration"]) - row.duration_s) < 0.1
        assert len(_decode_video(str(sample_corpus.out / row.file))) == round(row.duration_s * FPS)
        mine = people[people["file"] == row.file].sort_values("person")
        assert list(mine["person"]) == [f"p{i}" for i in range(int(row.n_people))]
        boxes = np.stack(mine["face_box"].to_numpy())
        assert (boxes[:, 3] - boxes[:, 1] >= 110).all()  # the >= 100 px face filter keeps them
        assert (boxes[:, [0, 1]] >= 0).all() and (boxes[:, 2] <= WIDTH).all()
        assert (boxes[:, 3] <= HEIGHT).all()
        assert (boxes[1:, 0] >= boxes[:-1, 2]).all()  # left to right, no overlap
        for fb, mb in zip(mine["face_box"], mine["mouth_box"], strict=True):
            cx, cy = (mb[0] + mb[2]) / 2, (mb[1] + mb[3]) / 2
            assert fb[0] < cx < fb[2] and (fb[1] + fb[3]) / 2 < cy < fb[3] + 5


def test_people_consistent_across_clips(truth):
    _, people, _ = truth
    by_face = people.groupby("face_source")
    assert by_face["voice"].nunique().max() == 1  # one voice per real person
    assert by_face["file"].nunique().max() >= 2  # someone appears in more than one clip
    assert people.groupby("file")["voice"].nunique().eq(
        people.groupby("file").size()).all()  # distinct voices inside a clip


def test_turns(sample_corpus, truth):
    files, people, turns = truth
    dur = files.set_index("file")["duration_s"]
    assert (turns["start_s"] >= 0).all()
    assert (turns["end_s"] > turns["start_s"]).all()
    assert (turns["end_s"] <= turns["file"].map(dur) + 1e-6).all()
    gen = turns[turns["source"] == "generated"]
    assert gen["text"].notna().all()
    for f, grp in people.groupby("file"):
        assert set(gen[gen["file"] == f]["speaker"]) == set(grp["person"])  # everyone speaks
    # tight spans: the audio outside every turn is (nearly) silent, inside it is not
    for row in files[files["kind"] == "talking"].itertuples():
        audio = _decode_audio(str(sample_corpus.out / row.file))
        n = round(row.duration_s * FPS)
        rms = _frame_rms(audio, n)
        t = gen[gen["file"] == row.file]
        on = _speaking(t, n)
        near = on | np.convolve(on, np.ones(5), "same").astype(bool)
        assert rms[~near].max(initial=0) < 0.02 * rms[on].max()
        assert np.median(rms[on]) > 0.1 * rms[on].max()


def test_recording(sample_corpus, truth):
    files, _, turns = truth
    rec = files[files["kind"] == "recording"].iloc[0]
    assert rec["file"] == "recording/sample.wav" and rec["n_people"] == 2
    assert abs(rec["duration_s"] - 30.0) < 0.1
    for name in ("sample.wav", "sample.rttm", "sample.stm"):
        assert (sample_corpus.out / "recording" / name).read_bytes() == \
            (sample_dir() / name).read_bytes()
    r = turns[turns["file"] == rec["file"]]
    rttm, stm = r[r["source"] == "rttm"], r[r["source"] == "stm"]
    assert len(rttm) == 10 and rttm["text"].isna().all()
    assert set(rttm["speaker"]) == {"speaker90", "speaker91"}
    assert len(stm) == 13 and stm["text"].notna().all()
    first = stm.sort_values("start_s").iloc[0]
    assert (first["speaker"], first["text"]) == ("speaker90", "Hello?")  # Diane
    assert (r["end_s"] <= rec["duration_s"] + 1e-6).all()


# ----------------------------------------------------------------------------- what is seen


def test_mouths_move_with_their_own_speech(sample_corpus, truth):
    files, people, turns = truth
    gen = turns[turns["source"] == "generated"]
    for row in files[files["kind"] == "talking"].itertuples():
        frames = _decode_video(str(sample_corpus.out / row.file))
        n = len(frames)
        rms = _frame_rms(_decode_audio(str(sample_corpus.out / row.file)), n)
        mine = people[people["file"] == row.file].sort_values("person")
        energy = {p: rms * _speaking(gen[(gen["file"] == row.file) & (gen["speaker"] == p)], n)
                  for p in mine["person"]}
        for p, mb in zip(mine["person"], mine["mouth_box"], strict=True):
            x0, y0, x1, y1 = (int(v) for v in mb)
            mouth = frames[:, y0:y1, x0:x1].astype(np.float32).mean(-1)
            motion = np.abs(np.diff(mouth, axis=0)).mean(axis=(1, 2))
            # over 0.2 s windows, as active-speaker detectors look at motion
            corr = {q: np.corrcoef(_smooth(motion), _smooth(e[1:]))[0, 1]
                    for q, e in energy.items()}
            assert corr[p] > 0.4, (row.file, p, corr)
            assert all(corr[p] > c + 0.3 for q, c in corr.items() if q != p), (row.file, p, corr)


def _smooth(x: np.ndarray, k: int = 5) -> np.ndarray:
    return np.convolve(x, np.ones(k) / k, "same")


def test_faces_are_detectable(sample_corpus, truth):
    from skimage import data
    from skimage.feature import Cascade

    # OpenCV 5 dropped CascadeClassifier and its Haar files: use scikit-image's LBP cascade
    cascade = Cascade(data.lbp_frontal_face_cascade_filename())
    files, people, _ = truth
    for row in files[files["kind"] == "talking"].itertuples():
        frames = _decode_video(str(sample_corpus.out / row.file))
        mid = frames[len(frames) // 2]
        dets = [d for sf in (1.1, 1.15)  # the LBP cascade is brittle about scale steps
                for d in cascade.detect_multi_scale(img=mid, scale_factor=sf, step_ratio=1,
                                                    min_size=(60, 60), max_size=(300, 300))]
        for fb in people[people["file"] == row.file]["face_box"]:
            hits = [d for d in dets if fb[0] <= d["c"] + d["width"] / 2 <= fb[2]
                    and fb[1] <= d["r"] + d["height"] / 2 <= fb[3]]
            assert hits, (row.file, fb, dets)


def test_voices_differ(sample_corpus, truth):
    files, people, turns = truth
    gen = turns[turns["source"] == "generated"]
    for row in files[(files["kind"] == "talking") & (files["n_people"] > 1)].itertuples():
        audio = _decode_audio(str(sample_corpus.out / row.file))
        feats = {}
        for p in people[people["file"] == row.file]["person"]:
            spans = gen[(gen["file"] == row.file) & (gen["speaker"] == p)]
            feats[p] = np.array([_pitch(audio[int(s * SR):int(e * SR)])
                                 for s, e in zip(spans["start_s"], spans["end_s"],
                                                 strict=True)]).mean()
        vals = sorted(feats.values())
        assert all(b / a > 1.05 for a, b in zip(vals, vals[1:], strict=False)), (row.file, feats)


def _pitch(x: np.ndarray) -> float:
    """Median F0 (Hz) of voiced 40 ms frames, by autocorrelation in 60-400 Hz."""
    hop, f0s = 640, []
    lo, hi = SR // 400, SR // 60
    for i in range(0, len(x) - hop, hop):
        seg = x[i:i + hop] - x[i:i + hop].mean()
        if np.sqrt(np.mean(seg ** 2)) < 0.02:
            continue
        ac = np.correlate(seg, seg, "full")[hop - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            f0s.append(SR / lag)
    return float(np.median(f0s))


# ----------------------------------------------------------------------------- broken inputs


def test_broken_files(sample_corpus, truth):
    files, _, _ = truth
    broken = files[files["kind"] == "broken"].set_index("file")
    assert broken["expected_error"].notna().all()
    b = sample_corpus.out / "broken"
    assert (b / "empty.mp4").stat().st_size == 0
    assert (b / "not_a_video.mp4").read_bytes().startswith(b"This is a plain text file")
    for name in ("empty.mp4", "not_a_video.mp4", "truncated_no_moov.mp4"):
        with pytest.raises(MediaError):
            _streams(b / name)
    no_moov = (b / "truncated_no_moov.mp4").read_bytes()
    assert "moov" not in top_level_atoms(no_moov) and "mdat" in top_level_atoms(no_moov)
    fast = (b / "truncated_faststart.mp4").read_bytes()
    atoms = top_level_atoms(fast)
    assert atoms[:2] == ["ftyp", "moov"] and "mdat" in atoms  # faststart: index first
    assert _streams(b / "truncated_faststart.mp4") == ["video", "audio"]
    src = sample_corpus.out / "talking" / "talk05_3p.mp4"
    assert len(fast) == int(src.stat().st_size * 0.3)
    with pytest.raises(MediaError):  # decoding runs into the cut
        run([binary("ffmpeg"), "-nostdin", "-v", "error", "-xerror", "-i",
             str(b / "truncated_faststart.mp4"), "-f", "null", "-"], what="decode")
    assert _streams(b / "no_audio.mp4") == ["video"]
    assert _streams(b / "audio_only.mp4") == ["audio"]
    assert _streams(b / "vfr.mp4") == ["video", "audio"]


def test_vfr_file_has_irregular_timestamps(sample_corpus):
    info = json.loads(_ffprobe(sample_corpus.out / "broken" / "vfr.mp4", "-select_streams",
                               "v:0", "-show_entries", "packet=pts:stream=time_base"))
    assert info["streams"][0]["time_base"] == "1/1000"
    pts = np.sort([int(p["pts"]) for p in info["packets"]])
    deltas = np.unique(np.diff(pts))
    assert set(deltas.tolist()) == {30, 50, 270}


# ----------------------------------------------------------------------------- reproducibility


def test_rerun_is_a_noop(sample_corpus):
    out = sample_corpus.out
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = make_corpus(out, seed=0)
    assert again.reused and again.n_turns == sample_corpus.n_turns
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_refuses_foreign_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(OmniError, match="refusing"):
        make_corpus(tmp_path, seed=0)
    assert (tmp_path / "precious.txt").read_text() == "mine"


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_deterministic_for_a_seed(sample_corpus, truth, tmp_path):
    other = make_corpus(tmp_path / "again", seed=0)
    assert not other.reused
    for t in ("files_table", "people_table", "turns_table"):
        pd.testing.assert_frame_equal(read_manifest(getattr(sample_corpus, t)),
                                      read_manifest(getattr(other, t)))
    files = truth[0]
    for rel in files[files["kind"] == "talking"]["file"]:
        a, b = str(sample_corpus.out / rel), str(other.out / rel)
        video, audio = _decode_video.__wrapped__, _decode_audio.__wrapped__  # no caching
        assert _digest(video(a)) == _digest(video(b)), rel
        assert _digest(audio(a)) == _digest(audio(b)), rel
    # same machine and ffmpeg build: every file is byte-identical too
    mine = sorted(p.relative_to(sample_corpus.out) for p in sample_corpus.out.rglob("*")
                  if p.is_file())
    assert mine == sorted(p.relative_to(other.out) for p in other.out.rglob("*") if p.is_file())
    for rel in mine:
        if rel.name != "corpus.json":
            assert (sample_corpus.out / rel).read_bytes() == (other.out / rel).read_bytes(), rel


def test_another_seed_gives_another_corpus():
    def tables(seed):
        rows = [talking_rows(p) for p in plan_corpus(seed)]
        return pd.DataFrame([r for _, people, _, _ in rows for r in people]), \
            pd.DataFrame([r for _, _, turns, _ in rows for r in turns])

    p0, t0 = tables(0)
    p1, t1 = tables(1)
    assert not p0.equals(p1) and not t0.equals(t1)
    assert not t0[["text"]].equals(t1[["text"]])


def test_speak_in_process_is_the_corpus_speech_without_ffmpeg():
    """:func:`speak`'s in-process decoding (soundfile + soxr, for the espeak clone double's
    hundreds of utterances) against the corpus's ffmpeg one: same length, samples within
    3 % of the peak (2.4 % measured: the two soxr filters), and no ffmpeg process."""
    from unittest import mock

    from omni_core.samples import speech
    from omni_core.samples.speech import PEAK, SENTENCES, Voice, speak, synthesize

    voice = Voice("en-gb-x-rp+m1", 22, 160, "m")
    ref = synthesize(SENTENCES[0], voice)
    with mock.patch.object(speech, "load_audio", side_effect=AssertionError("ffmpeg")):
        fast = speak(SENTENCES[0], voice, in_process=True)
    assert fast.dtype == np.float32 and fast.shape == ref.shape and not fast.flags.writeable
    assert np.abs(fast).max() == pytest.approx(PEAK)
    assert np.abs(fast - ref).max() < 0.03 * PEAK
    assert speak(SENTENCES[0], voice) is not synthesize(SENTENCES[0], voice)  # uncached
    np.testing.assert_array_equal(speak(SENTENCES[0], voice), ref)
    with pytest.raises(MediaError, match="espeak-ng"):
        speak("hello", Voice("xx-nonexistent", 50, 160, "f"), in_process=True)
