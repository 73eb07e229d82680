"""Resume: a finished item is skipped only when its result was made the same way.

Every job records its finished units of work (an input video's plan, a clip's rows, a voice, a
sample's latents, a generated video, a metric's value for an instance) in the job's output as
**parts**: one part holds the records of a batch of items of one kind, finished together by
the worker that computed them, and is written by that worker (the driver never holds every
record). A part lives under ``OUT/_results/<job>/<kind>/<key>/`` as

* ``part-<stamp>-<digest>.items.parquet``: one row per item (``item``, ``parent``,
  ``source``, ``stat``, ``outputs``, ``record``; the record is small JSON: stats, paths,
  metric values), written **last**: it is the part's commit marker;
* ``part-<stamp>-<digest>.<table>.parquet``: the items' rows of each job table (the clip's
  speech segments, face tracks, identities with their embeddings...) in the table's manifest
  schema plus ``_item`` and ``_row``, binary and columnar (embeddings as fixed-size float32
  lists, never decimal text).

So the number of objects grows with the number of batches, not with items x tables, and
deciding what is done is one paged listing of the key's folder plus one read of each items
file (:meth:`ResultStore.index`), never a request per item. At the end of a run the job folds
the items files into one (:meth:`ResultStore.compact`; each row then names the part holding
its tables), so a resume of a finished run reads one file per kind. On an ``s3://`` output the
parts are objects of the bucket, so any node and a resumed run on another machine see them.

The **result key** is a hash of what changes results (the config that matters, each stage's
code version, the identity of every checkpoint); it names the folder, so a changed config,
stage version or checkpoint finds no part and recomputes. A record may also name the input it
came from (recomputed when the input changed size or mtime/ETag: checked against the input
listing's stats when the job has a listing, else one stat per item) and the output files it
made (recomputed when one of them was replaced or removed, e.g. a video a later run with
another checkpoint overwrote). When an item appears in several parts (it was recomputed), the
newest part wins (part names start with a time stamp).

Records are Parquet and JSON (plain rows), never pickles: reading one executes nothing. A
torn or unreadable part counts as absent.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omni_core.errors import OmniError
from omni_core.storage import RunFolder, as_run_folder, stat_key

RESULTS_DIR = "_results"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
ITEMS = "items"
_ITEM_COLUMNS = ("item", "parent", "source", "stat", "outputs", "record")
#: tries of one part's write, and the first pause between them (doubled each time)
PUBLISH_ATTEMPTS = 3
PUBLISH_PAUSE_S = 0.5


def result_key(*parts: Any) -> str:
    """A short hash of everything that changes a result (configs as plain data, stage code
    versions, checkpoint identities): equal keys mean an earlier result can be reused."""
    blob = json.dumps(_plain(list(parts)), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, NaN to None, timestamps to ISO."""
    import numpy as np
    import pandas as pd

    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _file_name(item: str) -> str:
    """A side file's name: the id itself when it is a plain token (clip ids, instance ids),
    else a hash of it (paths and URLs of inputs)."""
    if _SAFE.fullmatch(item) and not item.endswith("."):
        return item
    return "h-" + hashlib.sha256(item.encode()).hexdigest()[:24]


@dataclass
class Entry:
    """One finished item for :meth:`ResultStore.put_part`: its id, its small JSON record, the
    item it belongs to (``parent``: a clip's input), the input it was made from (``source``,
    its stat recorded), the output files it made (``outputs``, their stats recorded) and its
    rows of the job's tables (``tables``: table -> rows, written columnar)."""

    item: str
    record: Mapping[str, Any] = field(default_factory=dict)
    parent: str | None = None
    source: str | None = None
    outputs: Sequence[str] = ()
    tables: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    #: the source's stat when the caller knows it (a listing's), else it is asked
    stat: Sequence[Any] | None = None


@dataclass
class Index:
    """The finished items of one kind under one key (:meth:`ResultStore.index`): an Arrow
    table with one row per item (the newest record's), columns ``item``, ``parent``,
    ``source``, ``stat``, ``outputs``, ``part`` (whose table files hold its rows), ``order``
    (the items file it was read from) and, unless it was read without them, ``record``."""

    table: Any  # pyarrow.Table
    parts: list[str]
    _rows: dict[str, int] | None = None
    _by_part: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def has_records(self) -> bool:
        return "record" in self.table.column_names

    def row_of(self, item: str) -> int | None:
        if self._rows is None:
            self._rows = {v: i for i, v in enumerate(self.table.column("item").to_pylist())}
        return self._rows.get(item)

    def by_part(self) -> dict[str, Any]:
        """Part -> the Arrow array of the items it holds for good (the newest part wins), in
        part order; computed in Arrow (no Python object per item) and kept."""
        if self._by_part is None:
            self._by_part = group_values(self.table, "part", "item", self.parts)
        return self._by_part

    def filter(self, mask: Any) -> Index:
        return Index(self.table.filter(mask), self.parts)


