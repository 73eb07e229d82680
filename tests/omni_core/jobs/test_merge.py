"""The streaming merge: manifests from result parts, one file or a folder of shards, the same
bytes whatever the order and the grouping in which the work finished."""

from __future__ import annotations

import random

import pandas as pd
import pyarrow as pa

from omni_core.jobs.merge import Source, TableSpec, merge_table, shard_count, shard_of
from omni_core.jobs.store import Entry, ResultStore
from omni_core.manifests import get_schema, read_manifest, stable_id
from omni_core.storage import RunFolder

SPEC = TableSpec(("clip_id", "identity_id"), "clip_id")


def _clips(n: int) -> list[Entry]:
    rows = get_schema("identities").dummy(2 * n).to_dict("records")
    out = []
    for i in range(n):
        cid = stable_id("clip", i)
        mine = rows[2 * i: 2 * i + 2]
        for k, r in enumerate(mine):
            r.update(clip_id=cid, identity_id=stable_id(cid, k), embedding=[float(i)] * 8)
        out.append(Entry(cid, {"i": i}, parent="in", tables={"identities": mine}))
    return out


def _publish(root, entries, part_size, seed):
    """The entries finished in a shuffled order, published ``part_size`` at a time."""
    store = ResultStore(root, "toy")
    order = list(entries)
    random.Random(seed).shuffle(order)
    for i in range(0, len(order), part_size):
        store.put_part("clips", "k", order[i:i + part_size])
    return store


def _merge(root, store, shards):
    folder = RunFolder(root)
    idx = store.index("clips", "k", refresh=True)
    n = merge_table(store, [Source("clips", "k", idx)], "identities", SPEC, folder,
                    shards=shards)
    return n, folder.root / "identities.parquet"


def _bytes(path):
    files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
    return [f.read_bytes() for f in files]


def test_the_same_bytes_whatever_the_order_and_grouping_of_the_work(tmp_path, monkeypatch):
    from omni_core.jobs import merge

    entries = _clips(40)
    results = []
    # the last run spills every part on its own (a buffer of one byte): the same bytes
    for seed, part_size, buffer in ((0, 7, None), (1, 40, None), (2, 1, None), (3, 5, 1)):
        if buffer is not None:
            monkeypatch.setattr(merge, "SPILL_BUFFER_BYTES", buffer)
        root = tmp_path / f"run{seed}"
        store = _publish(root, entries, part_size, seed)
        results.append([_bytes(_merge(root, store, s)[1]) for s in (1, 3)])
    assert results[0] == results[1] == results[2] == results[3]
    assert len(results[0][1]) == 3  # three shards


def test_shards_read_in_order_are_the_single_file(tmp_path):
    entries = _clips(50)
    store = _publish(tmp_path, entries, 8, 0)
    n1, one = _merge(tmp_path, store, 1)
    single = read_manifest(one)
    n4, folder = _merge(tmp_path, store, 4)
    assert folder.is_dir() and len(list(folder.glob("*.parquet"))) == 4
    sharded = read_manifest(folder)  # a folder of shards reads as one table
    assert n1 == n4 == 100 and single.clip_id.is_monotonic_increasing
    pd.testing.assert_frame_equal(single, sharded)
    assert pd.read_parquet(folder).shape == single.shape  # pandas reads the folder too
    _merge(tmp_path, store, 1)  # back to one file: the folder of shards is gone
    assert (tmp_path / "identities.parquet").is_file()


def test_a_recomputed_item_counts_once_and_a_foreign_row_never(tmp_path):
    entries = _clips(6)
    store = _publish(tmp_path, entries, 3, 0)
    again = _clips(6)[2]
    again.tables["identities"][0]["speaker"] = "recomputed"
    store.put_part("clips", "k", [again])
    n, path = _merge(tmp_path, store, 1)
    df = read_manifest(path)
    assert n == 12 and (df.speaker == "recomputed").sum() == 1
    # the merge reads only the items of the index it is given
    idx = store.index("clips", "k")
    keep = idx.table.filter(pa.array([i != entries[0].item
                                      for i in idx.table.column("item").to_pylist()]))
    from omni_core.jobs.store import Index

    merge_table(store, [Source("clips", "k", Index(keep, idx.parts))], "identities", SPEC,
                RunFolder(tmp_path), shards=1)
    assert entries[0].item not in set(read_manifest(path).clip_id)


def test_shards_slice_the_id_range_in_order():
    ids = sorted(stable_id("x", i) for i in range(1000))
    s = shard_of(ids, 7).tolist()
    assert s == sorted(s) and set(s) == set(range(7))  # contiguous, ordered, all used
    # the slice of the 32-bit range of the id's first 8 hex digits, the same from Arrow
    assert s == [(int(i[:8], 16) * 7) >> 32 for i in ids]
    assert shard_of(pa.array(ids).slice(500), 7).tolist() == s[500:]
    # a value that is not a hex id (a path, in the errors table) goes by its hash's digits
    import hashlib

    path = "/a/path.mp4"
    want = (int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) * 5) >> 32
    assert shard_of([path, ids[0], path], 5).tolist() == [want, (int(ids[0][:8], 16) * 5) >> 32,
                                                         want]
    assert shard_count(0) == 1 and shard_count(4001, 2000) == 3
