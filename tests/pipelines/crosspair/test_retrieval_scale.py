"""Retrieval at scale (pipelines/crosspair/neighbours.py and identity.find_matches): the
blocked exact path against a dense reference written here, the HNSW path against the exact
one, five-crop people fully recalled, hubs refused, Ray shards equal to one process, and the
near-duplicate rule reading only the crops of candidate pairs (local files and S3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omni_core.media import write_image
from omni_core.ray_helpers import RayConfig, init_ray, shutdown_ray
from pipelines.crosspair.identity import (
    RetrievalOptions,
    compare_matches,
    find_matches,
    retrieval_scores,
)
from pipelines.crosspair.planted import planted_database

KEY = ["query_identity_id", "match_identity_id", "rank", "mutual", "duplicate", "verified",
       "reason"]


def dense_reference(db: pd.DataFrame, o: RetrievalOptions, plain_top_k: bool = False
                    ) -> pd.DataFrame:
    """The rules with the whole N x N cosine matrix, one query at a time. ``plain_top_k``:
    the former mutual test (the query among the match's k nearest identities of other
    clips), for showing what it cost."""
    emb = np.stack(db.embedding.values).astype(np.float32)
    sim = emb @ emb.T
    clip, video = db.clip_id.to_numpy(), db.video_id.to_numpy()
    crop = np.array([isinstance(p, str) for p in db.path])
    other = clip[:, None] != clip[None, :]
    if o.other_video:
        other &= video[:, None] != video[None, :]
    k, thr = o.mutual_top_k, o.threshold

    def neighbours(i):
        return [j for j in np.flatnonzero(other[i]) if sim[i, j] >= thr]

    rows = []
    for i in np.flatnonzero(crop):
        cand = np.flatnonzero(other[i] & crop)
        order = sorted(cand, key=lambda j: (-sim[i, j], j))
        below = [sim[i, j] for j in order if sim[i, j] < thr]
        runner = below[0] if below else -1.0
        rank = 0
        for j in order:
            if sim[i, j] < thr:
                break
            rank += 1
            margin = float(sim[i, j]) - runner
            if plain_top_k:
                top = sorted(np.flatnonzero(other[j]), key=lambda n: (-sim[j, n], n))[:k]
                mutual = i in top
            else:
                near_match = sum(sim[i, n] < thr for n in neighbours(j) if n != i)
                near_query = sum(sim[j, n] < thr for n in neighbours(i) if n != j)
                mutual = near_match < k and near_query < k
            ok = mutual and margin >= o.min_margin
            rows.append({"query_identity_id": db.identity_id[i],
                         "match_identity_id": db.identity_id[j], "cosine": float(sim[i, j]),
                         "rank": rank, "margin": margin, "mutual": mutual, "verified": ok})
    out = pd.DataFrame(rows)
    ok = out[out.verified].groupby("query_identity_id", sort=False).head(o.max_matches)
    return pd.concat([ok, out[~out.verified]]).sort_values(
        ["query_identity_id", "rank"], kind="stable").reset_index(drop=True)


def same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    cols = ["query_identity_id", "match_identity_id", "rank", "mutual", "verified"]
    assert len(got) == len(want)
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), want[cols],
                                  check_dtype=False)
    np.testing.assert_allclose(got.cosine, want.cosine, atol=1e-5)
    np.testing.assert_allclose(got.margin, want.margin, atol=1e-5)


@pytest.mark.parametrize("other_video", [True, False])
def test_blocked_exact_path_gives_the_dense_reference_rows(other_video):
    # 70 people seen 2-5 times, 200 identities seen once (a tenth without a crop), 3 to a
    # video; a block of 0.01 MiB is 7 queries: dozens of blocks
    db, _ = planted_database(40, 5, 150, seed=1)
    extra, _ = planted_database(30, 2, 50, seed=2)
    db = pd.concat([db, extra.assign(identity_id="x" + extra.identity_id,
                                     video_id="x" + extra.video_id,
                                     clip_id="x" + extra.clip_id)], ignore_index=True)
    o = RetrievalOptions(duplicate_max_diff=0, other_video=other_video, block_mb=0.01,
                         max_matches=3)
    got = find_matches(db, o)
    same_rows(got, dense_reference(db, o))
    assert got.verified.sum() > 500 and got.query_identity_id.nunique() > 200
    # a subset of queries: their rows only, the same ones
    some = list(db.identity_id[db.path.notna()][::7])
    sub = find_matches(db, o, queries=some)
    want = got[got.query_identity_id.isin(some)].reset_index(drop=True)
    same_rows(sub, want)


def test_five_crop_people_are_fully_recalled_where_plain_top_k_was_not():
    db, person = planted_database(60, 5, 300, seed=3)
    o = RetrievalOptions(duplicate_max_diff=0, block_mb=0.05)
    s = retrieval_scores(db, find_matches(db, o), person, o)
    assert s.positives == 60 * 5 * 4
    assert s.recall == 1.0 and s.precision == 1.0, s.to_dict()
    # the former rule: four true neighbours compete for three places
    plain = retrieval_scores(db, dense_reference(db, o, plain_top_k=True), person, o)
    assert plain.precision == 1.0 and plain.recall < 0.95, plain.to_dict()


def with_hub(seed: int = 4) -> tuple[pd.DataFrame, dict[str, str], str]:
    """4 people x 5 crops, 200 distractors, and a hub: an identity on the mean direction of
    the four people, near every one of their 20 crops."""
    db, person = planted_database(4, 5, 200, seed=seed)
    emb = np.stack(db.embedding.values)
    who = db.identity_id.map(person)
    centres = []
    for p in ("p0", "p1", "p2", "p3"):
        c = emb[(who == p).to_numpy()].mean(axis=0)
        centres.append(c / np.linalg.norm(c))
    hub = np.sum(centres, axis=0)
    hub = (hub / np.linalg.norm(hub)).astype(np.float32)
    row = pd.DataFrame([{"identity_id": "hub", "clip_id": "hub-c", "video_id": "hub-v",
                         "embedding": hub, "path": "planted://hub.png"}])
    return pd.concat([db, row], ignore_index=True), {**person, "hub": "hub"}, "hub"


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_a_hub_near_everyone_fails_the_mutual_test_both_ways(index):
    db, person, hub = with_hub()
    o = RetrievalOptions(threshold=0.3, duplicate_max_diff=0, index=index)
    m = find_matches(db, o)
    planted = [i for i in db.identity_id if person[i] in ("p0", "p1", "p2", "p3")]
    assert len(planted) == 20
    with_the_hub = m[(m.match_identity_id == hub) | (m.query_identity_id == hub)]
    # the hub is above the threshold of all 20 crops of the four people ...
    assert set(with_the_hub[with_the_hub.match_identity_id == hub].query_identity_id) == \
        set(planted)
    assert set(with_the_hub[with_the_hub.query_identity_id == hub].match_identity_id) == \
        set(planted)
    # ... and refused every time, as the match and as the query
    assert not with_the_hub.verified.any()
    assert with_the_hub.reason.str.startswith("not mutual").all()
    # while the people keep all their own matches
    s = retrieval_scores(db, m, {i: person[i] for i in planted}, o)
    assert s.recall == 1.0 and s.precision == 1.0, s.to_dict()
    assert dense_reference(db, o).verified.sum() == m.verified.sum()


def test_hnsw_path_recall_against_the_exact_one():
    # 60 identities to a video: every query masks about 60 of its nearest candidates (and
    # hnsw_k 2 makes most queries ask again for more before a runner-up turns up)
    db, person = planted_database(300, 5, 1500, seed=5, per_video=60)
    exact = find_matches(db, RetrievalOptions(duplicate_max_diff=0))
    o = RetrievalOptions(duplicate_max_diff=0, index="hnsw", hnsw_k=2)
    approx = find_matches(db, o)
    agree = compare_matches(exact, approx)
    assert agree["reference"] == 300 * 5 * 4
    assert agree["recall"] >= 0.98 and agree["precision"] >= 0.99, agree
    s = retrieval_scores(db, approx, person, o)
    assert s.recall >= 0.98 and s.precision >= 0.99, s.to_dict()
    # what both found is the same rows
    key = ["query_identity_id", "match_identity_id"]
    both = exact.merge(approx, on=key, suffixes=("", "_a"))
    assert (both.verified == both.verified_a).mean() >= 0.98
    np.testing.assert_allclose(both.cosine, both.cosine_a, atol=1e-5)


def crops_database(folder, people: int = 6, crops: int = 4, distractors: int = 30):
    """A planted database with real crops written to ``folder``: random pictures, except that
    the first person's first two crops are the same picture (a near-duplicate)."""
    db, person = planted_database(people, crops, distractors, seed=6, no_crop=0.0)
    rng = np.random.default_rng(6)
    first = sorted(i for i in db.identity_id if person[i] == "p0")[:2]
    paths = []
    for iid in db.identity_id:
        img = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
        paths.append(folder / f"{iid}.png")
        if iid == first[1]:
            continue
        write_image(paths[-1], img)
    dup = folder / f"{first[1]}.png"
    dup.write_bytes((folder / f"{first[0]}.png").read_bytes())
    return db.assign(path=[str(p) for p in paths]), person, tuple(first)


