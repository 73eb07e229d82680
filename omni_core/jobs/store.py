"""Resume: a finished item is skipped only when its result was made the same way.

Every job records each finished unit of work (an input video's plan, a clip's rows, a voice, a
sample's latents, a generated video, a metric's value for an instance) as one small JSON
record in the job's output, ``OUT/_results/<job>/<kind>/<shard>/<item>.json``, written
atomically through the output's :class:`~omni_core.storage.RunFolder` (for an ``s3://`` output
the records are objects of the bucket, so any node and a resumed run on another machine see
them). A record holds the **result key** it was made with: a hash of what changes results (the
config that matters, each stage's code version, the identity of every checkpoint). A rerun
skips an item only when its record exists *and* carries the current key; a changed config,
stage version or checkpoint recomputes it. A record may also name the input it came from
(recomputed when the input changed size or mtime/ETag) and the output files it made
(recomputed when one of them was replaced or removed, e.g. a video a later run with another
checkpoint overwrote).

Records are JSON (plain rows), never pickles: reading one executes nothing. A torn or
unreadable record counts as absent.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from omni_core.storage import RunFolder, as_run_folder, stat_key

RESULTS_DIR = "_results"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


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
    """The record's file name: the id itself when it is a plain token (clip ids, instance
    ids), else a hash of it (paths and URLs of inputs)."""
    if _SAFE.fullmatch(item) and not item.endswith("."):
        return item
    return "h-" + hashlib.sha256(item.encode()).hexdigest()[:24]


class ResultStore:
    """The finished items of one job in one output (a folder, a URL or a RunFolder)."""

    def __init__(self, out: RunFolder | str | os.PathLike[str], job: str) -> None:
        self.folder = as_run_folder(out)
        self.prefix = f"{RESULTS_DIR}/{job}"

    def rel(self, kind: str, item: str, ext: str = ".json") -> str:
        """Where ``item``'s record (or a side file with another ``ext``) lives in the output."""
        name = _file_name(item)
        return f"{self.prefix}/{kind}/{name[-2:]}/{name}{ext}"

    def put(self, kind: str, item: str, key: str, record: Mapping[str, Any], *,
            source: str | None = None, outputs: Iterable[str] = ()) -> None:
        """Record ``item`` as finished under ``key``. ``source``: the input it was made from
        (its size and mtime/ETag are recorded); ``outputs``: files of the output it made
        (their size and mtime are recorded)."""
        doc: dict[str, Any] = {"item": item, "key": key, "record": record}
        if source is not None:
            doc["source"] = source
            doc["stat"] = _stat(source)
        outs = list(outputs)
        if outs:
            doc["outputs"] = {rel: self._output_stat(rel) for rel in outs}
        self.folder.write_text(self.rel(kind, item), json.dumps(_plain(doc), sort_keys=True))

    def get(self, kind: str, item: str, key: str) -> dict[str, Any] | None:
        """``item``'s record if it was finished under ``key`` and neither its input nor its
        outputs changed since; else None."""
        try:
            doc = json.loads(self.folder.read_text(self.rel(kind, item)))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict) or doc.get("key") != key or doc.get("item") != item:
            return None
        if "source" in doc:
            stat = _stat(doc["source"])
            if doc.get("stat") is not None and stat != doc["stat"]:
                return None
        for rel, stat in (doc.get("outputs") or {}).items():
            if stat is None or self._output_stat(rel) != stat:
                return None
        return doc["record"]

    def done(self, kind: str, item: str, key: str) -> bool:
        return self.get(kind, item, key) is not None

    def clear(self, kind: str) -> None:
        """Forget every record of ``kind`` (e.g. ``omni eval --recompute METRIC``)."""
        self.folder.remove(f"{self.prefix}/{kind}")

    def _output_stat(self, rel: str) -> list[Any] | None:
        return _stat(self.folder.url(rel))


def _stat(url: str) -> list[Any] | None:
    try:
        return list(stat_key(url))
    except OSError:
        return None
