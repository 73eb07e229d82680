"""Importing the released test-case layout, and the fixtures built in it from the corpus; the
release's own two test cases (``../shared/data/release_test_case``) through ``omni benchmark
import`` and ``omni eval``."""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.released import import_released, is_released_layout
from omni_cli.main import main
from omni_core.captions import parse_caption
from omni_core.errors import OmniError
from omni_core.manifests import read_manifest
from omni_core.media import load_audio, probe, read_image, write_mp4


def test_fixtures_import_as_released_layout(bench_fixtures):
    assert is_released_layout(bench_fixtures.bench)
    inst, errors = import_released(bench_fixtures.bench)
    assert errors.empty
    assert sorted(inst.instance_id) == sorted(bench_fixtures.instance_ids)
    assert set(inst.split) == {"S", "M"} and set(inst.task) == {"r2av"}
    for row in inst.itertuples():
        cap = parse_caption(row.caption)
        assert len(row.image_refs) == len(row.audio_refs) == len(cap.subjects)
        assert (row.split == "S") == (len(cap.subjects) == 1)
        assert all(u.start_s is not None for u in cap.speech())
        assert read_image(row.image_refs[0]).shape[0] >= 150  # a face crop, not a thumbnail
        assert probe(bench_fixtures.pred / f"{row.instance_id}.mp4").has_audio
    two = inst[inst.split == "M"].iloc[0]
    assert [p.split("/")[-1] for p in two.image_refs] == ["0.png", "1.png"]


def test_one_set_folder_imports_too(bench_fixtures):
    inst, _ = import_released(bench_fixtures.bench / "oneip")
    assert set(inst.split) == {"S"} and all(i.startswith("oneip_") for i in inst.instance_id)


def test_broken_cases_become_error_rows(bench_fixtures, tmp_path):
    root = tmp_path / "bench"
    shutil.copytree(bench_fixtures.bench, root)
    twoip = root / "twoip"
    case_a, case_b = sorted(p.stem for p in (twoip / "captions").glob("*.json"))
    (twoip / "audios" / case_a / "1.wav").unlink()  # one timbre reference missing
    (twoip / "captions" / f"{case_b}.json").write_text(json.dumps(
        "[SPEAKER_TIMESTAMPS_START]\n{oops}\n[SPEAKER_TIMESTAMPS_END]"))
    (root / "oneip" / "captions" / "ghost.json").write_text(json.dumps("[CO_ANALYSIS_START]"))
    inst, errors = import_released(root)
    assert len(inst) == 2 and set(inst.split) == {"S"}
    reasons = dict(zip(errors["item"], errors["reason"], strict=True))
    assert "1 timbre reference(s) for 2 identity image(s)" in reasons[f"twoip_{case_a}"]
    assert "not JSON" in reasons[f"twoip_{case_b}"]
    assert "missing (identity image folder)" in reasons["oneip_ghost"]
    assert set(errors.stage) == {"import"}


def test_not_a_benchmark(tmp_path):
    with pytest.raises(OmniError, match="not the released layout"):
        import_released(tmp_path)
    assert not is_released_layout(tmp_path)


# --------------------------------------------------------------------------------------------
# the release's own test cases: `omni benchmark import`, then `omni eval` on a prediction made
# from their references

#: instance -> split, identity images, voices, caption speech turns (subject, start, end, text)
RELEASE_CASES = {
    "oneip_9": ("S", ["9.png"], ["9.wav"], [
        ("<sub1>", 0.0, 5.0, "I keep telling myself I\u2019m fine,but some nights it feels "
                             "like I\u2019m just performing calm.")]),
    "twoip_20": ("M", ["0.png", "1.png"], ["0.wav", "1.wav"], [
        ("<sub1>", 2.0, 5.0, "Your smile holds a thousand stories."),
        ("<sub2>", 6.0, 9.0, "Perhaps one of them is about you.")]),
}
#: (height, width) of the identity images, seconds of the voices (44.1 kHz stereo)
IMAGE_SHAPES = {"9.png": (512, 512), "0.png": (554, 408), "1.png": (1203, 872)}
VOICE_S = {"9.wav": 6.2, "0.wav": 6.13, "1.wav": 8.43}


