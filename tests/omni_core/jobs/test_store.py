"""The result store: an item is skipped only when it was finished under the same result key,
from the same input, and its outputs are still the ones it made; records are columnar parts
written by the workers, found by one listing."""

from __future__ import annotations

import os

import pytest

from omni_core.jobs import ResultStore, result_key
from omni_core.storage import RunFolder, stat_key


def test_a_record_counts_only_under_its_key(tmp_path):
    store = ResultStore(tmp_path, "toy")
    store.put("clips", "c1", "k1", {"n": 1})
    assert store.get("clips", "c1", "k1") == {"n": 1} and store.done("clips", "c1", "k1")
    assert store.get("clips", "c1", "k2") is None  # another config, version or checkpoint
    assert not store.done("clips", "c2", "k1")
    store.put("clips", "c1", "k2", {"n": 2})  # recomputed under the new key
    assert store.get("clips", "c1", "k2") == {"n": 2}
    assert store.get("clips", "c1", "k1") == {"n": 1}  # going back to k1 reuses its result
    store.put("clips", "c1", "k1", {"n": 3})  # recomputed: the newest part wins
    fresh = ResultStore(tmp_path, "toy")  # (another process: one listing)
    assert fresh.get("clips", "c1", "k1") == {"n": 3} and len(fresh.index("clips", "k1")) == 1
    store.clear("clips")
    assert not store.done("clips", "c1", "k2")
    assert not ResultStore(tmp_path, "toy").done("clips", "c1", "k1")


def test_result_key_changes_with_what_changes_results():
    base = result_key({"fps": 24}, {"audio": 1})
    assert base == result_key({"fps": 24}, {"audio": 1}) and len(base) == 16
    assert base != result_key({"fps": 25}, {"audio": 1})
    assert base != result_key({"fps": 24}, {"audio": 2})  # a stage's code version


def test_a_torn_or_foreign_part_is_absent(tmp_path):
    store = ResultStore(tmp_path, "toy")
    store.put("clips", "c1", "k", {"n": 1})
    store.put("clips", "c2", "k", {"n": 2})
    parts = sorted((tmp_path / store.folder_of("clips", "k")).glob("*.items.parquet"))
    assert len(parts) == 2
    parts[0].write_bytes(parts[0].read_bytes()[:40])  # killed mid-write elsewhere
    (parts[0].parent / ".part-x.items.parquet.123.tmp").write_bytes(b"half")  # a temp file
    again = ResultStore(tmp_path, "toy")
    assert again.get("clips", "c1", "k") is None and again.get("clips", "c2", "k") == {"n": 2}
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), parts[0])  # not a part
    assert ResultStore(tmp_path, "toy").get("clips", "c1", "k") is None


def test_a_part_holds_a_batch_with_its_table_rows_columnar(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from omni_core.jobs.store import Entry
    from omni_core.manifests import get_schema

    store = ResultStore(tmp_path, "toy")
    rows = get_schema("identities").dummy(3).to_dict("records")
    for i, r in enumerate(rows):
        r["clip_id"] = f"c{i}"
        r["embedding"] = np.full(512, i, np.float32)
    stem = store.put_part("clips", "k", [
        Entry(f"c{i}", {"stats": i}, parent="in.mp4", tables={"identities": [rows[i]]})
        for i in range(3)])
    files = sorted(p.name for p in (tmp_path / store.folder_of("clips", "k")).iterdir())
    assert files == [f"{stem}.identities.parquet", f"{stem}.items.parquet"]  # 2 objects
    raw = pq.read_table(tmp_path / store.folder_of("clips", "k") / files[0])
    assert raw.schema.field("embedding").type == pa.list_(pa.float32(), 512)  # binary, fixed
    idx = store.index("clips", "k")
    assert len(idx) == 3 and idx.table.column("parent").to_pylist() == ["in.mp4"] * 3
    assert dict(store.records(idx)) == {"c0": {"stats": 0}, "c1": {"stats": 1},
                                        "c2": {"stats": 2}}
    back = pa.concat_tables(store.tables("clips", "k", "identities"))
    assert back.schema.field("embedding").type == pa.list_(pa.float32())  # the manifest's
    assert back.column("_item").to_pylist() == ["c0", "c1", "c2"]
    assert back.column("embedding")[2].as_py() == [2.0] * 512
    # c1 recomputed in a newer part: only its newest rows are read
    rows[1]["identity_id"] = "recomputed"
    store.put_part("clips", "k", [Entry("c1", {"stats": 9}, tables={"identities": [rows[1]]})])
    again = ResultStore(tmp_path, "toy")
    back = pa.concat_tables(again.tables("clips", "k", "identities"))
    assert sorted(back.column("_item").to_pylist()) == ["c0", "c1", "c2"]
    assert "recomputed" in back.column("identity_id").to_pylist()
    assert again.get("clips", "c1", "k") == {"stats": 9}


def test_a_changed_input_or_a_replaced_output_is_done_again(tmp_path):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"video")
    out = tmp_path / "out"
    out.mkdir()
    store = ResultStore(out, "toy")
    (out / "v.mp4").write_bytes(b"made by k1")
    store.put("videos", "v", "k1", {}, source=str(src), outputs=["v.mp4"])
    assert store.done("videos", "v", "k1")
    (out / "v.mp4").write_bytes(b"made by k2, longer")  # another run overwrote it
    assert not store.done("videos", "v", "k1")
    store.put("videos", "v", "k1", {}, source=str(src), outputs=["v.mp4"])
    assert store.done("videos", "v", "k1")
    src.write_bytes(b"another video")
    os.utime(src, ns=(1, 1))
    assert not store.done("videos", "v", "k1")
    (out / "v.mp4").unlink()
    store.put("videos", "v", "k1", {}, outputs=["v.mp4"])  # an output that is not there
    assert not store.done("videos", "v", "k1")


