"""A bounded node-local cache of the shards of a latent set in object storage.

Training from ``stages.<n>.data: s3://bucket/latents`` (any fsspec URL): a rank never copies
the latent set; it downloads a shard when one of *its* micro-batches first needs it, into a
folder of its own that holds at most ``max_bytes`` (and, if set, ``max_shards`` shards). To
make room, the least recently used shards are deleted first, never one the micro-batch being
read needs (those are kept even when they alone pass the bound: a micro-batch spans at most
``micro_batch`` shards). The trainer's read-ahead thread (:func:`omni_model.data.prefetch`)
reads the next micro-batches while the current one trains, so their downloads overlap the
step.

A shard is stored under a name keyed by its URL, size and ETag
(:func:`omni_core.storage.local_input`): a latent set rewritten in place is fetched again, and
the shards a killed run left in the folder are reused by the next one (as the least recently
used, so they leave first). Two runs on one node with the same folder each keep their own
bound; a shard deleted under one of them is simply fetched again.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omni_core.errors import OmniError
from omni_core.storage import join, local_input, stat_key


@dataclass
class CacheStats:
    """What a cache did: shards asked for that were already local (``hits``), downloaded
    (``fetched``, ``fetched_bytes``), deleted to make room (``evicted``)."""

    hits: int = 0
    fetched: int = 0
    fetched_bytes: int = 0
    evicted: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


class ShardCache:
    """Local copies of the shards of the latent set at ``url``, in ``folder``, bounded.

    ``on_evict(name)`` is called before a shard's file is deleted (the dataset closes its
    open handle on it). Thread-safe; the trainer uses one per rank.
    """

    def __init__(self, url: str, folder: str | os.PathLike[str], *, max_bytes: int,
                 max_shards: int = 0, on_evict: Callable[[str], None] | None = None) -> None:
        if max_bytes <= 0:
            raise OmniError(f"the shard cache needs a positive size bound, not {max_bytes} bytes")
        if max_shards < 0:
            raise OmniError(f"max_shards must be 0 (no count bound) or more, not {max_shards}")
        self.url = url
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self.max_shards = int(max_shards)
        self.on_evict = on_evict
        self.stats = CacheStats()
        self._lock = threading.Lock()
        #: name -> (local file, size), least recently used first
        self._lru: OrderedDict[str, tuple[Path, int]] = OrderedDict()
        self._adopted: list[Path] = []
        self.folder.mkdir(parents=True, exist_ok=True)
        self._adopt()

    # ----------------------------------------------------------------------------------------

    def _adopt(self) -> None:
        """Shards an earlier run left here count against the bound, oldest first; they are
        reused when asked for again (same URL, size and ETag) and deleted first otherwise."""
        left = [p for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
        self._adopted = sorted(left, key=lambda p: p.stat().st_mtime_ns)

    def used_bytes(self) -> int:
        return (sum(size for _, size in self._lru.values())
                + sum(_size(p) for p in self._adopted))

    def count(self) -> int:
        """Shards held now (this run's and an earlier run's)."""
        return len(self._lru) + len(self._adopted)

    def hold(self, names: Sequence[str]) -> dict[str, Path]:
        """Local files of the shards ``names`` (downloaded when missing), now the most
        recently used; other shards are deleted, least recently used first, to keep the
        bound. The files stay until a later :meth:`hold` needs their room."""
        want = list(dict.fromkeys(names))
        with self._lock:
            out: dict[str, Path] = {}
            for name in want:
                known = self._lru.get(name)
                if known is not None and known[0].is_file():
                    self._lru.move_to_end(name)
                    self.stats.hits += 1
                    out[name] = known[0]
                    continue
                self._lru.pop(name, None)  # deleted under us (another run): fetch again
                out[name] = self._fetch(name, keep=set(want))
            return out

    def _fetch(self, name: str, keep: set[str]) -> Path:
        url = join(self.url, name)
        try:
            size = int(stat_key(url)[0])
        except FileNotFoundError as exc:
            raise OmniError(f"{url}: shard missing (named by the latent index)") from exc
        except OSError as exc:
            raise OmniError(f"cannot read {url}: {exc}") from exc
        # an earlier run's copy of this shard (same name and size) is expected to be reused
        # as it is: it is spared, and needs no room
        left = [p for p in self._adopted if p.name == name and _size(p) == size]
        self._make_room(0 if left else size, 0 if left else 1, keep, set(left))
        path = local_input(url, self.folder)
        for p in left:
            self._adopted.remove(p)
            if p != path:  # the shard changed since: that copy is stale
                self._delete(p)
        if path in left:
            self.stats.hits += 1
        else:
            self.stats.fetched += 1
            self.stats.fetched_bytes += size
        self._lru[name] = (path, size)
        return path

    def _make_room(self, size: int, count: int, keep: set[str], spare: set[Path]) -> None:
        """Delete shards (an earlier run's first, then the least recently used) until ``size``
        more bytes and ``count`` more shards fit, sparing the shards ``keep`` and the earlier
        run's files ``spare``."""
        def over() -> bool:
            return (self.used_bytes() + size > self.max_bytes
                    or (self.max_shards > 0 and self.count() + count > self.max_shards))

        for path in [p for p in self._adopted if p not in spare]:
            if not over():
                return
            self._adopted.remove(path)
            self._delete(path)
        for name in [n for n in self._lru if n not in keep]:
            if not over():
                return
            path, _ = self._lru.pop(name)
            if self.on_evict is not None:
                self.on_evict(name)
            self._delete(path)
            self.stats.evicted += 1

    def _delete(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        # local_input keeps each copy in a folder of its own (key[:2]/key/name)
        for parent in (path.parent, path.parent.parent):
            if parent != self.folder and self.folder in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    break

    def clear(self) -> None:
        """Delete every shard held (the folder stays)."""
        with self._lock:
            for name in list(self._lru):
                if self.on_evict is not None:
                    self.on_evict(name)
            self._lru.clear()
            self._adopted.clear()
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
