"""The result store: an item is skipped only when it was finished under the same result key,
from the same input, and its outputs are still the ones it made."""

from __future__ import annotations

import os

from omni_core.jobs import ResultStore, result_key
from omni_core.storage import RunFolder, stat_key


def test_a_record_counts_only_under_its_key(tmp_path):
    store = ResultStore(tmp_path, "toy")
    store.put("clips", "c1", "k1", {"n": 1})
    assert store.get("clips", "c1", "k1") == {"n": 1} and store.done("clips", "c1", "k1")
    assert store.get("clips", "c1", "k2") is None  # another config, version or checkpoint
    assert not store.done("clips", "c2", "k1")
    store.put("clips", "c1", "k2", {"n": 2})  # recomputed under the new key
    assert store.get("clips", "c1", "k2") == {"n": 2} and not store.done("clips", "c1", "k1")
    store.clear("clips")
    assert not store.done("clips", "c1", "k2")


def test_result_key_changes_with_what_changes_results():
    base = result_key({"fps": 24}, {"audio": 1})
    assert base == result_key({"fps": 24}, {"audio": 1}) and len(base) == 16
    assert base != result_key({"fps": 25}, {"audio": 1})
    assert base != result_key({"fps": 24}, {"audio": 2})  # a stage's code version


def test_a_torn_or_foreign_record_is_absent(tmp_path):
    store = ResultStore(tmp_path, "toy")
    store.put("clips", "c1", "k", {"n": 1})
    path = tmp_path / store.rel("clips", "c1")
    path.write_text('{"item": "c1", "key": "k", "rec')  # killed mid-write elsewhere
    assert store.get("clips", "c1", "k") is None
    path.write_text('{"item": "other", "key": "k", "record": {}}')
    assert store.get("clips", "c1", "k") is None


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


def test_paths_and_urls_as_items_get_safe_file_names(tmp_path):
    store = ResultStore(tmp_path, "toy")
    for item in ("s3://bucket/a b/$(rm -rf x).mp4", "/abs/../x.mp4", "c" * 200, "ok-id_1.2"):
        store.put("inputs", item, "k", {"item": item})
        rel = store.rel("inputs", item)
        assert rel.startswith("_results/toy/inputs/") and ".." not in rel and " " not in rel
        assert store.get("inputs", item, "k") == {"item": item}
    assert store.rel("inputs", "ok-id_1.2").endswith("/ok-id_1.2.json")


def test_records_on_a_remote_output_resume_on_another_machine(s3, tmp_path):
    bucket = s3.bucket()
    fs = s3.fs()
    source = f"{bucket}/in/talk.mp4"
    fs.pipe_file(source.removeprefix("s3://"), b"video bytes")
    first = ResultStore(RunFolder(f"{bucket}/run", staging=tmp_path / "node1"), "inpair")
    first.put("inputs", source, "k1", {"clip_ids": ["c1", "c2"]}, source=source)
    first.put("clips", "c1", "k1", {"tables": {"clips": [{"clip_id": "c1"}]}})
    assert fs.exists(f"{bucket}/run/{first.rel('clips', 'c1')}".removeprefix("s3://"))
    # a fresh machine: nothing staged, only the bucket
    again = ResultStore(RunFolder(f"{bucket}/run", staging=tmp_path / "node2"), "inpair")
    assert again.get("inputs", source, "k1") == {"clip_ids": ["c1", "c2"]}
    assert again.done("clips", "c1", "k1") and not again.done("clips", "c2", "k1")
    again.put("clips", "c2", "k1", {"tables": {}})
    assert first.done("clips", "c2", "k1")
    assert not (tmp_path / "node2" / "_results").exists()  # records go straight to the bucket
    # another configuration sees nothing; a changed input is planned again
    assert again.get("inputs", source, "k2") is None
    stat = stat_key(source)
    fs.pipe_file(source.removeprefix("s3://"), b"other bytes")
    assert stat_key(source) != stat and again.get("inputs", source, "k1") is None