def test_paths_and_urls_as_items(tmp_path):
    store = ResultStore(tmp_path, "toy")
    for item in ("s3://bucket/a b/$(rm -rf x).mp4", "/abs/../x.mp4", "c" * 200, "ok-id_1.2"):
        store.put("inputs", item, "k", {"item": item})
        rel = store.rel("inputs", item, ".bin")  # a side file's name is safe
        assert rel.startswith("_results/toy/inputs/") and ".." not in rel and " " not in rel
    again = ResultStore(tmp_path, "toy")
    for item in ("s3://bucket/a b/$(rm -rf x).mp4", "/abs/../x.mp4", "c" * 200, "ok-id_1.2"):
        assert again.get("inputs", item, "k") == {"item": item}
    assert store.rel("inputs", "ok-id_1.2").endswith("/ok-id_1.2.json")


def test_records_on_a_remote_output_resume_on_another_machine(s3, tmp_path):
    bucket = s3.bucket()
    fs = s3.fs()
    source = f"{bucket}/in/talk.mp4"
    fs.pipe_file(source.removeprefix("s3://"), b"video bytes")
    first = ResultStore(RunFolder(f"{bucket}/run", staging=tmp_path / "node1"), "inpair")
    first.put("inputs", source, "k1", {"clip_ids": ["c1", "c2"]}, source=source)
    first.put("clips", "c1", "k1", {"tables": {"clips": [{"clip_id": "c1"}]}})
    assert len(fs.find(f"{bucket}/run/{first.folder_of('clips', 'k1')}".removeprefix("s3://"))) == 1
    # a fresh machine: nothing staged, only the bucket
    again = ResultStore(RunFolder(f"{bucket}/run", staging=tmp_path / "node2"), "inpair")
    assert again.get("inputs", source, "k1") == {"clip_ids": ["c1", "c2"]}
    assert again.done("clips", "c1", "k1") and not again.done("clips", "c2", "k1")
    again.put("clips", "c2", "k1", {"tables": {}})
    assert again.done("clips", "c2", "k1")
    first.refresh()  # another machine wrote: a new listing sees it
    assert first.done("clips", "c2", "k1")
    assert not (tmp_path / "node2" / "_results").exists()  # records go straight to the bucket
    # another configuration sees nothing; a changed input is planned again
    assert again.get("inputs", source, "k2") is None
    stat = stat_key(source)
    fs.pipe_file(source.removeprefix("s3://"), b"other bytes")
    assert stat_key(source) != stat and again.get("inputs", source, "k1") is None