def group_values(table: Any, by: str, values: str, order: Sequence[str] = ()) -> dict[str, Any]:
    """``by`` value -> the Arrow array of ``values`` of its rows (in row order), the keys in
    ``order`` first, then the others sorted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return {}
    pos = pa.array(range(table.num_rows), pa.int64())
    t = pa.table({"k": table.column(by), "v": table.column(values), "p": pos})
    t = t.sort_by([("k", "ascending"), ("p", "ascending")])
    keys = t.column("k").combine_chunks()
    vals = t.column("v").combine_chunks()
    runs = pc.run_end_encode(keys)
    ends = runs.run_ends.to_pylist()
    names = runs.values.to_pylist()
    out, start = {}, 0
    for name, end in zip(names, ends, strict=True):
        out[name] = vals.slice(start, end - start)
        start = end
    first = [k for k in order if k in out]
    return {k: out[k] for k in [*first, *sorted(set(out) - set(first))]}


class ResultStore:
    """The finished items of one job in one output (a folder, a URL or a RunFolder)."""

    def __init__(self, out: RunFolder | str | os.PathLike[str], job: str) -> None:
        self.folder = as_run_folder(out)
        self.prefix = f"{RESULTS_DIR}/{job}"
        self._index: dict[tuple[str, str, bool], Index] = {}

    # -- writing

    def rel(self, kind: str, item: str, ext: str = ".json") -> str:
        """Where a side file of ``item`` (e.g. its latents, ``ext=".safetensors"``) lives in
        the output."""
        name = _file_name(item)
        return f"{self.prefix}/{kind}/_files/{name[-2:]}/{name}{ext}"

    def folder_of(self, kind: str, key: str) -> str:
        return f"{self.prefix}/{kind}/{key}"

    def put(self, kind: str, item: str, key: str, record: Mapping[str, Any], *,
            source: str | None = None, outputs: Iterable[str] = ()) -> None:
        """Record ``item`` as finished under ``key`` (a part of one). ``source``: the input
        it was made from (its size and mtime/ETag are recorded); ``outputs``: files of the
        output it made (their size and mtime are recorded)."""
        self.put_part(kind, key, [Entry(item, record, source=source, outputs=list(outputs))])

    def put_part(self, kind: str, key: str, entries: Sequence[Entry],
                 schemas: Mapping[str, Any] | None = None) -> str | None:
        """Record ``entries`` as finished under ``key``, as one part (see the module
        docstring); returns the part's stem, None for no entries. Each entry's table rows
        are validated against the manifest schema of the table (``schemas`` maps a table to
        its :class:`~omni_core.manifests.Schema` where the name differs).

        A write the storage refuses is tried :data:`PUBLISH_ATTEMPTS` times, pausing
        :data:`PUBLISH_PAUSE_S` and doubling (a storage hiccup passes); then the last error
        is raised and nothing of the part counts (its items file, the commit marker, is
        written last). Rows that break a table's schema are refused at once, untried."""
        import pyarrow as pa

        if not entries:
            return None
        names = sorted(e.item for e in entries)
        digest = hashlib.sha256("\x1f".join(names).encode()).hexdigest()[:12]
        stem = f"part-{time.time_ns():020d}-{digest}"
        base = f"{self.folder_of(kind, key)}/{stem}"
        tables: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            for t, rows in e.tables.items():
                dest = tables.setdefault(t, [])
                dest.extend({**r, "_item": e.item, "_row": i} for i, r in enumerate(rows))
        files = [(f"{base}.{t}.parquet", parquet_bytes(columnar(t, rows, (schemas or {}).get(t))))
                 for t, rows in sorted(tables.items()) if rows]
        cols: dict[str, list[Any]] = {c: [] for c in _ITEM_COLUMNS}
        for e in entries:
            stat = e.stat if e.stat is not None else (
                _stat(e.source) if e.source is not None else None)
            cols["item"].append(e.item)
            cols["parent"].append(e.parent)
            cols["source"].append(e.source)
            cols["stat"].append(None if stat is None else json.dumps(_plain(list(stat))))
            outs = {rel: self._output_stat(rel) for rel in e.outputs}
            cols["outputs"].append(json.dumps(outs, sort_keys=True) if outs else None)
            cols["record"].append(json.dumps(_plain(dict(e.record)), sort_keys=True))
        items = pa.table({c: pa.array(v, pa.string()) for c, v in cols.items()})
        files.append((f"{base}.{ITEMS}.parquet", parquet_bytes(items)))  # the commit, last
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                for rel, data in files:
                    self.folder.write_bytes(rel, data)
                break
            except (OSError, OmniError):
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise
                time.sleep(PUBLISH_PAUSE_S * 2 ** attempt)
        for records in (True, False):  # this process's view stays current without a listing
            idx = self._index.pop((kind, key, records), None)
            if idx is not None:
                self._index[(kind, key, records)] = _append(idx, items, stem)
        return stem

    # -- reading

    def index(self, kind: str, key: str, *, refresh: bool = False,
              records: bool = True) -> Index:
        """The finished items of ``kind`` under ``key``: one listing of the key's folder
        (paged by the filesystem) and one read of each part's items file. Cached; pass
        ``refresh`` after other processes wrote parts. Stats are not checked here
        (:meth:`fresh`). ``records=False`` leaves the records in the files (a driver over
        millions of items holds ids only; :meth:`records` then streams them)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not refresh and (kind, key, records) in self._index:
            return self._index[(kind, key, records)]
        folder = self.folder_of(kind, key)
        cols = [c for c in _ITEM_COLUMNS if records or c != "record"]
        tables, parts = [], set()
        for stem in self._items_stems(kind, key):
            t = self._read(f"{folder}/{stem}.{ITEMS}.parquet", cols)
            if t is None:
                continue  # torn or foreign: absent
            t = _with_part(t, stem, cols)
            tables.append(t)
            parts.update(pc.unique(t.column("part")).to_pylist())
        if tables:
            table = _newest(pa.concat_tables(tables))
        else:
            table = pa.table({c: pa.array([], pa.string()) for c in (*cols, "part", "order")})
        idx = Index(table, sorted(parts))
        self._index[(kind, key, records)] = idx
        return idx

    def _items_stems(self, kind: str, key: str) -> list[str]:
        return sorted(rel.rsplit("/", 1)[-1].removesuffix(f".{ITEMS}.parquet")
                      for rel in self.folder.list(self.folder_of(kind, key))
                      if rel.endswith(f".{ITEMS}.parquet")
                      and not rel.rsplit("/", 1)[-1].startswith("."))

    def get(self, kind: str, item: str, key: str) -> dict[str, Any] | None:
        """``item``'s record if it was finished under ``key`` and neither its input nor its
        outputs changed since; else None."""
        idx = self.index(kind, key)
        i = idx.row_of(item)
        if i is None:
            return None
        row = {c: idx.table.column(c)[i].as_py() for c in idx.table.column_names}
        if row["source"] is not None and row["stat"] is not None:
            if _stat(row["source"]) != json.loads(row["stat"]):
                return None
        for rel, stat in json.loads(row["outputs"] or "{}").items():
            if stat is None or self._output_stat(rel) != stat:
                return None
        try:
            return json.loads(row["record"])
        except (TypeError, json.JSONDecodeError):
            return None

    def done(self, kind: str, item: str, key: str) -> bool:
        return self.get(kind, item, key) is not None

    def fresh(self, kind: str, key: str, stats: Mapping[str, Any]) -> Index:
        """:meth:`index` without the items whose ``source`` is absent from ``stats`` (a
        listing's ``source -> stat``) or whose recorded stat differs from it: no request per
        item. Items without a source are kept."""
        import pyarrow as pa

        idx = self.index(kind, key)
        keep = []
        for src, st in zip(idx.table.column("source").to_pylist(),
                           idx.table.column("stat").to_pylist(), strict=True):
            keep.append(src is None or (src in stats and (
                st is None or json.loads(st) == _plain(list(stats[src])))))
        return idx.filter(pa.array(keep, pa.bool_()))

    def tables(self, kind: str, key: str, table: str, index: Index | None = None
               ) -> Iterator[Any]:
        """``table``'s rows of the finished items, one Arrow table per part (only the rows of
        items the part holds for good), with the manifest's column types restored."""
        import pyarrow.compute as pc

        idx = index if index is not None else self.index(kind, key)
        folder = self.folder_of(kind, key)
        for part, items in idx.by_part().items():
            rel = f"{folder}/{part}.{table}.parquet"
            try:
                data = self.folder.read_bytes(rel)
            except FileNotFoundError:
                continue  # the part's items have no row in this table
            t = _read_parquet(data, rel)
            t = t.filter(pc.is_in(t.column("_item"), value_set=items))
            yield _restore(table, t)

    def records(self, index: Index, kind: str | None = None, key: str | None = None,
                batch: int = 4096) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(item, record)`` of every finished item of ``index``, decoded a batch at a time.
        An index read without its records (``records=False``) streams them from its items
        files (``kind`` and ``key`` name them), one file and one batch at a time."""
        if index.has_records:
            t = index.table.select(["item", "record"])
            for b in t.to_batches(max_chunksize=batch):
                yield from zip(b.column(0).to_pylist(), map(json.loads, b.column(1).to_pylist()),
                               strict=True)
            return
        if kind is None or key is None:
            raise ValueError("an index without records needs the kind and key to stream them")
        for order, items in group_values(index.table, "order", "item").items():
            yield from self._file_records(kind, key, order, items, batch)

    def _file_records(self, kind: str, key: str, order: str, items: Any, batch: int
                      ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The records of ``items`` (an Arrow array) in the items file ``order``."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        rel = f"{self.folder_of(kind, key)}/{order}.{ITEMS}.parquet"
        pf = pq.ParquetFile(pa.BufferReader(self.folder.read_bytes(rel)))
        for b in pf.iter_batches(batch_size=batch, columns=["item", "record"]):
            b = b.filter(pc.is_in(b.column(0), value_set=items))
            yield from zip(b.column(0).to_pylist(), map(json.loads, b.column(1).to_pylist()),
                           strict=True)

    def compact(self, kind: str, key: str) -> int:
        """Fold the items files of ``kind`` under ``key`` into one (each row naming the part
        that holds its tables), so that the next resume reads one file instead of one per
        part; the parts' table files stay. The folded file is written a batch at a time from
        the old ones (no record of every item held at once), before the old items files are
        removed: a kill in between leaves both, which read the same. Returns the files
        folded."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        folder = self.folder_of(kind, key)
        stems = self._items_stems(kind, key)
        if len(stems) < 2:
            return 0
        idx = self.index(kind, key, refresh=True, records=False)
        stem = f"part-{time.time_ns():020d}-compact"
        rel = f"{folder}/{stem}.{ITEMS}.parquet"
        schema = pa.schema([(c, pa.string()) for c in (*_ITEM_COLUMNS, "part")])
        by_order = group_values(idx.table, "order", "item")
        path = self.folder.local(rel, fetch=False)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with pq.ParquetWriter(str(tmp), schema, compression="zstd") as w:
            for order, items in by_order.items():
                data = self.folder.read_bytes(f"{folder}/{order}.{ITEMS}.parquet")
                pf = pq.ParquetFile(pa.BufferReader(data))
                cols = [c for c in (*_ITEM_COLUMNS, "part") if c in pf.schema_arrow.names]
                for b in pf.iter_batches(batch_size=8192, columns=cols):
                    t = pa.Table.from_batches([b])
                    t = t.filter(pc.is_in(t.column("item"), value_set=items))
                    w.write_table(_with_part(t, order, list(_ITEM_COLUMNS)).select(
                        schema.names).cast(schema))
        os.replace(tmp, path)
        self.folder.publish(rel)
        for s in stems:
            self.folder.remove(f"{folder}/{s}.{ITEMS}.parquet")
        for records in (True, False):
            self._index.pop((kind, key, records), None)
        return len(stems)

    def clear(self, kind: str) -> None:
        """Forget every record of ``kind`` (e.g. ``omni eval --recompute METRIC``)."""
        self.folder.remove(f"{self.prefix}/{kind}")
        for k in [k for k in self._index if k[0] == kind]:
            del self._index[k]

    def refresh(self) -> None:
        """Forget this process's cached indexes (after workers wrote parts)."""
        self._index.clear()

    def _output_stat(self, rel: str) -> list[Any] | None:
        return _stat(self.folder.url(rel))

    def _read(self, rel: str, columns: Sequence[str]) -> Any:
        """An items file's ``columns`` (and its ``part`` column when it was compacted); None
        when it is torn, unreadable or not an items file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(pa.BufferReader(self.folder.read_bytes(rel)))
            names = pf.schema_arrow.names
            if names[:len(_ITEM_COLUMNS)] != list(_ITEM_COLUMNS):
                return None
            return pf.read(columns=[*columns, *(["part"] if "part" in names else [])])
        except (FileNotFoundError, pa.ArrowInvalid, OSError):
            return None


def _stat(url: str) -> list[Any] | None:
    try:
        return list(stat_key(url))
    except OSError:
        return None


def parquet_bytes(table: Any) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _read_parquet(data: bytes, where: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise OmniError(f"{where}: unreadable result part ({exc})") from exc


def columnar(table: str, rows: list[dict[str, Any]], schema: Any = None) -> Any:
    """Rows of a job table as Arrow, validated against the table's manifest schema, with
    ``_item``/``_row`` and every equal-length float list (embeddings) as a fixed-size list."""
    import pyarrow as pa

    from omni_core.manifests import get_schema, rows_frame

    sch = get_schema(schema or table)
    plain = [{k: v for k, v in r.items() if k not in ("_item", "_row")} for r in rows]
    df = rows_frame(sch.name, plain, [])
    t = pa.Table.from_pandas(df, schema=sch.arrow_schema(), preserve_index=False)
    cols, fields = [], []
    for f, col in zip(t.schema, t.columns, strict=True):
        col = col.combine_chunks()
        if pa.types.is_list(f.type) and pa.types.is_float32(f.type.value_type):
            lengths = {n for n in col.value_lengths().to_pylist() if n is not None}
            if len(lengths) == 1:
                fixed = pa.list_(pa.float32(), lengths.pop())
                col = col.cast(fixed)
                f = pa.field(f.name, fixed, f.nullable)
        cols.append(col)
        fields.append(f)
    cols += [pa.array([r["_item"] for r in rows], pa.string()),
             pa.array([r["_row"] for r in rows], pa.int32())]
    fields += [pa.field("_item", pa.string()), pa.field("_row", pa.int32())]
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def _restore(table: str, t: Any) -> Any:
    """A part's table with the manifest's column types (fixed-size lists back to lists)."""
    import pyarrow as pa

    from omni_core.manifests import SCHEMAS

    sch = SCHEMAS.get(table)
    if sch is None:
        return t
    target = sch.arrow_schema()
    cols, fields = [], []
    for f, col in zip(t.schema, t.columns, strict=True):
        if f.name in target.names:
            want = target.field(f.name).type
            if f.type != want:
                col = col.cast(want)
            f = pa.field(f.name, want, f.nullable)
        cols.append(col)
        fields.append(f)
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def _with_part(t: Any, stem: str, columns: Sequence[str] = _ITEM_COLUMNS) -> Any:
    """An items file's rows with ``part`` (the part holding their tables: the file's own
    stem, or the one a compacted file names) and ``order`` (the file's stem: its time)."""
    import pyarrow as pa

    n = t.num_rows
    part = (t.column("part") if "part" in t.column_names
            else pa.array([stem] * n, pa.string()))
    t = t.select(list(columns))
    return t.append_column("part", part).append_column("order",
                                                       pa.array([stem] * n, pa.string()))


def _newest(table: Any) -> Any:
    """One row per item: the one of the newest items file (names sort by time; within a
    file, the later row), computed in Arrow."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    if n == 0 or pc.count_distinct(table.column("item")).as_py() == n:
        return table
    t = pa.table({"item": table.column("item"), "order": table.column("order"),
                  "pos": pa.array(np.arange(n))})
    t = t.sort_by([("item", "ascending"), ("order", "descending"), ("pos", "descending")])
    items = t.column("item").combine_chunks()
    first = np.ones(n, bool)
    first[1:] = pc.not_equal(items.slice(1), items.slice(0, n - 1)).to_numpy(
        zero_copy_only=False)
    keep = np.sort(t.column("pos").to_numpy()[first])
    return table.take(pa.array(keep))


def _append(idx: Index, items: Any, stem: str) -> Index:
    import pyarrow as pa

    t = _with_part(items, stem, [c for c in _ITEM_COLUMNS
                                 if c in idx.table.column_names])
    return Index(_newest(pa.concat_tables([idx.table, t])), sorted({*idx.parts, stem}))
