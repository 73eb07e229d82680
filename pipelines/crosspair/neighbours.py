"""Nearest identities of other clips, at the scale of a paper's database.

Retrieval (:func:`.identity.find_matches`) needs, for each query identity:

* its *neighbours*: the identities of other clips (of other videos with ``other_video``)
  whose cosine is at least the threshold, best first, at most ``max_neighbours`` -- the
  candidate matches, and what the mutual test reads;
* its *runner-up*: the best cosine below the threshold among identities of other clips that
  have a crop (the margin is measured from it; -1 when there is none).

:func:`neighbour_table` finds them one of two ways (``RetrievalOptions.index``):

* ``exact``: the cosines of a block of queries against the whole database (one matrix
  product per block; ``block_mb`` of float32 per block), the block's same-clip / same-video
  entries masked in place, the neighbours taken with one comparison, then masked too, and the
  runner-up the maximum of what is left of the crop columns. Memory: a block and its
  comparison plus the table, never N x N; time: N^2 d.
* ``hnsw``: a faiss HNSW-flat graph over the embeddings (inner product of L2-normalised
  vectors is the cosine; the flat storage gives exact cosines for what it returns). Each query
  asks for ``hnsw_k`` nearest plus as many as its own clip and video hold (those are masked
  out), and asks again for four times more while no runner-up is among the answers.

Above ``ray_min_identities`` identities the queries are cut into shards of ``shard_rows``,
each scored by a Ray task against the whole database (the embeddings, and the serialised
index, put once in the object store); below, in this process. Either way gives the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from omni_core.ray_helpers import RayConfig

    from .identity import RetrievalOptions

#: the most answers one HNSW query asks for before giving up on finding a runner-up (it then
#: takes the lowest cosine seen: a bound that can only shrink the margin)
MAX_FETCH = 4096
_DOT_CHUNK = 65536


def _codes(values: pd.Series) -> np.ndarray:
    """Integer codes of ``values``; each missing value its own code (never equal to another,
    as ``NaN != NaN`` in the masks this replaces)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    missing = codes < 0
    codes[missing] = len(uniques) + np.arange(int(missing.sum()))
    return codes


class _Groups:
    """Members of each code (a clip, a video), for masking a block's own clip or video."""

    def __init__(self, codes: np.ndarray) -> None:
        self.codes = codes
        self.order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes, minlength=int(codes.max()) + 1 if len(codes) else 0)
        self.sizes = counts
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    def members(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``rows``, member) for every member of each row's group."""
        g = self.codes[rows]
        sizes = self.sizes[g]
        pos = np.repeat(np.arange(len(rows)), sizes)
        offset = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return pos, self.order[np.repeat(self.starts[g], sizes) + offset]


@dataclass
class Space:
    """The database as the search sees it, in an internal order where the identities with a
    crop come first (so that the runner-up's columns are one slice): ``db_row[i]`` is the
    database row of internal identity ``i``."""

    emb: np.ndarray  # (N, d) float32, L2-normalised, C-contiguous
    clip: np.ndarray  # (N,) int64 codes
    video: np.ndarray  # (N,) int64 codes
    n_crop: int  # internal identities [0, n_crop) have a crop
    db_row: np.ndarray  # (N,) int64
    other_video: bool

    @classmethod
    def from_db(cls, db: pd.DataFrame, other_video: bool) -> Space:
        crop = np.array([isinstance(p, str) for p in db.path]) if "path" in db else \
            np.zeros(len(db), bool)
        db_row = np.concatenate([np.flatnonzero(crop), np.flatnonzero(~crop)]).astype(np.int64)
        emb = np.stack(db.embedding.values).astype(np.float32)[db_row]
        return cls(np.ascontiguousarray(emb), _codes(db.clip_id)[db_row],
                   _codes(db.video_id)[db_row], int(crop.sum()), db_row, other_video)

    def __len__(self) -> int:
        return len(self.emb)

    def _groups(self, name: str) -> _Groups:
        """The members of each clip (``clip``) or video (``video``), built once."""
        key = f"_groups_{name}"
        if key not in self.__dict__:
            self.__dict__[key] = _Groups(getattr(self, name))
        return self.__dict__[key]

    def prepare(self) -> Space:
        """Build the group lookups (once, before the space is shipped to workers)."""
        self._groups("clip")
        if self.other_video:
            self._groups("video")
        return self

    def masked(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``rows``, identity) pairs a row may not match: its own clip (itself
        included) and, with ``other_video``, its own video."""
        pos, col = self._groups("clip").members(rows)
        if not self.other_video:
            return pos, col
        vpos, vcol = self._groups("video").members(rows)
        return np.concatenate([pos, vpos]), np.concatenate([col, vcol])

    def mask_count(self, rows: np.ndarray) -> np.ndarray:
        """How many identities each row may not match, at most (its clip, plus its video)."""
        n = self._groups("clip").sizes[self.clip[rows]]
        if self.other_video:
            n = n + self._groups("video").sizes[self.video[rows]]
        return n

    def is_masked(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Elementwise: may ``rows[:, None]`` not match ``cols`` (cols -1 = no answer)?"""
        bad = (cols < 0) | (self.clip[cols] == self.clip[rows][:, None])
        if self.other_video:
            bad |= self.video[cols] == self.video[rows][:, None]
        return bad


