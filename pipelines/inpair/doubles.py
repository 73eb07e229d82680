"""Test double for stage 2: who says what when, read from the sample corpus's ground truth.

:class:`AnnotationSpeech` stands in for diarization + transcription when no weights exist
(tests of the downstream stages only): it finds the ``truth/turns.parquet``
of the corpus an input belongs to and returns that file's generated turns that fall in the
clip, in clip time, with the person ids as speaker labels. It is selected with
``audio.backend: annotations`` and is *not* a curation backend: on any other folder it fails
with a clear error row per clip.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pandas as pd

from omni_core.errors import OmniError
from omni_core.manifests import read_manifest
from omni_core.storage import exists, is_remote, local_input

from .audio import Segment


@cache
def _turns(table: str) -> pd.DataFrame:
    turns = read_manifest(table, "corpus_turns")
    return turns[turns.source == "generated"]


def _find_truth(source: str | os.PathLike[str]) -> tuple[Path, str]:
    """The corpus's turns table (a local file) and the input's name inside the corpus; the
    corpus may be a folder or a URL prefix (a corpus copied to a bucket)."""
    s = os.fspath(source)
    if is_remote(s):
        scheme, _, path = s.partition("://")
        parts = path.split("/")
        for k in range(len(parts) - 1, 0, -1):
            table = f"{scheme}://{'/'.join(parts[:k])}/truth/turns.parquet"
            if exists(table):
                return local_input(table), "/".join(parts[k:])
    else:
        path_ = Path(s).resolve()
        for parent in path_.parents:
            table_ = parent / "truth" / "turns.parquet"
            if table_.is_file():
                return table_, path_.relative_to(parent).as_posix()
    raise OmniError(f"audio.backend=annotations: {s} is not inside a sample corpus "
                    "(no truth/turns.parquet above it)")


class AnnotationSpeech:
    """Speech segments of a clip from the corpus annotations (a test double; see module)."""

    #: a turn is kept when at least this fraction of it lies inside the clip (its words are
    #: then taken whole); shorter overlaps are dropped.
    min_inside = 0.5

    def segments(self, source: str | os.PathLike[str], start_s: float,
                 end_s: float) -> list[Segment]:
        table, name = _find_truth(source)
        rows = _turns(str(table))
        rows = rows[(rows.file == name) & (rows.end_s > start_s) & (rows.start_s < end_s)]
        out = []
        for r in rows.sort_values(["start_s", "speaker"]).itertuples():
            a, b = max(r.start_s, start_s), min(r.end_s, end_s)
            if (b - a) < self.min_inside * (r.end_s - r.start_s):
                continue
            out.append(Segment(speaker=str(r.speaker), start_s=round(a - start_s, 3),
                               end_s=round(b - start_s, 3), text=str(r.text)))
        return out
