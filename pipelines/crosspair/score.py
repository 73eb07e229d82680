"""A cross-pair run on the sample corpus against the corpus's truth: retrieval precision and
recall (``omni curate score --run OUT --corpus CORPUS`` on a cross-pair output).

Each identity of the in-pair runs is labelled with the corpus person whose face it is (the
in-pair score's face matching, :func:`pipelines.inpair.score.score_run`, and the photo that
person was drawn from: the same photo in two videos is the same person); the verified matches
of ``identity_matches`` are scored with :func:`.identity.retrieval_scores`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from omni_core.config import from_dict
from omni_core.errors import OmniError
from omni_core.manifests import read_manifest

from .identity import RetrievalOptions, load_database, retrieval_scores


def score_crosspair(out: str | os.PathLike[str], corpus: str | os.PathLike[str]
                    ) -> dict[str, Any]:
    """``{"retrieval": precision, recall and counts}`` of the cross-pair run ``out``."""
    from omni_core.jobs import read_summary
    from pipelines.inpair.score import score_run

    root = Path(out)
    summary = read_summary(root)
    if summary["job"] != "crosspair":
        raise OmniError(f"{root} is a {summary['job']} run, not a cross-pair run")
    runs = summary["details"]["runs"]
    opts = from_dict(RetrievalOptions, summary["provenance"]["config"]["retrieval"])
    truth = pd.read_parquet(Path(corpus) / "truth" / "people.parquet")
    photo = {(r.file, r.person): r.face_source for r in truth.itertuples()}
    person: dict[str, str] = {}
    for run in runs:
        for c in score_run(run, corpus).identities:
            if (c.file, c.face_person) in photo:
                person[c.identity_id] = photo[(c.file, c.face_person)]
    db = load_database(runs)
    matches = read_manifest(root / "identity_matches.parquet", "identity_matches")
    return {"retrieval": retrieval_scores(db, matches, person, opts).to_dict(),
            "labelled_identities": len(person)}


def lines(score: dict[str, Any]) -> list[str]:
    r = score["retrieval"]

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    return [f"cross-pair retrieval against the corpus truth ({score['labelled_identities']} "
            f"identities labelled): precision {f(r['precision'])} ({r['correct']}/"
            f"{r['matches']}), recall {f(r['recall'])} ({r['found']}/{r['positives']})"]
