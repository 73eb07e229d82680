"""A job's manifests from its result parts, written shard by shard in bounded driver memory.

The workers publish their results as parts (:mod:`omni_core.jobs.store`); at the end of a run
the driver turns the parts of every finished item into the job's manifests:

* with at most ``items_per_shard`` finished items a table is one file ``<table>.parquet``,
  sorted by its sort keys (the layout and the bytes of a small run are what they always were);
* above that, ``<table>.parquet`` is a **folder of shards** ``part-00000.parquet``, ...
  (:func:`omni_core.manifests.read_manifest`, pandas and Arrow read the folder as one table).
  The number of shards is ``ceil(items / items_per_shard)``; a row goes to the shard of its
  ``shard_by`` column (a clip id, a video id): ids are hex hashes, so shard ``s`` holds the
  ids of the ``s``-th equal slice of the hash range and the shards, read in order, are sorted
  by that column. Other values (paths, in the errors table) are hashed first.

Each part is read once per table and its rows are appended to per-shard spill files (Arrow
IPC, in a temporary folder of this node); each shard is then sorted and written alone. The
driver holds one part's table and one shard at a time: its memory is bounded by
``items_per_shard`` items' rows, whatever the number of items. The bytes depend only on the
set of finished rows: rows are sorted by the table's keys then by item and row position, and
the shard of a row depends on its id and the item count alone, so work finished in any order,
or killed and resumed, gives the same files.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_core.storage import RunFolder

from .store import Index, ResultStore

#: items (clips) per manifest shard: an in-pair clip's rows take about 100 KB as a validated
#: DataFrame, so a shard of them about 200 MB
ITEMS_PER_SHARD = 2_000
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class TableSpec:
    """How a table is ordered (``sort``) and which column picks a row's shard."""

    sort: tuple[str, ...]
    shard_by: str


def shard_count(items: int, items_per_shard: int = ITEMS_PER_SHARD) -> int:
    return max(1, math.ceil(items / max(1, items_per_shard)))


def shard_of(values: Sequence[str] | Any, shards: int) -> Any:
    """The shard of each value (a sequence of strings or an Arrow string array) as a numpy
    int array: the slice of the 32-bit hash range its leading 8 hex digits (or its
    sha256's, for a value that is not a hex id) fall in. Vectorised: no Python work per id."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(
        list(values), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if shards == 1 or n == 0:
        return np.zeros(n, np.int64)
    arr = pc.fill_null(arr, "")
    head = pc.utf8_slice_codeunits(arr, 0, 8)
    ok = pc.match_substring_regex(head, "^[0-9a-f]{8}$").to_numpy(zero_copy_only=False)
    if not ok.all():  # paths and other ids: their hash's head
        fixed = [hashlib.sha256(v.encode()).hexdigest()[:8]
                 for v in arr.filter(pa.array(~ok)).to_pylist()]
        merged = np.array(head.to_pylist(), dtype=object)
        merged[~ok] = fixed
        head = pa.array(merged.tolist(), pa.string())
    head = pc.cast(head, pa.binary(8))  # every head is 8 ASCII hex digits now
    digits = np.frombuffer(head.buffers()[1], np.uint8)[head.offset * 8:(head.offset + n) * 8]
    nibble = np.where(digits >= ord("a"), digits - (ord("a") - 10), digits - ord("0"))
    value = (nibble.reshape(n, 8).astype(np.uint64)
             << np.arange(28, -1, -4, dtype=np.uint64)).sum(axis=1)
    return ((value * np.uint64(shards)) >> np.uint64(32)).astype(np.int64)


@dataclass
class Source:
    """The parts of one kind of record (``clips``, ``inputs``) that hold a table's rows."""

    kind: str
    key: str
    index: Index