def test_compaction_folds_items_files_and_keeps_every_record(tmp_path):
    import pyarrow as pa

    from omni_core.jobs.store import Entry
    from omni_core.manifests import get_schema

    store = ResultStore(tmp_path, "toy")
    rows = get_schema("clips").dummy(4).to_dict("records")
    for i in range(4):
        rows[i]["clip_id"] = f"c{i}"
        store.put_part("clips", "k", [Entry(f"c{i}", {"n": i}, tables={"clips": [rows[i]]})])
    folder = tmp_path / store.folder_of("clips", "k")
    assert len(list(folder.glob("*.items.parquet"))) == 4
    assert store.compact("clips", "k") == 4
    assert len(list(folder.glob("*.items.parquet"))) == 1  # one read for the next resume
    store.put_part("clips", "k", [Entry("c1", {"n": 10}, tables={"clips": [rows[1]]})])
    again = ResultStore(tmp_path, "toy")  # a compacted file and a newer part
    assert {i: r["n"] for i, r in again.records(again.index("clips", "k"))} == {
        "c0": 0, "c1": 10, "c2": 2, "c3": 3}
    back = pa.concat_tables(again.tables("clips", "k", "clips"))
    assert sorted(back.column("_item").to_pylist()) == ["c0", "c1", "c2", "c3"]
    assert again.compact("clips", "k") == 2 and ResultStore(tmp_path, "toy").get(
        "clips", "c1", "k") == {"n": 10}


def test_an_index_without_records_streams_them_from_the_items_files(tmp_path):
    import pyarrow.compute as pc

    from omni_core.jobs.store import Entry, group_values

    store = ResultStore(tmp_path, "toy")
    store.put_part("clips", "k", [Entry(f"c{i}", {"n": i}, parent=f"in{i % 2}")
                                  for i in range(5)])
    store.put_part("clips", "k", [Entry("c3", {"n": 30}, parent="in1")])  # recomputed
    for compacted in (False, True):
        if compacted:
            assert store.compact("clips", "k") == 2
        again = ResultStore(tmp_path, "toy")
        ids = again.index("clips", "k", records=False)
        assert not ids.has_records and "record" not in ids.table.column_names
        assert dict(again.records(ids, "clips", "k", batch=2)) == {
            "c0": {"n": 0}, "c1": {"n": 1}, "c2": {"n": 2}, "c3": {"n": 30}, "c4": {"n": 4}}
        some = ids.filter(pc.is_in(ids.table.column("item"), value_set=pa_strings("c1", "c3")))
        assert dict(again.records(some, "clips", "k")) == {"c1": {"n": 1}, "c3": {"n": 30}}
        # the same records as an index that holds them
        assert dict(again.records(again.index("clips", "k"))) == dict(
            again.records(ids, "clips", "k"))
        by_parent = {p: sorted(v.to_pylist()) for p, v in group_values(
            ids.table, "parent", "item").items()}
        assert by_parent == {"in0": ["c0", "c2", "c4"], "in1": ["c1", "c3"]}


def pa_strings(*values):
    import pyarrow as pa

    return pa.array(list(values), pa.string())


def test_a_refused_write_is_retried_then_raised_and_nothing_counts(tmp_path, monkeypatch):
    from omni_core.errors import OmniError
    from omni_core.jobs import store as store_mod
    from omni_core.jobs.store import Entry

    monkeypatch.setattr(store_mod, "PUBLISH_PAUSE_S", 0.0)
    folder = RunFolder(tmp_path)
    real = folder.write_bytes
    calls = []

    def flaky(rel, data):
        calls.append(rel)
        if len(calls) in failing:
            raise OmniError(f"cannot write {rel}: SlowDown")
        return real(rel, data)

    monkeypatch.setattr(folder, "write_bytes", flaky)
    store = ResultStore(folder, "toy")
    from omni_core.manifests import get_schema

    rows = get_schema("clips").dummy(1).to_dict("records")
    failing = {2, 3}  # the items file of the first try, the table file of the second
    assert store.put_part("clips", "k", [Entry("c0", {"n": 0}, tables={"clips": rows})])
    assert len(calls) == 5 and ResultStore(tmp_path, "toy").get("clips", "c0", "k") == {"n": 0}
    calls.clear()
    failing = set(range(1, 100))  # a storage that keeps refusing
    with pytest.raises(OmniError, match="SlowDown"):
        store.put_part("clips", "k", [Entry("c1", {"n": 1})])
    assert len(calls) == store_mod.PUBLISH_ATTEMPTS
    assert not ResultStore(tmp_path, "toy").done("clips", "c1", "k")
    # rows that break the schema are refused at once, never retried
    calls.clear()
    with pytest.raises(Exception, match="n_frames|int|schema"):
        store.put_part("clips", "k", [Entry("c2", {}, tables={"clips": [
            {**rows[0], "n_frames": "many"}]})])
    assert calls == []
