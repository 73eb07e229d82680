"""Identity retrieval across clips and videos: the rules on a hand-made database, and
precision / recall on the sample corpus, where the same photos appear in several videos."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omni_core.media import read_image, write_image
from pipelines.crosspair.identity import (
    RetrievalOptions,
    find_matches,
    load_database,
    retrieval_scores,
)

OPTS = RetrievalOptions(threshold=0.9, mutual_top_k=2, min_margin=0.02)


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


@pytest.fixture
def db(tmp_path):
    """Person A in three videos (a1 and a1dup share a crop), person B in two, C once; b0
    and b1 share a clip's video; every crop a distinct noise image except the duplicate."""
    rng = np.random.default_rng(0)
    rows = []
    spec = [("a0", "c0", "v0", _unit(1, 0.02, 0)), ("a1", "c1", "v1", _unit(1, 0.05, 0.01)),
            ("a1dup", "c2", "v2", _unit(1, 0.04, 0.0)), ("b0", "c3", "v3", _unit(0, 1, 0.1)),
            ("b1", "c4", "v3", _unit(0, 1, 0.12)), ("c", "c5", "v4", _unit(0.3, 0.3, 1))]
    for iid, clip, video, emb in spec:
        path = tmp_path / f"{iid}.png"
        img = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        if iid == "a1dup":
            img = read_image(tmp_path / "a1.png")
        write_image(path, img)
        rows.append({"identity_id": iid, "clip_id": clip, "video_id": video,
                     "embedding": emb, "path": str(path)})
    return pd.DataFrame(rows)


def test_rules_threshold_other_video_mutual_margin_and_duplicates(db):
    m = find_matches(db, OPTS)
    ok = m[m.verified]
    pairs = set(zip(ok.query_identity_id, ok.match_identity_id, strict=True))
    assert ("a0", "a1") in pairs and ("a0", "a1dup") in pairs
    # a1 and a1dup show the same picture: found by the cosine, refused as a copy
    dup = m[(m.query_identity_id == "a1") & (m.match_identity_id == "a1dup")].iloc[0]
    assert bool(dup.duplicate) and not dup.verified and dup.reason == "near-duplicate crop"
    # b0 and b1 come from one video: never candidates of each other by default
    assert not ({("b0", "b1"), ("b1", "b0")} & set(zip(m.query_identity_id,
                                                       m.match_identity_id, strict=True)))
    relaxed = find_matches(db, RetrievalOptions(threshold=0.9, mutual_top_k=2,
                                                min_margin=0.02, other_video=False))
    assert ("b0", "b1") in set(zip(relaxed.query_identity_id, relaxed.match_identity_id,
                                   strict=True))
    assert m[m.query_identity_id == "c"].empty  # nobody else above the threshold
    assert (ok.cosine >= 0.9).all() and (ok.margin >= 0.02).all() and ok.mutual.all()
    # margin: raise it above what a0 -> a1 has over the best cosine below the threshold
    strict = find_matches(db, RetrievalOptions(threshold=0.9, mutual_top_k=2, min_margin=0.9))
    assert not strict.verified.any()
    assert strict.reason.str.startswith("margin").any()
    one = find_matches(db, RetrievalOptions(threshold=0.9, mutual_top_k=2, min_margin=0.02,
                                            max_matches=1))
    assert one[one.verified].groupby("query_identity_id").size().max() == 1


def test_scores_count_correct_matches_and_found_positives(db):
    m = find_matches(db, OPTS)
    person = {"a0": "A", "a1": "A", "a1dup": "A", "b0": "B", "b1": "B", "c": "C"}
    s = retrieval_scores(db, m, person, OPTS)
    # positives: ordered same-person pairs across videos: a0-a1, a0-a1dup, a1-a1dup and back
    assert s.positives == 6 and s.precision == 1.0
    assert s.found == 4 and s.recall == pytest.approx(4 / 6)  # the duplicate pair is refused
    wrong = dict(person, a1="B")
    assert retrieval_scores(db, m, wrong, OPTS).precision < 1.0


def test_precision_and_recall_on_the_sample_corpus(inpair_offline_run, sample_corpus):
    from pipelines.inpair.score import score_run

    db = load_database([inpair_offline_run])
    assert len(db) == 12 and db.path.notna().sum() == 10  # 10 subjects of samples have crops
    truth = pd.read_parquet(sample_corpus.out / "truth" / "people.parquet")
    source = {(r.file, r.person): r.face_source for r in truth.itertuples()}
    person = {c.identity_id: source[(c.file, c.face_person)]
              for c in score_run(inpair_offline_run, sample_corpus.out).identities
              if (c.file, c.face_person) in source}
    # debug (random-weight) ArcFace: same photo 0.95-0.99, others below 0.93
    opts = RetrievalOptions(threshold=0.93, mutual_top_k=3, min_margin=0.02)
    s = retrieval_scores(db, find_matches(db, opts), person, opts)
    # measured: 14 of 14 cross-video same-person pairs found, none wrong
    assert s.positives == 14
    assert s.precision == 1.0 and s.recall == 1.0, s.to_dict()
