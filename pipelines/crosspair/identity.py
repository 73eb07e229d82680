"""Identity retrieval across clips and videos (the Phantom-Data recipe of paper.md).

Every identity an in-pair run found (one person in one clip, with a mean ArcFace embedding
and, for training subjects, an aligned reference crop) goes into one database. For each
subject of a sample, retrieval looks for the same person elsewhere:

1. candidates: identities of another clip (by default of another video), with a crop;
2. similarity: cosine of the L2-normalised embeddings, at least ``threshold``
   (:mod:`.neighbours` finds them: exact in blocks, or a faiss HNSW index, in this process or
   sharded over Ray tasks);
3. verification, so that one lucky cosine is not enough:
   * mutual (``mutual_top_k`` = k): the two neighbourhoods agree -- fewer than k of the
     match's above-threshold neighbours are strangers to the query (cosine below the
     threshold), and fewer than k of the query's are strangers to the match. The query's
     own other crops are no strangers, so a person seen in many clips is not crowded out;
     a hub close to many people has strangers on either side and fails;
   * ``min_margin``: its cosine exceeds the best cosine that failed the threshold by at
     least this much, so a match sits clearly apart from the rest of the database;
4. near-duplicates removed: a candidate whose crop is pixel for pixel the query's crop (mean
   absolute difference of 64x64 grey thumbnails below ``duplicate_max_diff``, on 0..255) is
   the same picture, not another appearance, and would let the model copy; it is dropped.
   Only the crops of candidate pairs are read, one GET each when remote, in shards.

The result is one row per (query, match) with the cosine, rank, margin and whether it passed,
and the reason when it did not (:func:`find_matches`); :func:`retrieval_scores` measures
precision and recall against a truth labelling of identities to people, and
:func:`compare_matches` one result against another (the approximate index against the exact).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from omni_core.errors import OmniError
from omni_core.manifests import read_manifest
from omni_core.storage import join, read_bytes

from .neighbours import NeighbourTable, Space, build_hnsw, neighbour_table, row_dots, use_ray

if TYPE_CHECKING:
    from omni_core.ray_helpers import RayConfig


@dataclass
class RetrievalOptions:
    """Defaults are for the real ArcFace (buffalo_l), whose same-person cosines across
    clips mostly lie in 0.5-0.8 and different people's below 0.3. Random-weight (debug)
    embeddings crowd into 0.75-1.0: the corpus test uses threshold 0.93, margin 0.02.

    Scale (docs/crosspair.md, "Retrieval at scale"): ``index`` ``exact`` (blocked matrix
    products, ``block_mb`` of cosines at a time) or ``hnsw`` (faiss HNSW-flat, approximate);
    at or above ``ray_min_identities`` identities (null: never) the queries are scored by Ray
    tasks, ``shard_rows`` queries each."""

    threshold: float = 0.5  # cosine of mean ArcFace embeddings
    mutual_top_k: int = 3
    min_margin: float = 0.05
    other_video: bool = True  # matches must come from another video, not just another clip
    max_matches: int = 5  # per query, best first
    duplicate_max_diff: float = 3.0  # mean |a - b| of 64x64 grey thumbnails, 0..255
    thumb_size: int = 64
    #: above-threshold identities kept per identity: candidates and the mutual test's depth
    max_neighbours: int = 32
    index: str = "exact"  # exact | hnsw
    block_mb: float = 256.0  # exact: cosines of one block of queries, in MiB
    hnsw_m: int = 32  # graph degree
    hnsw_ef_construction: int = 100
    hnsw_ef_search: int = 64  # at least the answers asked for
    hnsw_k: int = 16  # answers asked per query, besides its own clip's and video's
    ray_min_identities: int | None = 200_000
    shard_rows: int = 50_000  # queries per Ray task

    def __post_init__(self) -> None:
        if self.index not in INDEXES:
            raise ValueError(f"retrieval.index: one of {', '.join(INDEXES)}, got {self.index}")
        if self.max_neighbours < 1 or self.mutual_top_k < 1:
            raise ValueError("retrieval.max_neighbours and mutual_top_k must be at least 1")


INDEXES = ("exact", "hnsw")


def load_database(runs: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """One row per identity of the in-pair ``runs``: ``identity_id``, ``clip_id``,
    ``video_id``, ``run`` (its folder), ``embedding`` (L2-normalised float32), and its image
    reference if it has one (``reference_id``, ``path`` absolute: a path or a URL like the
    run's, ``frame_index``, ``box``). Runs are folders or URLs (``s3://...``). Identities
    without an embedding are left out."""
    frames = []
    for run in runs:
        root = os.fspath(run)
        ids = read_manifest(join(root, "identities.parquet"), "identities")
        clips = read_manifest(join(root, "clips.parquet"), "clips")[["clip_id", "video_id"]]
        refs = read_manifest(join(root, "references.parquet"), "references")
        refs = refs[refs.kind == "image"][["identity_id", "reference_id", "path",
                                           "frame_index", "box"]]
        refs = refs.drop_duplicates("identity_id")
        df = ids[["identity_id", "clip_id", "embedding"]].merge(clips, on="clip_id",
                                                                how="left")
        df = df.merge(refs, on="identity_id", how="left")
        df["path"] = [None if pd.isna(p) else join(root, p) for p in df.path]
        df["run"] = root
        frames.append(df)
    if not frames:
        raise OmniError("no in-pair runs given")
    db = pd.concat(frames, ignore_index=True)
    db = db[db.embedding.notna()].reset_index(drop=True)
    if db.identity_id.duplicated().any():
        dup = db.identity_id[db.identity_id.duplicated()].iloc[0]
        raise OmniError(f"identity {dup} appears in two runs: give each video to one run")
    emb = np.stack([np.asarray(e, dtype=np.float32) for e in db.embedding]) if len(db) else \
        np.zeros((0, 1), np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.maximum(norms, 1e-12)
    db["embedding"] = list(emb)
    return db.sort_values("identity_id", kind="stable").reset_index(drop=True)


def thumbnail(path: str, size: int = 64) -> np.ndarray:
    """The crop at ``path`` (a path or a URL: one GET, no metadata request) as a size x size
    grey uint8 thumbnail."""
    import io

    import cv2
    from PIL import Image

    try:
        with Image.open(io.BytesIO(read_bytes(path))) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OSError as exc:
        raise OmniError(f"{path}: not a readable image ({exc})") from exc
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA)


def thumbnails(paths: Iterable[str | None], size: int = 64) -> list[np.ndarray | None]:
    """Grey float thumbnails of the crops (None where there is no crop)."""
    return [None if p is None else thumbnail(p, size).astype(np.float32) for p in paths]


def duplicate_pairs(query_paths: list[str | None], match_paths: list[str | None],
                    size: int = 64, max_diff: float = 3.0) -> np.ndarray:
    """For each pair, whether the two crops are the same picture (mean absolute difference of
    their grey thumbnails below ``max_diff`` on 0..255). Each crop of the pairs is read once;
    nothing else is read."""
    out = np.zeros(len(query_paths), bool)
    if max_diff <= 0:
        return out
    thumbs: dict[str, np.ndarray] = {}
    for p in {*query_paths, *match_paths} - {None}:
        thumbs[p] = thumbnail(p, size)
    for i, (a, b) in enumerate(zip(query_paths, match_paths, strict=True)):
        if a is not None and b is not None:
            diff = np.abs(thumbs[a].astype(np.int16) - thumbs[b].astype(np.int16)).mean()
            out[i] = float(diff) < max_diff
    return out


def _duplicates(query_paths: list[str | None], match_paths: list[str | None], n: int,
                o: RetrievalOptions, ray_config: RayConfig | None) -> np.ndarray:
    """:func:`duplicate_pairs` over shards of ``shard_rows`` pairs: Ray tasks when the
    database holds ``ray_min_identities`` or more identities (no crop read on the driver)."""
    if not query_paths or o.duplicate_max_diff <= 0:
        return np.zeros(len(query_paths), bool)
    if not use_ray(n, o):
        return duplicate_pairs(query_paths, match_paths, o.thumb_size, o.duplicate_max_diff)
    import ray

    from omni_core.ray_helpers import RayConfig, init_ray

    from .neighbours import _remote

    init_ray(ray_config or RayConfig(include_dashboard=False), verbose=False)
    step = max(1, o.shard_rows)
    refs = [_remote(duplicate_pairs).remote(query_paths[i:i + step], match_paths[i:i + step],
                                            o.thumb_size, o.duplicate_max_diff)
            for i in range(0, len(query_paths), step)]
    return np.concatenate(ray.get(refs))


COLUMNS = ["query_identity_id", "match_identity_id", "match_clip_id", "match_video_id",
           "cosine", "rank", "margin", "mutual", "duplicate", "verified", "reason"]


def find_matches(db: pd.DataFrame, opts: RetrievalOptions | None = None,
                 queries: Iterable[str] | None = None, *,
                 ray_config: RayConfig | None = None) -> pd.DataFrame:
    """Matches of every identity with a crop (or of ``queries``): one row per candidate
    above the threshold (at most ``max_neighbours`` per query) -- ``query_identity_id``,
    ``match_identity_id``, ``cosine``, ``rank`` (1 = best), ``margin``, ``mutual``,
    ``duplicate``, ``verified`` and ``reason`` (empty when verified). ``ray_config``: the
    cluster to shard over when the database is large (default: an embedded one). The
    frame's ``attrs["seconds"]``: time spent per step (index, neighbours, mutual,
    duplicates)."""
    o = opts or RetrievalOptions()
    if db.empty:
        return pd.DataFrame(columns=COLUMNS)
    db = db.reset_index(drop=True)
    space = Space.from_db(db, o.other_video)
    internal = np.empty(len(db), np.int64)
    internal[space.db_row] = np.arange(len(db))
    if queries is not None:
        index = {iid: i for i, iid in enumerate(db.identity_id)}
        wanted = internal[[index[q] for q in queries]]
    else:
        wanted = np.arange(space.n_crop)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    hnsw = build_hnsw(space.emb, o) if o.index == "hnsw" else None
    seconds["index"] = time.perf_counter() - t
    t = time.perf_counter()
    table = neighbour_table(space, wanted, o, ray_config, hnsw)
    pos, flat = table.lists(wanted)
    q, m, cos = wanted[pos], table.index[flat], table.cosine[flat]
    keep = m < space.n_crop  # candidates have a crop
    q, m, cos, pos = q[keep], m[keep], cos[keep], pos[keep]
    # the mutual test reads the matches' own neighbours: score those not scored yet
    missing = np.unique(m[~table.scored[m]])
    if missing.size:
        extra = neighbour_table(space, missing, o, ray_config, hnsw)
        table = _union(table, extra)
    seconds["neighbours"] = time.perf_counter() - t
    t = time.perf_counter()
    first = np.concatenate([[0], np.flatnonzero(np.diff(pos)) + 1]).astype(np.int64)
    rank = np.arange(len(q)) - np.repeat(first, np.diff(np.append(first, len(q)))) + 1
    margin = cos - table.runner_up[q]
    k = o.mutual_top_k
    # the mutual test (docs/crosspair.md): the match's and the query's neighbourhoods agree
    near_match = strangers(space, table, m, q, o.threshold)
    near_query = strangers(space, table, q, m, o.threshold)
    mutual = (near_match < k) & (near_query < k)
    seconds["mutual"] = time.perf_counter() - t
    t = time.perf_counter()
    paths = db.path.to_numpy()
    qp = [p if isinstance(p, str) else None for p in paths[space.db_row[q]]]
    mp = [p if isinstance(p, str) else None for p in paths[space.db_row[m]]]
    dup = _duplicates(qp, mp, len(db), o, ray_config)
    seconds["duplicates"] = time.perf_counter() - t
    reason = np.full(len(q), "", dtype=object)
    low = margin < o.min_margin
    reason[low] = [f"margin {x:.3f} < {o.min_margin}" for x in margin[low]]
    reason[near_query >= k] = f"not mutual (the query is near {k}+ strangers to the match)"
    reason[near_match >= k] = f"not mutual (the match is near {k}+ strangers to the query)"
    reason[dup] = "near-duplicate crop"
    qrow, mrow = space.db_row[q], space.db_row[m]
    out = pd.DataFrame({
        "query_identity_id": db.identity_id.to_numpy()[qrow],
        "match_identity_id": db.identity_id.to_numpy()[mrow],
        "match_clip_id": db.clip_id.to_numpy()[mrow],
        "match_video_id": db.video_id.to_numpy()[mrow],
        "cosine": cos.astype(float), "rank": rank.astype(int), "margin": margin.astype(float),
        "mutual": mutual, "duplicate": dup, "verified": reason == "", "reason": reason},
        columns=COLUMNS)
    if not out.empty:  # keep the best max_matches verified ones, and every rejection
        ok = out[out.verified].groupby("query_identity_id", sort=False).head(o.max_matches)
        out = pd.concat([ok, out[~out.verified]]).sort_values(
            ["query_identity_id", "rank"], kind="stable").reset_index(drop=True)
    out.attrs["seconds"] = seconds
    return out


def _union(a: NeighbourTable, b: NeighbourTable) -> NeighbourTable:
    """One table of the rows of ``a`` and of ``b`` (scored rows disjoint)."""
    n = len(a.runner_up)
    rows = np.concatenate([np.repeat(np.arange(n), np.diff(t.ptr)) for t in (a, b)])
    order = np.argsort(rows, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)
    return NeighbourTable(ptr, np.concatenate([a.index, b.index])[order],
                          np.concatenate([a.cosine, b.cosine])[order],
                          np.where(b.scored, b.runner_up, a.runner_up), a.scored | b.scored)


def strangers(space: Space, table: NeighbourTable, a: np.ndarray, b: np.ndarray,
              threshold: float) -> np.ndarray:
    """For each pair (``a[i]``, ``b[i]``; internal ids): how many of ``a``'s neighbours,
    ``b`` aside, are strangers to ``b`` (cosine to ``b`` below ``threshold``)."""
    pos, flat = table.lists(a)
    n = table.index[flat]
    idx = np.flatnonzero(n != b[pos])
    far = np.zeros(len(n), bool)
    far[idx] = row_dots(space.emb, b[pos[idx]], n[idx]) < threshold
    return np.bincount(pos[far], minlength=len(a))


@dataclass
class RetrievalScore:
    """Precision: verified matches that are the same person. Recall: same-person pairs
    (query with a crop, match in another clip/video, both labelled) that were found."""

    matches: int
    correct: int
    positives: int
    found: int

    @property
    def precision(self) -> float | None:
        return self.correct / self.matches if self.matches else None

    @property
    def recall(self) -> float | None:
        return self.found / self.positives if self.positives else None

    def to_dict(self) -> dict[str, Any]:
        return {"matches": self.matches, "correct": self.correct, "positives": self.positives,
                "found": self.found, "precision": self.precision, "recall": self.recall}


def retrieval_scores(db: pd.DataFrame, matches: pd.DataFrame, person: Mapping[str, str],
                     opts: RetrievalOptions | None = None) -> RetrievalScore:
    """Score verified ``matches`` against ``person`` (identity id -> a truth person key;
    identities missing from it count as unknown and are left out of both rates). Counted per
    person (no loop over pairs of identities): fine at a million identities."""
    o = opts or RetrievalOptions()
    ok = matches[matches.verified] if not matches.empty else matches
    pairs = pd.DataFrame({"q": ok.query_identity_id, "m": ok.match_identity_id}) \
        .drop_duplicates() if len(ok) else pd.DataFrame({"q": [], "m": []})
    who = pd.Series(person, dtype=object)
    pairs = pairs.assign(pq=pairs.q.map(who), pm=pairs.m.map(who))
    labelled = pairs[pairs.pq.notna() & pairs.pm.notna()]
    correct = int((labelled.pq == labelled.pm).sum())
    ids = db.assign(person=db.identity_id.map(who))
    ids = ids[ids.person.notna() & ids.path.map(lambda p: isinstance(p, str))]
    # ordered same-person pairs of other clips (and videos): all pairs less those sharing
    # a clip or a video (inclusion-exclusion; the pairs of an identity with itself cancel)
    def square_sum(keys: list[str]) -> int:
        return int((ids.groupby(keys, dropna=False).size() ** 2).sum()) if len(ids) else 0

    positives = square_sum(["person"]) - square_sum(["person", "clip_id"])
    if o.other_video:
        positives -= square_sum(["person", "video_id"]) - \
            square_sum(["person", "clip_id", "video_id"])
    info = ids.set_index("identity_id")[["person", "clip_id", "video_id"]]
    hit = labelled[labelled.pq == labelled.pm].merge(info, left_on="q", right_index=True) \
        .merge(info, left_on="m", right_index=True, suffixes=("_q", "_m"))
    hit = hit[hit.clip_id_q != hit.clip_id_m]
    if o.other_video:
        hit = hit[hit.video_id_q != hit.video_id_m]
    return RetrievalScore(len(labelled), correct, positives, len(hit))


def compare_matches(reference: pd.DataFrame, other: pd.DataFrame) -> dict[str, Any]:
    """How ``other``'s verified (query, match) pairs agree with ``reference``'s (e.g. the
    approximate index against the exact one): ``recall`` (the reference's pairs ``other``
    found too), ``precision`` (``other``'s pairs the reference has too), and the counts."""
    def pairs(m: pd.DataFrame) -> set[tuple[str, str]]:
        ok = m[m.verified] if len(m) else m
        return set(zip(ok.query_identity_id, ok.match_identity_id, strict=True))

    ref, got = pairs(reference), pairs(other)
    both = len(ref & got)
    return {"reference": len(ref), "other": len(got), "both": both,
            "recall": both / len(ref) if ref else None,
            "precision": both / len(got) if got else None}
