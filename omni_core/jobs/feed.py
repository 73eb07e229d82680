"""A job's input rows fed to Ray Data without one Python object per row on the driver.

The driver writes the rows of the work to do page by page (:class:`FeedWriter`: a page of
rows at a time, each page a row group of a Parquet file in the run's output, published so
every node can read it); Ray Data reads it through a datasource with one read task per row
group, each yielding one block. The driver's memory holds one page, not the list of
inputs. ``rows_per_block`` sets the scheduling grain: one input per block while there are at
most ``max_blocks`` inputs (a small run balances exactly as before), more per block above
that, so a million inputs make ``max_blocks`` read tasks, not a million.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omni_core.storage import RunFolder

#: read tasks (blocks) at most in one feed
MAX_BLOCKS = 4096


def rows_per_block(n: int, max_blocks: int = MAX_BLOCKS) -> int:
    return max(1, math.ceil(n / max(1, max_blocks)))


@dataclass(frozen=True)
class InputFeed:
    """A written feed: its file in the run folder, its row count and rows per block."""

    folder: RunFolder
    rel: str
    rows: int
    per_block: int

    def __len__(self) -> int:
        return self.rows

    @property
    def blocks(self) -> int:
        return max(1, math.ceil(self.rows / self.per_block))

    def datasource(self) -> Any:
        """The Ray Data datasource reading it: one read task per row group."""
        return _datasource(self)


class FeedWriter:
    """Write rows (dicts of the same string/list columns) as a feed; :meth:`close` publishes
    it. The rows of one page are held until the page is full."""

    def __init__(self, folder: RunFolder, rel: str, per_block: int, schema: Any) -> None:
        self.folder, self.rel, self.per_block = folder, rel, per_block
        self.schema = schema  # a pyarrow schema
        self.path = folder.local(rel, fetch=False)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._writer: Any = None
        self._page: list[Mapping[str, Any]] = []
        self.rows = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self._page.append(row)
        if len(self._page) >= self.per_block:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._page:
            return
        table = pa.Table.from_pylist(list(self._page), schema=self.schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, self.schema)
        self._writer.write_table(table, row_group_size=self.per_block)
        self.rows += len(self._page)
        self._page = []

    def close(self) -> InputFeed:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            os.replace(self._tmp, self.path)
            self.folder.publish(self.rel)
        return InputFeed(self.folder, self.rel, self.rows, self.per_block)


def _datasource(feed: InputFeed) -> Any:
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class FeedDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            tasks = []
            for g in range(feed.blocks):
                n = min(feed.per_block, feed.rows - g * feed.per_block)
                meta = BlockMetadata(num_rows=n, size_bytes=None, exec_stats=None,
                                     input_files=None)
                tasks.append(ReadTask(_reader(feed.folder, feed.rel, g), meta))
            return tasks

    return FeedDatasource()


def _reader(folder: RunFolder, rel: str, group: int) -> Any:
    def read() -> list[Any]:
        import pyarrow.parquet as pq

        return [pq.ParquetFile(folder.local(rel)).read_row_group(group)]

    return read
