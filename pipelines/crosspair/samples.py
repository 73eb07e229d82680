"""Cross-pair samples: in-pair targets with references of the same people taken elsewhere.

:func:`crosspair_samples` turns an in-pair run plus verified identity matches
(:func:`pipelines.crosspair.identity.find_matches`) into training samples of kind
``crosspair``: the target clip and caption stay; each subject's identity image and timbre
reference become those of its best verified match (another clip, by default another video);
the masks are empty, since nothing was cut from the target (stage 2 takes the full loss). A
sample is made only when every subject has a match with both an image and an audio
reference; the others are counted with the reason.

:func:`write_crosspair` writes them as a curation output that ``omni latents`` reads like an
in-pair one: ``samples``, plus the ``clips``, ``identities`` and ``face_tracks`` of the
targets and every ``references`` row used, media paths absolute.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from omni_core.manifests import read_manifest, stable_id, write_manifest


@dataclass
class CrosspairResult:
    samples: pd.DataFrame
    references: pd.DataFrame
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> in-pair samples


def _absolute(df: pd.DataFrame, root: Path, column: str) -> pd.DataFrame:
    df = df.copy()
    df[column] = [str(root / p) if isinstance(p, str) else p for p in df[column]]
    return df


def crosspair_samples(inpair: str | os.PathLike[str], db: pd.DataFrame,
                      matches: pd.DataFrame) -> CrosspairResult:
    """Cross-pair samples of the in-pair run ``inpair`` from verified ``matches`` over the
    identity database ``db`` (whose runs hold the matched identities' references)."""
    root = Path(inpair)
    samples = read_manifest(root / "samples.parquet", "samples")
    refs = pd.concat([_absolute(read_manifest(Path(r) / "references.parquet", "references"),
                                Path(r), "path") for r in sorted(set(db.run))],
                     ignore_index=True).drop_duplicates("reference_id")
    by_identity = {k: g for k, g in refs.groupby("identity_id")}
    ok = matches[matches.verified] if not matches.empty else matches
    best = {q: g.sort_values("rank").match_identity_id.tolist()
            for q, g in ok.groupby("query_identity_id")}

    def usable(match: str) -> tuple[str, str] | None:
        g = by_identity.get(match)
        if g is None:
            return None
        img, aud = g[g.kind == "image"], g[g.kind == "audio"]
        if img.empty or aud.empty:
            return None
        return str(img.reference_id.iloc[0]), str(aud.reference_id.iloc[0])

    rows, used, skipped = [], set(), Counter()
    for s in samples.itertuples():
        chosen = []
        for ident in s.identity_ids:
            pick = next((u for m in best.get(ident, []) if (u := usable(m)) is not None), None)
            chosen.append((ident, pick))
        if any(p is None for _, p in chosen):
            skipped["a subject without a verified match holding an image and a voice"] += 1
            continue
        images = [p[0] for _, p in chosen]
        voices = [p[1] for _, p in chosen]
        used.update(images + voices)
        rows.append({
            "sample_id": stable_id("crosspair", s.sample_id, *images, *voices),
            "kind": "crosspair", "task": "r2av", "clip_id": s.clip_id,
            "clip_path": str(root / s.clip_path), "caption_path": str(root / s.caption_path),
            "identity_ids": list(s.identity_ids), "image_reference_ids": images,
            "audio_reference_ids": voices, "n_speakers": int(s.n_speakers),
            "mask_frames": [], "mask_boxes": [], "mask_spans": [],
            "caption_flags": list(s.caption_flags)})
    out = pd.DataFrame(rows, columns=[c for c in samples.columns])
    return CrosspairResult(out.sort_values("sample_id").reset_index(drop=True),
                           refs[refs.reference_id.isin(used)].sort_values("reference_id")
                           .reset_index(drop=True), skipped)


def write_crosspair(inpair: str | os.PathLike[str], result: CrosspairResult,
                    out: str | os.PathLike[str]) -> Path:
    """The cross-pair samples as a curation output folder ``omni latents`` can read."""
    root, out = Path(inpair), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(result.samples, "samples", out / "samples.parquet")
    write_manifest(result.references, "references", out / "references.parquet")
    for table in ("clips", "identities", "face_tracks"):
        df = read_manifest(root / f"{table}.parquet", table)
        if table == "clips" and "path" in df.columns:
            df = _absolute(df, root, "path")
        write_manifest(df, table, out / f"{table}.parquet")
    return out