def test_near_duplicates_read_only_the_crops_of_candidate_pairs(tmp_path):
    db, person, (a, b) = crops_database(tmp_path)
    # a distractor whose crop cannot be read: it has no candidate, so it is never read
    lonely = next(i for i in db.identity_id if person[i] == f"p{6 + 29}")
    db.loc[db.identity_id == lonely, "path"] = str(tmp_path / "missing.png")
    m = find_matches(db, RetrievalOptions())
    dup = m[m.duplicate]
    assert set(zip(dup.query_identity_id, dup.match_identity_id, strict=True)) == \
        {(a, b), (b, a)}
    assert (dup.reason == "near-duplicate crop").all() and not dup.verified.any()
    assert m[~m.duplicate].verified.all()
    assert lonely not in set(m.query_identity_id) | set(m.match_identity_id)


def test_near_duplicates_of_crops_on_s3(s3, tmp_path):
    db, _, (a, b) = crops_database(tmp_path / "crops", people=3, crops=3, distractors=5)
    url = s3.bucket() + "/crops"
    s3.upload(tmp_path / "crops", url)
    db = db.assign(path=[f"{url}/{p.rsplit('/', 1)[-1]}" for p in db.path])
    m = find_matches(db, RetrievalOptions())
    dup = m[m.duplicate]
    assert set(zip(dup.query_identity_id, dup.match_identity_id, strict=True)) == \
        {(a, b), (b, a)}


def test_ray_shards_give_the_rows_of_one_process(tmp_path):
    db, _, _ = crops_database(tmp_path, people=20, crops=5, distractors=100)
    base = {"block_mb": 0.02, "hnsw_k": 4}
    local = {ix: find_matches(db, RetrievalOptions(index=ix, **base))
             for ix in ("exact", "hnsw")}
    assert local["exact"].duplicate.sum() == 2
    init_ray(RayConfig(num_cpus=2, include_dashboard=False), verbose=False)
    try:
        for ix, want in local.items():
            o = RetrievalOptions(index=ix, ray_min_identities=1, shard_rows=37, **base)
            got = find_matches(db, o)
            pd.testing.assert_frame_equal(got[KEY], want[KEY])
            np.testing.assert_allclose(got.cosine, want.cosine, atol=1e-6)
    finally:
        shutdown_ray()