def merge_table(store: ResultStore, sources: Sequence[Source], table: str, spec: TableSpec,
                folder: RunFolder, *, shards: int, extra: Iterable[Mapping[str, Any]] = (),
                rel: str | None = None) -> int:
    """Write manifest ``table`` (``rel``, default ``<table>.parquet``) of ``folder`` from the
    parts of ``sources`` plus ``extra`` rows (e.g. the listing's error rows), in ``shards``
    shards; returns its row count."""
    import pyarrow as pa

    rel = rel or f"{table}.parquet"
    folder.remove(rel)  # a file, or the shards of an earlier run with another count
    parts = _parts(store, sources, table, extra)
    if shards == 1:
        got = list(parts)
        data = pa.concat_tables(got) if got else None
        return _write(data, table, spec, folder, rel)
    total = 0
    with tempfile.TemporaryDirectory(prefix="omni-merge-") as tmp:
        spill = _Spill(Path(tmp), shards)
        for t in parts:
            spill.add(t, shard_of(t.column(spec.shard_by), shards))
        spill.close()
        for s in range(shards):
            data = spill.read(s)
            total += _write(data, table, spec, folder, f"{rel}/part-{s:05d}.parquet")
    return total


def _parts(store: ResultStore, sources: Sequence[Source], table: str,
           extra: Iterable[Mapping[str, Any]]) -> Iterator[Any]:
    from .store import _restore, columnar

    for src in sources:
        yield from store.tables(src.kind, src.key, table, src.index)
    rows = [{**r, "_item": "", "_row": i} for i, r in enumerate(extra)]
    if rows:
        yield _restore(table, columnar(table, rows))


def _write(data: Any, table: str, spec: TableSpec, folder: RunFolder, rel: str) -> int:
    from omni_core.manifests import get_schema, write_manifest

    sch = get_schema(table)
    if data is None or data.num_rows == 0:
        df = sch.empty()
    else:
        keys = [*spec.sort, "_item", "_row"]
        data = data.sort_by([(k, "ascending") for k in keys])
        df = data.drop_columns(["_item", "_row"]).to_pandas()
    write_manifest(df, table, folder.local(rel, fetch=False))
    folder.publish(rel)
    return len(df)


#: rows (as Arrow bytes) gathered from parts before they are split into the shards' spill
#: files: one sort per buffer instead of one filter per part and shard
SPILL_BUFFER_BYTES = 32 << 20


class _Spill:
    """Per-shard Arrow IPC files on local disk: parts' rows gathered up to
    :data:`SPILL_BUFFER_BYTES`, sorted by shard and appended a slice per shard, then read
    back one shard at a time."""

    def __init__(self, folder: Path, shards: int) -> None:
        self.folder = folder
        self.shards = shards
        self.writers: dict[int, Any] = {}
        self.sinks: dict[int, Any] = {}
        self.schema = None
        self.pending: list[Any] = []
        self.pending_shards: list[Any] = []
        self.pending_bytes = 0

    def add(self, table: Any, shard: Any) -> None:
        if self.schema is None:
            self.schema = table.schema
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        self.pending.append(table)
        self.pending_shards.append(shard)
        self.pending_bytes += table.nbytes
        if self.pending_bytes >= SPILL_BUFFER_BYTES:
            self._flush()

    def _flush(self) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.ipc as ipc

        if not self.pending:
            return
        ids = np.concatenate(self.pending_shards)
        order = np.argsort(ids, kind="stable")
        table = pa.concat_tables(self.pending).take(pa.array(order))
        ids = ids[order]
        self.pending, self.pending_shards, self.pending_bytes = [], [], 0
        cuts = [0, *(np.flatnonzero(np.diff(ids)) + 1).tolist(), len(ids)]
        for start, end in zip(cuts[:-1], cuts[1:], strict=True):
            s = int(ids[start])
            if s not in self.writers:
                self.sinks[s] = pa.OSFile(str(self.folder / f"{s:05d}.arrow"), "wb")
                self.writers[s] = ipc.new_stream(self.sinks[s], self.schema)
            self.writers[s].write_table(table.slice(start, end - start))

    def close(self) -> None:
        self._flush()
        for s, w in self.writers.items():
            w.close()
            self.sinks[s].close()

    def read(self, s: int) -> Any:
        import pyarrow as pa
        import pyarrow.ipc as ipc

        path = self.folder / f"{s:05d}.arrow"
        if not path.exists():
            return None
        with pa.memory_map(str(path)) as src:
            data = ipc.open_stream(src).read_all()
        os.unlink(path)
        return data
