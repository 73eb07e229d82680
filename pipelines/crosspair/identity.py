"""Identity retrieval across clips and videos (the Phantom-Data recipe of paper.md).

Every identity an in-pair run found (one person in one clip, with a mean ArcFace embedding
and, for training subjects, an aligned reference crop) goes into one database. For each
subject of a sample, retrieval looks for the same person elsewhere:

1. candidates: identities of another clip (by default of another video), with a crop;
2. similarity: cosine of the L2-normalised embeddings, at least ``threshold``;
3. verification, so that one lucky cosine is not enough:
   * ``mutual_top_k``: the query is also among the candidate's ``k`` nearest identities
     of other clips (a hub that is close to everyone fails this);
   * ``min_margin``: its cosine exceeds the best cosine that failed the threshold by at
     least this much, so a match sits clearly apart from the rest of the database;
4. near-duplicates removed: a candidate whose crop is pixel for pixel the query's crop (mean
   absolute difference of 64x64 grey thumbnails below ``duplicate_max_diff``, on 0..255) is
   the same picture, not another appearance, and would let the model copy; it is dropped.

The result is one row per (query, match) with the cosine, rank, margin and whether it passed,
and the reason when it did not (:func:`find_matches`); :func:`retrieval_scores` measures
precision and recall against a truth labelling of identities to people.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from omni_core.errors import OmniError
from omni_core.manifests import read_manifest
from omni_core.storage import join, local_input


@dataclass
class RetrievalOptions:
    """Defaults are for the real ArcFace (buffalo_l), whose same-person cosines across
    clips mostly lie in 0.5-0.8 and different people's below 0.3. Random-weight (debug)
    embeddings crowd into 0.75-1.0: the corpus test uses threshold 0.93, margin 0.02."""

    threshold: float = 0.5  # cosine of mean ArcFace embeddings
    mutual_top_k: int = 3
    min_margin: float = 0.05
    other_video: bool = True  # matches must come from another video, not just another clip
    max_matches: int = 5  # per query, best first
    duplicate_max_diff: float = 3.0  # mean |a - b| of 64x64 grey thumbnails, 0..255
    thumb_size: int = 64


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


def thumbnails(paths: Iterable[str | None], size: int = 64) -> list[np.ndarray | None]:
    """64x64 grey float thumbnails of the crops (None where there is no crop)."""
    import cv2

    from omni_core.media import read_image

    out: list[np.ndarray | None] = []
    for p in paths:
        if p is None:
            out.append(None)
            continue
        g = cv2.cvtColor(read_image(local_input(p)), cv2.COLOR_RGB2GRAY)
        out.append(cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32))
    return out


def find_matches(db: pd.DataFrame, opts: RetrievalOptions | None = None,
                 queries: Iterable[str] | None = None) -> pd.DataFrame:
    """Matches of every identity with a crop (or of ``queries``): one row per candidate
    above the threshold -- ``query_identity_id``, ``match_identity_id``, ``cosine``,
    ``rank`` (1 = best), ``margin``, ``mutual``, ``duplicate``, ``verified`` and ``reason``
    (empty when verified)."""
    o = opts or RetrievalOptions()
    cols = ["query_identity_id", "match_identity_id", "match_clip_id", "match_video_id",
            "cosine", "rank", "margin", "mutual", "duplicate", "verified", "reason"]
    if db.empty:
        return pd.DataFrame(columns=cols)
    emb = np.stack(db.embedding.values).astype(np.float32)
    sim = emb @ emb.T
    clip = db.clip_id.to_numpy()
    video = db.video_id.to_numpy()
    has_crop = db.path.notna().to_numpy()
    other = clip[:, None] != clip[None, :]
    if o.other_video:
        other &= video[:, None] != video[None, :]
    # the k nearest identities of other clips, per identity (for the mutual test)
    masked = np.where(other, sim, -np.inf)
    k = max(1, min(o.mutual_top_k, len(db) - 1))
    top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    in_top = np.zeros_like(other)
    for i in range(len(db)):
        in_top[i, top[i]] = np.isfinite(masked[i, top[i]])
    thumbs = thumbnails([p if isinstance(p, str) else None for p in db.path], o.thumb_size)
    index = {iid: i for i, iid in enumerate(db.identity_id)}
    wanted = [index[q] for q in queries] if queries is not None else \
        [i for i in range(len(db)) if has_crop[i]]
    rows = []
    for i in wanted:
        cand = np.where(other[i] & has_crop)[0]
        if cand.size == 0:
            continue
        order = cand[np.argsort(-sim[i, cand], kind="stable")]
        below = [j for j in order if sim[i, j] < o.threshold]
        runner_up = float(sim[i, below[0]]) if below else -1.0
        rank = 0
        for j in order:
            if sim[i, j] < o.threshold:
                break
            rank += 1
            margin = float(sim[i, j]) - runner_up
            mutual = bool(in_top[j, i])
            a, b = thumbs[i], thumbs[j]
            dup = a is not None and b is not None and \
                float(np.abs(a - b).mean()) < o.duplicate_max_diff
            reason = ("near-duplicate crop" if dup else
                      f"not mutual (query outside the match's top {o.mutual_top_k})"
                      if not mutual else
                      f"margin {margin:.3f} < {o.min_margin}" if margin < o.min_margin else "")
            rows.append({"query_identity_id": db.identity_id[i],
                         "match_identity_id": db.identity_id[j],
                         "match_clip_id": clip[j], "match_video_id": video[j],
                         "cosine": float(sim[i, j]), "rank": rank, "margin": margin,
                         "mutual": mutual, "duplicate": dup, "verified": not reason,
                         "reason": reason})
    out = pd.DataFrame(rows, columns=cols)
    if not out.empty:  # keep the best max_matches verified ones, and every rejection
        ok = out[out.verified].groupby("query_identity_id", sort=False).head(o.max_matches)
        out = pd.concat([ok, out[~out.verified]]).sort_values(
            ["query_identity_id", "rank"], kind="stable").reset_index(drop=True)
    return out


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
    identities missing from it count as unknown and are left out of both rates)."""
    o = opts or RetrievalOptions()
    ok = matches[matches.verified] if not matches.empty else matches
    pairs = {(q, m) for q, m in zip(ok.query_identity_id, ok.match_identity_id, strict=True)}
    labelled = [(q, m) for q, m in pairs if q in person and m in person]
    correct = sum(person[q] == person[m] for q, m in labelled)
    positives = found = 0
    rows = db.set_index("identity_id")
    for q in rows.index:
        if q not in person or not isinstance(rows.path[q], str):
            continue
        for m in rows.index:
            if m == q or m not in person or not isinstance(rows.path[m], str) \
                    or person[m] != person[q]:
                continue
            if rows.clip_id[m] == rows.clip_id[q]:
                continue
            if o.other_video and rows.video_id[m] == rows.video_id[q]:
                continue
            positives += 1
            found += (q, m) in pairs
    return RetrievalScore(len(labelled), int(correct), positives, found)
