import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omni_core import manifests as m
from omni_core.errors import ManifestError

REQUIRED = ["videos", "clips", "speech_segments", "face_tracks", "identities", "references",
            "samples", "eval_results", "errors"]


def test_required_tables_registered():
    assert set(REQUIRED) <= set(m.SCHEMAS)


@pytest.mark.parametrize("name", sorted(m.SCHEMAS))
def test_dummy_rows_round_trip(tmp_path, name):
    df = m.SCHEMAS[name].dummy(3)
    path = m.write_manifest(df, name, tmp_path / f"{name}.parquet")
    meta = pq.read_schema(path).metadata
    assert meta[m.SCHEMA_KEY] == name.encode()
    back = m.read_manifest(path)
    assert list(back.columns) == m.SCHEMAS[name].column_names
    assert len(back) == 3
    pd.testing.assert_frame_equal(back, m.read_manifest(path, name))


def test_validation_on_write(tmp_path):
    clips = m.CLIPS.dummy(2)
    with pytest.raises(ManifestError, match="unknown column"):
        m.write_manifest(clips.assign(extra=1), "clips", tmp_path / "c.parquet")
    with pytest.raises(ManifestError, match="missing column"):
        m.write_manifest(clips.drop(columns=["fps"]), "clips", tmp_path / "c.parquet")
    with pytest.raises(ManifestError, match="'video_id' has 1 null"):
        bad = clips.copy()
        bad.loc[0, "video_id"] = None
        m.write_manifest(bad, "clips", tmp_path / "c.parquet")
    with pytest.raises(ManifestError, match="duplicate key"):
        m.write_manifest(clips.assign(clip_id="same"), "clips", tmp_path / "c.parquet")
    with pytest.raises(ManifestError, match="start_s > end_s"):
        m.write_manifest(clips.assign(start_s=5.0, end_s=1.0), "clips", tmp_path / "c.parquet")
    with pytest.raises(ManifestError, match="outside"):
        m.write_manifest(m.REFERENCES.dummy(1, kind="video"), "references", tmp_path / "r.pq")
    with pytest.raises(ManifestError, match="n_frames"):
        m.write_manifest(clips.assign(n_frames="many"), "clips", tmp_path / "c.parquet")
    assert not (tmp_path / "c.parquet").exists()


def test_version_and_name_mismatch_are_clear(tmp_path):
    path = m.write_manifest(m.CLIPS.dummy(1), "clips", tmp_path / "c.parquet")
    with pytest.raises(ManifestError, match="schema clips v2 found, videos v1 expected"):
        m.read_manifest(path, "videos")
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[m.VERSION_KEY] = b"0"
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(ManifestError, match="clips v0 found, clips v2 expected"):
        m.read_manifest(path)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), plain)
    with pytest.raises(ManifestError, match="no omni schema stamp"):
        m.read_manifest(plain)
    (tmp_path / "junk.parquet").write_text("nope")
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        m.read_manifest(tmp_path / "junk.parquet")


def test_shard_directory(tmp_path):
    d = tmp_path / "errors"
    rows = m.ERRORS.dummy(4)
    m.write_manifest(rows.iloc[:2], "errors", d / "part-0.parquet")
    m.write_manifest(rows.iloc[2:], "errors", d / "part-1.parquet")
    assert len(m.read_manifest(d, "errors")) == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    assert m.read_manifest(empty, "errors").empty
    with pytest.raises(ManifestError, match="not found"):
        m.read_manifest(tmp_path / "absent")


def test_nested_columns_keep_their_values(tmp_path):
    df = m.FACE_TRACKS.dummy(1, frame_indices=[[0, 5, 10]],
                             boxes=[[[1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]]])
    back = m.read_manifest(m.write_manifest(df, "face_tracks", tmp_path / "t.parquet"))
    assert list(back.loc[0, "frame_indices"]) == [0, 5, 10]
    assert [list(b) for b in back.loc[0, "boxes"]][2] == [3, 4, 5, 6]
    with pytest.raises(ManifestError):  # a box has 4 numbers
        m.FACE_TRACKS.dummy(1, boxes=[[[1, 2, 3]]])


def test_stable_id():
    a = m.stable_id("videos/a.mp4", "abc", 0.0, 5.0)
    assert a == m.stable_id("videos/a.mp4", "abc", 0.0, 5.0)
    assert a != m.stable_id("videos/a.mp4", "abc", 0.0, 5.04)
    assert len(a) == 16
