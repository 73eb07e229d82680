"""Cross-pair and stage-3 samples from in-pair runs, verified matches and cloned voices.

A cross-pair sample (stage 2) keeps an in-pair sample's target clip and caption and replaces
each subject's references: the identity image by the crop of its best verified match in
another clip (by default another video, :mod:`.identity`), the timbre by a clean clone of
the speaker's own voice saying other words (:mod:`.voices`). Nothing is cut from the target,
so the masks are empty (stage 2 takes the full loss).

1. :func:`plan_crosspair`: per in-pair sample, the image reference of each subject, or why
   the sample cannot become cross-pair (``no_match``); and the voices to clone (one per
   in-pair timbre reference);
2. the DAG clones and checks the voices (:mod:`.dag`);
3. :func:`build_crosspair`: the samples whose every voice passed; the others ``no_voice``;
4. :func:`stage3_samples`: the stage-3 table: samples of the pool, each given one task so the
   table holds R2AV : RV2AV : RA2V in the configured ratio (:func:`assign_tasks`);
5. :func:`write_sample_folder`: samples with the references, clips, identities and face
   tracks they use, as a curation output folder ``omni latents`` reads (foreign media paths
   absolute).

In-pair runs and the output may be folders or URLs (``s3://...``, :mod:`omni_core.storage`):
media paths taken from a run are joined to the run's location, so they are URLs for a remote
run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from omni_core.manifests import read_manifest, stable_id, write_manifest
from omni_core.storage import RunFolder, join, resolve


def absolute(df: pd.DataFrame, root: str | os.PathLike[str], column: str) -> pd.DataFrame:
    """``column``'s relative paths made absolute under ``root`` (a folder or a URL; absolute
    paths and URLs kept)."""
    df = df.copy()
    df[column] = [resolve(root, p) if isinstance(p, str) else p for p in df[column]]
    return df


@dataclass
class Candidate:
    """An in-pair sample whose every subject has a verified face elsewhere."""

    run: str
    sample: dict[str, Any]  # the in-pair samples row (clip and caption paths absolute)
    images: list[str]  # per subject: the matched identity's image reference id
    prompts: list[str]  # per subject: its in-pair timbre reference id (the clone prompt)


@dataclass
class Plan:
    candidates: list[Candidate]
    sources: list[dict[str, Any]]  # crosspair_sources rows of the samples left out
    references: pd.DataFrame  # every reference of the runs, paths absolute
    voices: list[dict[str, Any]] = field(default_factory=list)  # what to clone


def read_references(runs: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    return pd.concat([absolute(read_manifest(join(r, "references.parquet"), "references"),
                               r, "path") for r in sorted(map(os.fspath, runs))],
                     ignore_index=True).drop_duplicates("reference_id")


def plan_crosspair(runs: Sequence[str | os.PathLike[str]], db: pd.DataFrame,
                   matches: pd.DataFrame) -> Plan:
    """Which in-pair samples of ``runs`` can become cross-pair, with which faces, and the
    voices to clone for them (``voices``: one row per in-pair timbre reference)."""
    refs = read_references(runs)
    images = refs[refs.kind == "image"].groupby("identity_id").reference_id.first().to_dict()
    ok = matches[matches.verified] if not matches.empty else matches
    ranked = {q: g.sort_values("rank").match_identity_id.tolist()
              for q, g in ok.groupby("query_identity_id")}
    candidates, sources, prompts = [], [], {}
    for run in sorted(map(os.fspath, runs)):
        samples = read_manifest(join(run, "samples.parquet"), "samples")
        for s in samples.itertuples(index=False):
            row = s._asdict()
            row["clip_path"] = join(run, s.clip_path)
            row["caption_path"] = join(run, s.caption_path)
            chosen = [next((images[m] for m in ranked.get(ident, []) if m in images), None)
                      for ident in s.identity_ids]
            lost = [f"<sub{k + 1}>" for k, c in enumerate(chosen) if c is None]
            if lost:
                sources.append({"inpair_sample_id": s.sample_id, "run": run,
                                "status": "no_match", "sample_id": None,
                                "reason": f"no verified face in another clip for "
                                          f"{', '.join(lost)}"})
                continue
            candidates.append(Candidate(run, row, [str(c) for c in chosen],
                                        [str(a) for a in s.audio_reference_ids]))
            for ident, audio in zip(s.identity_ids, s.audio_reference_ids, strict=True):
                prompts[str(audio)] = (run, str(ident), s.clip_id)
    voices = []
    by_id = refs.set_index("reference_id")
    for audio, (run, ident, clip_id) in sorted(prompts.items()):
        ref = by_id.loc[audio]
        voices.append({"prompt_reference_id": audio, "identity_id": ident, "run": run,
                       "prompt_path": str(ref.path), "prompt_clip_id": str(ref.source_clip_id),
                       "clip_id": clip_id, "span": [float(ref.start_s), float(ref.end_s)]})
    return Plan(candidates, sources, refs, voices)


def build_crosspair(plan: Plan, voices: pd.DataFrame
                    ) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """The cross-pair samples, the references they use (images of the runs; the clones from
    ``voices``, the ``voices`` table, paths relative to the cross-pair output), and a
    ``crosspair_sources`` row for every candidate."""
    passed = voices[voices.passed] if len(voices) else voices
    clone_of = dict(zip(passed.prompt_reference_id, passed.voice_id, strict=True))
    failed = dict(zip(voices.prompt_reference_id, voices.reason, strict=True)) \
        if len(voices) else {}
    rows, sources, used = [], [], set()
    for c in plan.candidates:
        s = c.sample
        clones = [clone_of.get(p) for p in c.prompts]
        if any(v is None for v in clones):
            k = next(i for i, v in enumerate(clones) if v is None)
            why = failed.get(c.prompts[k]) or "not cloned"
            sources.append({"inpair_sample_id": s["sample_id"], "run": c.run,
                            "status": "no_voice", "sample_id": None,
                            "reason": f"<sub{k + 1}>: {why}"})
            continue
        sample_id = stable_id("crosspair", s["sample_id"], *c.images, *clones)
        used.update(c.images)
        rows.append({**s, "sample_id": sample_id, "kind": "crosspair", "task": "r2av",
                     "image_reference_ids": list(c.images), "audio_reference_ids": clones,
                     "identity_ids": list(s["identity_ids"]), "mask_frames": [],
                     "mask_boxes": [], "mask_spans": [],
                     "caption_flags": list(s["caption_flags"])})
        sources.append({"inpair_sample_id": s["sample_id"], "run": c.run, "status": "sample",
                        "sample_id": sample_id, "reason": None})
    samples = pd.DataFrame(rows, columns=read_manifest_columns("samples"))
    images = plan.references[plan.references.reference_id.isin(used)]
    clones = pd.DataFrame([{
        "reference_id": v.voice_id, "identity_id": v.identity_id, "kind": "audio",
        "path": v.path, "source_clip_id": v.prompt_clip_id, "frame_index": None, "box": None,
        "start_s": None, "end_s": None, "augment": None} for v in passed.itertuples()],
        columns=images.columns)
    refs = pd.concat([images, clones], ignore_index=True) if len(clones) else images
    return (samples.sort_values("sample_id").reset_index(drop=True),
            refs.sort_values("reference_id").reset_index(drop=True), sources)


def read_manifest_columns(name: str) -> list[str]:
    from omni_core.manifests import get_schema

    return get_schema(name).column_names


def assign_tasks(sample_ids: Sequence[str], mix: Mapping[str, float]) -> dict[str, str]:
    """One task per sample, the counts in the ratio ``mix`` (each within one of its exact
    share, :func:`omni_core.tasks.deal_tasks`); which sample gets which by a hash of its id,
    so nothing depends on input order."""
    from omni_core.tasks import deal_tasks

    order = sorted(sample_ids, key=lambda s: (stable_id("stage3", s), s))
    return dict(zip(order, deal_tasks(mix, len(order)), strict=True))


def stage3_samples(pool: pd.DataFrame, mix: Mapping[str, float]) -> pd.DataFrame:
    """The stage-3 table: every pool sample once, with its task (RV2AV: ``omni latents``
    greys the subjects' heads out of the target for the source video; RA2V: the target audio
    drives). Ids are new (``stable_id(sample, task)``); masks are kept for the record (stage
    3 takes the full loss)."""
    if pool.empty:
        return pool.copy()
    task = assign_tasks(list(pool.sample_id), mix)
    out = pool.copy()
    out["task"] = [task[s] for s in out.sample_id]
    out["sample_id"] = [stable_id("stage3", s, t) for s, t in zip(out.sample_id, out.task,
                                                                   strict=True)]
    return out.sort_values("sample_id").reset_index(drop=True)


def write_sample_folder(out: RunFolder, prefix: str, samples: pd.DataFrame,
                        references: pd.DataFrame, runs: Sequence[str | os.PathLike[str]]
                        ) -> list[str]:
    """``samples`` as a curation output folder ``omni latents`` reads, at ``prefix`` inside
    ``out`` (``""``: the output itself): ``samples``, the ``references`` they use, and the
    ``clips``, ``identities`` and ``face_tracks`` of their target clips (from the in-pair
    ``runs``; clip paths absolute). Returns the files written (published when remote)."""
    used = {r for col in ("image_reference_ids", "audio_reference_ids")
            for ids in samples[col] for r in ids}
    tables = {"samples": samples,
              "references": references[references.reference_id.isin(used)]}
    clips = set(samples.clip_id)
    for table, key in (("clips", "clip_id"), ("identities", "identity_id"),
                       ("face_tracks", "track_id")):
        parts = []
        for run in sorted(map(os.fspath, runs)):
            df = read_manifest(join(run, f"{table}.parquet"), table)
            df = df[df.clip_id.isin(clips)]
            parts.append(absolute(df, run, "path") if table == "clips" else df)
        tables[table] = pd.concat(parts, ignore_index=True).sort_values(key) \
            .reset_index(drop=True)
    written = []
    for table, df in tables.items():
        rel = f"{prefix}/{table}.parquet" if prefix else f"{table}.parquet"
        write_manifest(df, table, out.local(rel, fetch=False))
        out.publish(rel)
        written.append(rel)
    return written
