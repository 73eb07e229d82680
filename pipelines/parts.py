"""Resumable results of a curation run: one small JSON part per unit of work, merged at the end.

A run writes every finished unit (one input video's probe and clip plan; one clip's rows of
every manifest table) atomically to ``OUT/_parts/<config hash>/``, through the run's
:class:`omni_core.storage.RunFolder`: for an ``s3://`` output the parts are objects of the
bucket, so every node of a cluster, and a resumed run on another machine, sees them. A rerun
with the same configuration skips what has a part, so a killed run resumes where it stopped,
and the final manifests are the sorted merge of all parts: the same bytes whatever order the
units finished in, and whether or not the run was interrupted. A different configuration writes to a
different folder and recomputes everything.

Parts are JSON (plain rows), not pickles: reading them back executes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from omni_core.manifests import get_schema, stable_id, write_manifest
from omni_core.storage import RunFolder, as_run_folder, stat_key

PARTS_DIR = "_parts"


def config_hash(config: Mapping[str, Any]) -> str:
    """Short hash of the settings that change results (the caller leaves out the rest)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, NaN to None, timestamps to ISO."""
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


class PartStore:
    """The parts of one output (a folder, a URL or a :class:`RunFolder`) for one configuration.

    An input's part records the input's :func:`omni_core.storage.stat_key` (size and mtime, or
    size and ETag for a remote object): a changed input is planned again.
    """

    def __init__(self, out: RunFolder | str | os.PathLike[str], config_key: str) -> None:
        self.folder = as_run_folder(out)
        self.prefix = f"{PARTS_DIR}/{config_key}"

    @property
    def out(self) -> Path:
        """The local folder of the output (its staging folder on this node when remote)."""
        return self.folder.root

    @property
    def root(self) -> Path:
        return self.out / self.prefix

    # -- inputs: one part per input file, written by the stage that probes and plans it

    def _input_rel(self, source: str) -> str:
        return f"{self.prefix}/inputs/{stable_id(source)}.json"

    def _read(self, rel: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.folder.read_text(rel))
        except FileNotFoundError:
            return None

    def input_part(self, source: str) -> dict[str, Any] | None:
        """The input's part if the input is unchanged since (same :func:`stat_key`)."""
        part = self._read(self._input_rel(source))
        if part is None:
            return None
        try:
            st = stat_key(source)
        except OSError:
            return part if part.get("stat") is None else None
        return part if part.get("stat") == st else None

    def put_input(self, source: str, clip_ids: Sequence[str],
                  tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        try:
            stat: list[Any] | None = stat_key(source)
        except OSError:
            stat = None
        self._write(self._input_rel(source), {"source": source, "stat": stat,
                                              "clip_ids": list(clip_ids), "tables": tables})

    # -- clips: one part per clip, written by the last stage

    def _clip_rel(self, clip_id: str) -> str:
        return f"{self.prefix}/clips/{clip_id[:2]}/{clip_id}.json"

    def clip_done(self, clip_id: str) -> bool:
        return self.folder.exists(self._clip_rel(clip_id))

    def put_clip(self, clip_id: str, tables: Mapping[str, Sequence[Mapping[str, Any]]],
                 stats: Mapping[str, Any]) -> None:
        self._write(self._clip_rel(clip_id), {"clip_id": clip_id, "tables": tables,
                                              "stats": stats})

    def clip_part(self, clip_id: str) -> dict[str, Any]:
        return json.loads(self.folder.read_text(self._clip_rel(clip_id)))

    def input_complete(self, source: str) -> bool:
        part = self.input_part(source)
        return part is not None and all(self.clip_done(c) for c in part["clip_ids"])

    # -- the final manifests

    def merge(self, sources: Iterable[str], tables: Sequence[str],
              keys: Mapping[str, Sequence[str]]) -> dict[str, pd.DataFrame]:
        """Every table over the parts of ``sources`` (inputs and their clips), sorted by
        ``keys[table]`` so that the result does not depend on completion order."""
        rows: dict[str, list[dict[str, Any]]] = {t: [] for t in tables}
        stats: list[dict[str, Any]] = []
        for source in sorted(sources):
            part = self.input_part(source)
            if part is None:
                continue
            for t, rs in part["tables"].items():
                rows.setdefault(t, []).extend(rs)
            for clip_id in part["clip_ids"]:
                cp = self._read(self._clip_rel(clip_id))
                if cp is not None:
                    for t, rs in cp["tables"].items():
                        rows.setdefault(t, []).extend(rs)
                    stats.append(cp["stats"])
        frames = {}
        for t in tables:
            sch = get_schema(t)
            if rows[t]:
                df = pd.DataFrame(rows[t])
                for col in sch.columns:  # ISO strings in the JSON parts
                    if pa.types.is_timestamp(col.type) and col.name in df:
                        df[col.name] = pd.to_datetime(df[col.name], utc=True)
                df = sch.validate_frame(df)
            else:
                df = sch.empty()
            if len(df):
                df = df.sort_values(list(keys[t]), kind="stable").reset_index(drop=True)
            frames[t] = df
        self.clip_stats = stats
        return frames

    def write(self, frames: Mapping[str, pd.DataFrame]) -> dict[str, Path]:
        """Every table as ``OUT/<table>.parquet`` (written locally, then published); returns
        the local paths."""
        paths = {}
        for t, df in frames.items():
            rel = f"{t}.parquet"
            paths[t] = write_manifest(df, t, self.folder.local(rel, fetch=False))
            self.folder.publish(rel)
        return paths

    def _write(self, rel: str, obj: Mapping[str, Any]) -> None:
        self.folder.write_text(rel, json.dumps(_plain(obj), sort_keys=True))