@pytest.fixture(scope="module")
def release(shared_dir) -> Path:
    return shared_dir / "data" / "release_test_case"


@pytest.fixture(scope="module")
def release_parquet(release, tmp_path_factory) -> tuple[Path, str]:
    """``omni benchmark import`` of the release folder: the Parquet and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("release") / "bench_instances.parquet"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["benchmark", "import", str(release), str(out)]) == 0
    return out, buf.getvalue()


def test_release_cases_import(release, release_parquet):
    out, printed = release_parquet
    assert f"2 instances -> {out} (0 skipped)" in printed
    # the release ships .DS_Store files beside the references; none of them is a reference
    assert sorted(p.parent.name for p in release.rglob(".DS_Store")) == ["20", "20"]
    inst = read_manifest(out, "bench_instances")
    assert list(inst.instance_id) == list(RELEASE_CASES)
    for row in inst.itertuples():
        split, images, voices, speech = RELEASE_CASES[row.instance_id]
        set_name, case = row.instance_id.split("_")
        assert (row.task, row.split) == ("r2av", split)
        assert list(row.image_refs) == [str(release / set_name / "imgs" / case / n)
                                        for n in images]
        assert list(row.audio_refs) == [str(release / set_name / "audios" / case / n)
                                        for n in voices]
        assert pd.isna(row.source_video) and pd.isna(row.driving_audio)
        cap_file = release / set_name / "captions" / f"{case}.json"
        assert row.caption == json.loads(cap_file.read_text(encoding="utf-8"))  # a JSON string
        cap = parse_caption(row.caption)
        assert len(cap.subjects) == len(images)
        assert [(u.subject, u.start_s, u.end_s, u.text) for u in cap.speech()] == speech
        for path in row.image_refs:
            assert read_image(path).shape == (*IMAGE_SHAPES[Path(path).name], 3)
        for path in row.audio_refs:
            info = probe(path)
            assert (info.sample_rate, info.channels) == (44100, 2)
            assert abs(info.duration_s - VOICE_S[Path(path).name]) < 0.01


def test_hidden_files_beside_the_references_are_ignored(release, tmp_path):
    """A copy of the release made on macOS: AppleDouble ``._*`` companions next to every file
    (images, voices, captions) and a hidden folder; the import sees the same two cases."""
    root = tmp_path / "release_test_case"
    for src in release.rglob("*"):
        dst = root / src.relative_to(release)
        if src.is_dir():
            dst.mkdir(parents=True)
            continue
        os.symlink(src, dst)
        (dst.parent / f"._{dst.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (root / ".Trashes" / "captions").mkdir(parents=True)
    inst, errors = import_released(root)
    assert errors.empty, errors.reason.tolist()
    ref, _ = import_released(release)
    assert list(inst.instance_id) == list(ref.instance_id)
    for a, b in zip(inst.itertuples(), ref.itertuples(), strict=True):
        assert [Path(p).name for p in a.image_refs] == [Path(p).name for p in b.image_refs]
        assert [Path(p).name for p in a.audio_refs] == [Path(p).name for p in b.audio_refs]
        assert a.caption == b.caption


def make_predictions(inst: pd.DataFrame, out: Path) -> Path:
    """``<instance_id>.mp4`` per instance in the model's clip geometry (121 frames at 24 fps,
    16 kHz sound; half its 704x1280 picture, to keep the test quick): the identity images side
    by side on every frame, the reference voices one after the other."""
    import cv2

    from omni_model.flavors import Geometry

    geo = Geometry()
    h, w = geo.height // 2, geo.width // 2
    out.mkdir(parents=True, exist_ok=True)
    for row in inst.itertuples():
        canvas = np.full((h, w, 3), 40, np.uint8)
        tile = w // len(row.image_refs)
        for k, path in enumerate(row.image_refs):
            img = read_image(path)
            s = min(h / img.shape[0], tile / img.shape[1])
            img = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)),
                             interpolation=cv2.INTER_AREA)
            y, x = (h - img.shape[0]) // 2, k * tile + (tile - img.shape[1]) // 2
            canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
        voice = np.concatenate([load_audio(p, geo.sample_rate) for p in row.audio_refs])
        write_mp4(out / f"{row.instance_id}.mp4", np.repeat(canvas[None], geo.frames, axis=0),
                  geo.fps, voice, geo.sample_rate)
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)  # every metric's debug twin on two 5 s clips: minutes on 2 CPUs
def test_eval_on_release_cases_with_debug_weights(release_parquet, tmp_path, judge,
                                                  monkeypatch, capsys):
    """``omni eval`` with every metric's debug twin on predictions made from the two release
    cases: every metric scores both (Speaker Confusion, multi-person only, the two-person one)
    through a judge stub; without a judge it is not computed, with the reason."""
    from evaluation.tables import PAPER_ORDER

    parquet, _ = release_parquet
    inst = read_manifest(parquet, "bench_instances")
    pred = make_predictions(inst, tmp_path / "pred")
    for row in inst.itertuples():
        info = probe(pred / f"{row.instance_id}.mp4")
        assert (info.n_frames, info.fps, info.sample_rate) == (121, 24.0, 16000)

    url, st = judge
    st["default"] = "0"
    monkeypatch.setenv("OMNI_JUDGE_BASE_URL", url)
    monkeypatch.setenv("OMNI_JUDGE_MODEL", "stub-judge")
    monkeypatch.delenv("OMNI_JUDGE_API_KEY", raising=False)
    out = tmp_path / "eval"
    argv = ["eval", "--bench", str(parquet), "--pred", str(pred), "--quiet",
            "--name", "release refs", "--set", "spk_conf.n_frames=2"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| release refs |" in printed and "debug weights: scores are not meaningful" in printed

    res = pd.read_parquet(out / "results.parquet")
    per_instance = {"oneip_9": {"aes", "viclip", "id_sim", "pq", "clap", "wer", "t_sim",
                                "sync_c", "sync_d"}}
    per_instance["twoip_20"] = per_instance["oneip_9"] | {"spk_conf"}
    assert {k: set(g.metric) for k, g in res.groupby("instance_id")} == per_instance
    assert set(res.status) == {"ok"}, res[res.status != "ok"][["metric", "reason"]].to_string()
    assert all(math.isfinite(v) for v in res.value)
    assert st["requests"] and {r["body"]["model"] for r in st["requests"]} == {"stub-judge"}
    summary = json.loads((out / "summary.json").read_text())["details"]
    assert summary["instances"] == 2 and not summary["missing_predictions"]
    assert summary["note"] == "debug weights: scores are not meaningful"
    row = summary["table"]["r2av"]
    assert set(PAPER_ORDER) <= set(row)
    for cell in row.values():  # every cell filled; ID-Sim and T-Sim for S and for M
        assert "-" not in cell.replace("-0", "0").split("/"), row
    assert row["id_sim"].count("/") == row["t_sim"].count("/") == 1

    monkeypatch.delenv("OMNI_JUDGE_BASE_URL")
    monkeypatch.delenv("OMNI_JUDGE_MODEL")
    alone = tmp_path / "no_judge"
    assert main([*argv, "--metrics", "spk_conf", "--out", str(alone)]) == 0
    res = pd.read_parquet(alone / "results.parquet")
    assert res[["instance_id", "status"]].values.tolist() == [["twoip_20", "not_computed"]]
    assert "no judge configured (OMNI_JUDGE_BASE_URL, OMNI_JUDGE_MODEL)" in res.reason.iloc[0]
    table = json.loads((alone / "summary.json").read_text())["details"]["table"]["r2av"]
    assert table["spk_conf"] == "-"