@dataclass
class NeighbourTable:
    """Neighbours of each internal identity, CSR: ``index[ptr[i]:ptr[i + 1]]`` with cosines
    ``cosine[...]``, best first (ties: lower database row first); ``runner_up[i]``; rows not
    scored have no neighbours and ``scored[i]`` False."""

    ptr: np.ndarray
    index: np.ndarray
    cosine: np.ndarray
    runner_up: np.ndarray
    scored: np.ndarray

    def lists(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``rows``, flat position in ``index``) for every neighbour of ``rows``."""
        lens = self.ptr[rows + 1] - self.ptr[rows]
        pos = np.repeat(np.arange(len(rows)), lens)
        offset = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        return pos, np.repeat(self.ptr[rows], lens) + offset


@dataclass
class _Part:
    """One shard's answer: neighbour triples and runner-ups of its rows."""

    rows: np.ndarray
    runner_up: np.ndarray
    query: np.ndarray
    match: np.ndarray
    cosine: np.ndarray


def _cat(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)


def _exact_part(space: Space, rows: np.ndarray, threshold: float, block_mb: float) -> _Part:
    n = len(space)
    block = max(1, int(block_mb * 2 ** 20 // (4 * max(n, 1))))
    ru = np.empty(len(rows), np.float32)
    qs, ms, cs = [], [], []
    for b0 in range(0, len(rows), block):
        rb = rows[b0:b0 + block]
        sim = space.emb[rb] @ space.emb.T
        pos, col = space.masked(rb)
        sim[pos, col] = -np.inf
        r, c = np.nonzero(sim >= threshold)
        qs.append(rb[r])
        ms.append(c)
        cs.append(sim[r, c])
        # the runner-up: what is left of the crop columns once the neighbours are taken out
        sim[r, c] = -np.inf
        if space.n_crop:
            best = sim[:, :space.n_crop].max(axis=1)
        else:
            best = np.full(len(rb), -np.inf, np.float32)
        ru[b0:b0 + len(rb)] = np.where(np.isfinite(best), best, -1.0)
        del sim
    return _Part(rows, ru, _cat(qs, np.int64), _cat(ms, np.int64), _cat(cs, np.float32))


def build_hnsw(emb: np.ndarray, opts: RetrievalOptions) -> Any:
    """A faiss HNSW-flat inner-product index of ``emb`` (labels: row numbers)."""
    import faiss

    index = faiss.IndexHNSWFlat(emb.shape[1], opts.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = opts.hnsw_ef_construction
    index.add(emb)
    return index


def _hnsw_part(space: Space, rows: np.ndarray, opts: RetrievalOptions, index: Any) -> _Part:
    import faiss

    n, thr = len(space), opts.threshold
    ru = np.full(len(rows), -1.0, np.float32)
    want = np.minimum(opts.hnsw_k + space.mask_count(rows), n)
    qs, ms, cs = [], [], []
    todo = np.arange(len(rows))
    while todo.size:
        # one search per power of two of answers asked, so that rows batch together
        k_all = np.minimum(2 ** np.ceil(np.log2(np.maximum(want[todo], 1))).astype(np.int64), n)
        again = []
        for k in np.unique(k_all):
            sel = todo[k_all == k]
            params = faiss.SearchParametersHNSW(efSearch=int(max(opts.hnsw_ef_search, k)))
            cos, lab = index.search(space.emb[rows[sel]], int(k), params=params)
            lab = lab.astype(np.int64)
            ok = ~space.is_masked(rows[sel], lab)
            crop_below = ok & (cos < thr) & (lab < space.n_crop) & (lab >= 0)
            found = crop_below.any(axis=1)
            exhausted = (lab < 0).any(axis=1) | (k >= n)
            capped = k >= MAX_FETCH
            done = found | exhausted | capped
            first = np.where(crop_below, cos, -np.inf).max(axis=1)
            lowest = np.where(ok, cos, np.inf).min(axis=1)
            ru[sel] = np.where(found, first, np.where(
                exhausted | ~np.isfinite(lowest), -1.0, np.minimum(lowest, thr)))
            r, c = np.nonzero(ok & (cos >= thr) & done[:, None])
            qs.append(rows[sel][r])
            ms.append(lab[r, c])
            cs.append(cos[r, c])
            again.append(sel[~done])
            want[sel[~done]] = 4 * k
        todo = np.concatenate(again) if again else np.zeros(0, np.int64)
    return _Part(rows, ru, _cat(qs, np.int64), _cat(ms, np.int64), _cat(cs, np.float32))


def score_shard(space: Space, rows: np.ndarray, opts: RetrievalOptions,
                index: Any = None) -> _Part:
    """Neighbours and runner-ups of internal ``rows`` (one shard; ``index``: the HNSW index
    when ``opts.index`` is ``hnsw``, itself or serialised)."""
    if opts.index == "exact":
        return _exact_part(space, rows, opts.threshold, opts.block_mb)
    if isinstance(index, np.ndarray):
        import faiss

        index = faiss.deserialize_index(index)
    return _hnsw_part(space, rows, opts, index)


def _merge(space: Space, parts: list[_Part], max_neighbours: int) -> NeighbourTable:
    n = len(space)
    ru = np.full(n, np.nan, np.float32)
    scored = np.zeros(n, bool)
    for p in parts:
        ru[p.rows] = p.runner_up
        scored[p.rows] = True
    q = _cat([p.query for p in parts], np.int64)
    m = _cat([p.match for p in parts], np.int64)
    c = _cat([p.cosine for p in parts], np.float32)
    order = np.lexsort((space.db_row[m], -c, q))
    q, m, c = q[order], m[order], c[order]
    counts = np.bincount(q, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = (np.arange(len(q)) - starts[q]) < max_neighbours
    q, m, c = q[keep], m[keep], c[keep]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(q, minlength=n))]).astype(np.int64)
    return NeighbourTable(ptr, m, c, ru, scored)


_REMOTE: dict[str, Any] = {}


def _remote(fn: Any) -> Any:
    import ray

    if fn.__name__ not in _REMOTE:
        _REMOTE[fn.__name__] = ray.remote(num_cpus=1)(fn)
    return _REMOTE[fn.__name__]


def use_ray(n: int, opts: RetrievalOptions) -> bool:
    return opts.ray_min_identities is not None and n >= opts.ray_min_identities


def neighbour_table(space: Space, rows: np.ndarray, opts: RetrievalOptions,
                    ray_config: RayConfig | None = None, index: Any = None) -> NeighbourTable:
    """Neighbours and runner-ups of internal ``rows`` (see the module docstring); ``index``:
    an HNSW index of ``space`` already built (else built here when ``opts.index`` asks)."""
    space.prepare()
    if opts.index == "hnsw" and index is None:
        index = build_hnsw(space.emb, opts)
    rows = np.asarray(rows, np.int64)
    if not use_ray(len(space), opts):
        return _merge(space, [score_shard(space, rows, opts, index)], opts.max_neighbours)
    import ray

    from omni_core.ray_helpers import RayConfig, init_ray

    init_ray(ray_config or RayConfig(include_dashboard=False), verbose=False)
    space_ref = ray.put(space)
    blob = None
    if index is not None:
        import faiss

        blob = ray.put(faiss.serialize_index(index))
    step = max(1, opts.shard_rows)
    refs = [_remote(score_shard).remote(space_ref, rows[i:i + step], opts, blob)
            for i in range(0, len(rows), step)]
    return _merge(space, ray.get(refs), opts.max_neighbours)


def row_dots(emb: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``emb[a[i]] . emb[b[i]]`` for every i, in chunks (never the whole gather at once)."""
    out = np.empty(len(a), np.float32)
    for i in range(0, len(a), _DOT_CHUNK):
        ea, eb = emb[a[i:i + _DOT_CHUNK]], emb[b[i:i + _DOT_CHUNK]]
        out[i:i + _DOT_CHUNK] = np.einsum("ij,ij->i", ea, eb)
    return out
