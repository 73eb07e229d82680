"""A planted identity database: known people, for scoring retrieval at any size.

:func:`planted_database` makes what :func:`.identity.load_database` returns, without an
in-pair run: ``people`` people seen ``crops`` times each, every time in another video, plus
``distractors`` identities seen once. An embedding is its person's random direction plus
noise (512-d, L2-normalised): with the default noise two crops of one person have cosine
0.6-0.8 -- the real ArcFace's same-person range across clips -- and different people about
0 +- 0.05. Videos hold several identities of different people, two to a clip, so the
same-clip and same-video masks have something to mask. Crops are named, not written (the
near-duplicate rule needs real pictures: the tests write those themselves).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def planted_database(people: int, crops: int = 5, distractors: int = 0, *, seed: int = 0,
                     dim: int = 512, noise: tuple[float, float] = (0.5, 0.8),
                     no_crop: float = 0.1, per_video: int = 3
                     ) -> tuple[pd.DataFrame, dict[str, str]]:
    """(database, identity id -> person key). ``no_crop``: the share of distractors without a
    crop (identities that are neighbours but never candidates); ``per_video``: identities per
    video on average."""
    rng = np.random.default_rng(seed)
    n_planted = people * crops
    n = n_planted + distractors
    centres = rng.standard_normal((people + distractors, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    who = np.concatenate([np.repeat(np.arange(people), crops),
                          people + np.arange(distractors)]).astype(np.int64)
    scale = rng.uniform(*noise, n).astype(np.float32)
    emb = centres[who] + scale[:, None] * rng.standard_normal((n, dim)).astype(np.float32) \
        / np.float32(np.sqrt(dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    n_videos = max(crops, n // max(1, per_video))
    stride = n_videos // crops
    slot = np.tile(np.arange(crops), people)
    video = np.concatenate([(np.repeat(np.arange(people), crops) + slot * stride) % n_videos,
                            rng.integers(0, n_videos, distractors)]).astype(np.int64)
    # two identities to a clip, in the order they come within their video
    order = np.argsort(video, kind="stable")
    within = np.empty(n, np.int64)
    starts = np.searchsorted(video[order], video[order])
    within[order] = np.arange(n) - starts
    ids = np.array([f"id{i:08d}" for i in rng.permutation(n)])
    has_crop = np.ones(n, bool)
    has_crop[n_planted:] = rng.random(distractors) >= no_crop
    db = pd.DataFrame({
        "identity_id": ids,
        "clip_id": [f"v{v}-c{w // 2}" for v, w in zip(video, within, strict=True)],
        "video_id": [f"v{v}" for v in video],
        "embedding": list(emb),
        "path": [f"planted://{i}.png" if c else None for i, c in zip(ids, has_crop,
                                                                    strict=True)],
    })
    person = {i: f"p{w}" for i, w in zip(ids, who, strict=True)}
    return db.sort_values("identity_id", kind="stable").reset_index(drop=True), person
