"""The input feed: the driver writes the work page by page, Ray Data reads it back block by
block, every row once and in order, never one Python object per input on the driver."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from omni_core.jobs.feed import FeedWriter, rows_per_block
from omni_core.storage import RunFolder

SCHEMA = pa.schema([("source", pa.string()), ("done", pa.list_(pa.string()))])


def _feed(tmp_path, n, per_block):
    w = FeedWriter(RunFolder(tmp_path), "_staging/feed.parquet", per_block, SCHEMA)
    for i in range(n):
        w.add({"source": f"s3://b/v{i:05d}.mp4", "done": [] if i % 3 else [f"c{i}"]})
        assert len(w._page) < per_block  # the driver holds one page at most
    return w.close()


def test_pages_are_row_groups_and_blocks(tmp_path):
    feed = _feed(tmp_path, 10, 4)
    f = pq.ParquetFile(tmp_path / "_staging" / "feed.parquet")
    assert [f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)] == [4, 4, 2]
    assert (len(feed), feed.blocks) == (10, 3)
    assert rows_per_block(100) == 1 and rows_per_block(1_000_000) == 245
    assert rows_per_block(1_000_000, max_blocks=4096) * 4096 >= 1_000_000


def test_ray_data_reads_every_row_once_in_order(tmp_path):
    import ray

    from omni_core.ray_helpers import RayConfig, init_ray, shutdown_ray

    feed = _feed(tmp_path, 23, 5)
    init_ray(RayConfig(num_cpus=1, include_dashboard=False), verbose=False)
    try:
        ds = ray.data.read_datasource(feed.datasource(), override_num_blocks=feed.blocks)
        done = ds.materialize()
        assert done.num_blocks() == 5  # one block per row group: the scheduling grain
        rows = list(done.iter_rows())
    finally:
        shutdown_ray()
    assert [r["source"] for r in rows] == [f"s3://b/v{i:05d}.mp4" for i in range(23)]
    assert list(rows[3]["done"]) == ["c3"] and list(rows[4]["done"]) == []
