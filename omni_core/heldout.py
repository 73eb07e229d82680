"""Held-out identities: what a benchmark built from curated data keeps out of training.

``omni benchmark build`` (benchmark/build.py) writes ``<benchmark>/heldout.parquet`` (schema
``heldout``): one row per curation identity (one person in one clip) of a held-out person,
and of every other person seen in a benchmark clip, with the clip and the video it is in.
``omni latents`` and ``omni train`` take ``heldout: [<benchmark folder or heldout.parquet>,
...]`` and refuse every sample that touches one of them: a sample is refused when

* one of its identities (its subjects, and the identities its references were cut from, e.g.
  a cross-pair sample's face from another clip) is a row of the table, or
* its clip, or the clip a reference was cut from, is a benchmark clip (a ``clip_id`` of the
  table), or
* its video is one of the table's videos (every clip of a video that shows a held-out person
  is held out: the same person appears in a video's other clips, and cross-pair retrieval
  only matches across videos).

Training code reads the plain Parquet file through this module; it never imports the
benchmark package.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import OmniError

FILE = "heldout.parquet"


@dataclass(frozen=True)
class Refusal:
    """Why a sample may not be trained on."""

    sample_id: str
    kind: str  # identity | clip | video
    key: str
    person_id: str
    benchmark: str
    reason: str  # the held-out row's reason

    def message(self) -> str:
        what = {"identity": "shows identity", "clip": "uses benchmark clip",
                "video": "comes from benchmark video"}[self.kind]
        return (f"sample {self.sample_id} {what} {self.key} (person {self.person_id}, "
                f"{self.reason}) held out by benchmark {self.benchmark}")


@dataclass
class HeldOut:
    """The union of the held-out tables of one or more benchmarks."""

    sources: list[str]
    table: pd.DataFrame  # heldout rows + "benchmark" (the folder the row comes from)
    _index: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict,
                                                               repr=False)

    def __post_init__(self) -> None:
        for r in self.table.itertuples(index=False):
            reason = r.reason if r.held_out else f"in a benchmark clip: {r.reason}"
            entry = (str(r.person_id), str(r.benchmark), str(reason))
            self._index.setdefault(("identity", str(r.identity_id)), entry)
            if isinstance(r.clip_id, str):
                self._index.setdefault(("clip", r.clip_id), entry)
            if isinstance(r.video_id, str):
                self._index.setdefault(("video", r.video_id), entry)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def benchmarks(self) -> list[str]:
        return sorted(set(self.table.benchmark))

    def check(self, sample_id: str, identity_ids: Iterable[str] = (),
              clip_ids: Iterable[str] = (), video_ids: Iterable[str] = ()) -> Refusal | None:
        """The first held-out key the sample touches (identities, then clips, then videos),
        or None when it may be trained on."""
        for kind, keys in (("identity", identity_ids), ("clip", clip_ids),
                           ("video", video_ids)):
            for key in keys:
                if key is None:
                    continue
                hit = self._index.get((kind, str(key)))
                if hit is not None:
                    return Refusal(sample_id, kind, str(key), *hit)
        return None


def heldout_file(path: str | os.PathLike[str]) -> Path:
    """``path`` itself (a ``.parquet``) or ``path/heldout.parquet`` (a benchmark folder)."""
    p = Path(path).expanduser()
    if p.is_dir():
        f = p / FILE
        if not f.is_file():
            raise OmniError(
                f"{p}: no {FILE}; held-out identities come from a benchmark made by `omni "
                "benchmark build` (a released benchmark has none: its people are not in "
                "your curation)")
        return f
    if not p.is_file():
        raise OmniError(f"{p}: held-out identities not found (a benchmark folder or its "
                        f"{FILE})")
    return p


def load_heldout(paths: Sequence[str | os.PathLike[str]]) -> HeldOut | None:
    """The held-out identities of the benchmarks ``paths`` (folders or heldout.parquet
    files); None when ``paths`` is empty."""
    from .manifests import read_manifest

    if not paths:
        return None
    frames, sources = [], []
    for path in paths:
        f = heldout_file(path)
        bench = str(f.parent.resolve())
        df = read_manifest(f, "heldout")
        frames.append(df.assign(benchmark=bench))
        sources.append(str(f.resolve()))
    return HeldOut(sources, pd.concat(frames, ignore_index=True))


def refusal_lines(refused: Sequence[Refusal], total: int, what: str) -> list[str]:
    """Console lines for the refused samples of a run over ``total`` samples (``what``: the
    folder read); louder when every sample was refused."""
    if not refused:
        return []
    benches = sorted({r.benchmark for r in refused})
    head = (f"held out: {len(refused)} of {total} samples of {what} refused (they show "
            f"identities of benchmark {', '.join(benches)}); see errors.parquet, stage "
            "heldout")
    lines = [head]
    lines += [f"  {r.message()}" for r in refused[:5]]
    if len(refused) > 5:
        lines.append(f"  ... and {len(refused) - 5} more")
    return lines


def all_refused_error(refused: Sequence[Refusal], what: str) -> OmniError:
    """The error when every sample of ``what`` is held out: the run was pointed at the
    benchmark's own data."""
    benches = sorted({r.benchmark for r in refused})
    return OmniError(
        f"every sample of {what} ({len(refused)}) shows a held-out identity of benchmark "
        f"{', '.join(benches)}: this is the benchmark's own data, not training data "
        f"(first: {refused[0].message()})")
