"""The scale benchmark's parts at a small N: synthetic parts the real merge accepts, the same
manifests whether sharded or not, a resume on S3 counted at the server, the growth fit."""

from __future__ import annotations

import json

import pandas as pd

from bench import scale
from omni_core.manifests import read_manifest


def test_synthetic_parts_merge_like_a_run_and_shard_to_the_same_rows(tmp_path, monkeypatch):
    made = scale.write_synthetic_run(str(tmp_path / "a"), 150)
    assert len(made["inputs"]) == 38 and made["parts"] == 3 + 1  # 64-clip parts + plans
    one = scale.finish_run(str(tmp_path / "a"), made["inputs"])
    assert one["complete"] == 38 and one["clips"] == 150 and one["shards"] == 1
    assert one["counts"]["face_tracks"] == 300 and one["counts"]["videos"] == 38
    # the 3 clip parts' items files are folded into one (one plan part: nothing to fold)
    folder = tmp_path / "a" / "_results" / "inpair"
    assert len(list((folder / "clips").rglob("*.items.parquet"))) == 1
    assert len(list((folder / "inputs").rglob("*.items.parquet"))) == 1
    monkeypatch.setattr(scale, "SHARD_CLIPS", 40)
    scale.write_synthetic_run(str(tmp_path / "b"), 150)
    four = scale.finish_run(str(tmp_path / "b"), made["inputs"])
    assert four["shards"] == 4 and four["counts"] == one["counts"]
    for t in ("clips", "identities", "videos"):
        single = read_manifest(tmp_path / "a" / f"{t}.parquet")
        sharded = read_manifest(tmp_path / "b" / f"{t}.parquet")
        assert (tmp_path / "b" / f"{t}.parquet").is_dir()
        pd.testing.assert_frame_equal(single, sharded)
    emb = read_manifest(tmp_path / "a" / "identities.parquet").embedding
    assert all(len(e) == 512 for e in emb)  # back to the manifest's variable lists


def test_merge_measured_in_a_fresh_process(tmp_path):
    m = scale.measure_merge(130, tmp_path)
    assert m["rows"]["clips"] == 130 and m["complete_inputs"] == 33
    assert m["result_objects"] == 3 * 7 + 1 * 2  # tables + items per part, before folding
    assert 0 < m["driver_peak_rss_over_baseline_gb"] < 1 and m["merge_cpu_s"] > 0


def test_a_resume_on_s3_is_counted_at_the_server():
    r = scale.measure_s3_resume(120)
    assert r["inputs"] == 30 and r["requests"] == sum(r["by_method"].values())
    assert r["requests"] <= 12 and r["requests_listing_inputs"] >= 1  # not one per clip
    json.dumps(r)


def test_growth_exponent_fit():
    assert abs(scale.fit_exponent([1000, 10000, 100000], [1.0, 10.0, 100.0]) - 1.0) < 1e-9
    assert abs(scale.fit_exponent([1000, 4000], [1.0, 16.0]) - 2.0) < 1e-9
    assert scale.fit_exponent([1000], [1.0]) is None
