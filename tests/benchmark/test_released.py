"""Importing the released test-case layout, and the fixtures built in it from the corpus."""

import json
import shutil

import pytest

from benchmark.released import import_released, is_released_layout
from omni_core.captions import parse_caption
from omni_core.errors import OmniError
from omni_core.media import probe, read_image


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
