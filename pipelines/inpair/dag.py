"""The in-pair curation job on Ray Data: raw talking videos -> clips with who-speaks-when.

The job's stages (:mod:`omni_core.jobs`; each loads its models once per actor and reserves
what ``resources.<stage>`` of the config says), and the steps each one times:

1. ``prepare`` (one input -> its clips; steps ``prepare``: probe, shot boundaries,
   speech-aligned clip plan where picture and sound both exist (:func:`.clip.plan_video`);
   ``cut``: each clip to the target fps and 16 kHz mono);
2. ``audio`` (per clip): optional enhancement, diarization, transcription, words attributed to
   speakers -> ``speech_segments``;
3. ``visual`` (per clip, one decode of its frames; steps ``faces``, ``associate``,
   ``references``): faces -> tracks -> identities, speaker <-> face association and the
   clip's status (:mod:`.associate`), each subject's references and masks
   (:mod:`.references`);
4. ``caption`` (per clip that passed every filter): the structured caption and the ``samples``
   row;
5. ``finish`` (per batch of ``output.part_clips`` clips): the clips' rows of every table and
   the inputs' plans (which travel with their clips as carried items) are published as
   result parts (:meth:`omni_core.jobs.ResultStore.put_part`).

Each clip ends with a ``status`` in the ``clips`` table: ``sample`` or the filter that
stopped it (``omni_core.manifests.CLIP_STATUS``). Every input ends up processed or as an
error row (step, reason); a failing item never stops the run. Ids are deterministic; a rerun
skips the inputs and clips finished under the same result key, decided from one listing of
the parts (:class:`omni_core.jobs.ResultStore`, :func:`finished`); the inputs to do are fed
to Ray Data from a file the driver writes page by page (:mod:`omni_core.jobs.feed`); the
final manifests are a streaming merge of the parts, sorted, sharded by clip id above
``output.shard_clips`` clips (:mod:`omni_core.jobs.merge`), so a killed run resumed gives the
same manifests as one that was never interrupted.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_core.chat import pin_endpoints
from omni_core.config import from_dict, to_dict
from omni_core.errors import OmniError
from omni_core.jobs import (
    JobContext,
    JobSummary,
    ResultStore,
    Stage,
    StagePlan,
    WorkItem,
    collect_setup,
    provenance,
    result_key,
    run_on_ray,
)
from omni_core.jobs.feed import FeedWriter, rows_per_block
from omni_core.jobs.merge import Source, TableSpec, merge_table, shard_count
from omni_core.jobs.store import Index, group_values
from omni_core.jobs.summary import StageTally
from omni_core.manifests import error_row, read_manifest, stable_id
from omni_core.storage import Listing, RunFolder, as_run_folder, list_files, local_input

from .config import InpairConfig

TABLES = ("videos", "clips", "speech_segments", "face_tracks", "identities", "references",
          "samples", "errors")
#: per table: its sort keys and the column that picks its shard (omni_core.jobs.merge)
SPECS = {
    "videos": TableSpec(("video_id",), "video_id"),
    "clips": TableSpec(("clip_id",), "clip_id"),
    "speech_segments": TableSpec(("clip_id", "start_s", "segment_id"), "clip_id"),
    "face_tracks": TableSpec(("clip_id", "track_id"), "clip_id"),
    "identities": TableSpec(("clip_id", "identity_id"), "clip_id"),
    "references": TableSpec(("source_clip_id", "identity_id", "kind"), "source_clip_id"),
    "samples": TableSpec(("sample_id",), "clip_id"),
    "errors": TableSpec(("stage", "item", "reason"), "item"),
}
#: the run's input feed while it runs (omni_core.jobs.feed)
STAGING_DIR = "_staging"
JOB = "inpair"


def _feed_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("source", pa.string()), ("stat", pa.string()),
                      ("done", pa.list_(pa.string()))])


def list_inputs(source: str | os.PathLike[str], out: RunFolder | None = None) -> Listing:
    """Every entry under a folder or a URL prefix (``s3://bucket/videos``) or the one file
    given, accounted for (:func:`omni_core.storage.list_files`): the regular files are the
    inputs; the entries that cannot be inputs (a pipe, a broken symlink, ...) become error
    rows of step ``list``; hidden entries and everything under the run's own output ``out``
    (and its staging folder) are skipped and counted.

    Nothing is filtered by extension: a file that is not media becomes an error row, so every
    input is accounted for.
    """
    exclude = [] if out is None else [out.out, str(out.root)]
    return list_files(source, exclude=exclude)


class ClipWork(WorkItem):
    """One clip travelling through the stages: its ``clips`` row, its video, its source, the
    subjects the visual stage found, and how often its media was decoded where."""

    @classmethod
    def start(cls, clip_id: str, video_id: str, source: str, clip: dict[str, Any]) -> ClipWork:
        return cls(clip_id, {"video_id": video_id, "source": source, "clip": clip,
                             "subjects": [], "decodes": {}})

    @property
    def clip_id(self) -> str:
        return self.item

    @property
    def video_id(self) -> str:
        return self.data["video_id"]

    @property
    def source(self) -> str:
        return self.data["source"]

    @property
    def clip(self) -> dict[str, Any]:
        return self.data["clip"]

    @property
    def subjects(self) -> list[dict[str, Any]]:
        """Per subject (subject order): anchor, speaker, identity_id, reference ids, masks."""
        return self.data["subjects"]

    @subjects.setter
    def subjects(self, value: list[dict[str, Any]]) -> None:
        self.data["subjects"] = value

    @property
    def decodes(self) -> dict[str, int]:
        """``"<stage> <video|audio>"`` -> times the clip's media was decoded there (the
        benchmark checks each clip is decoded once per stage)."""
        return self.data["decodes"]

    def decoded(self, stage: str, kind: str) -> None:
        key = f"{stage} {kind}"
        self.decodes[key] = self.decodes.get(key, 0) + 1

    def status(self, status: str, reason: str | None) -> None:
        self.clip.update(status=status, status_reason=reason)


def _concrete(config: dict[str, Any]) -> InpairConfig:
    """The stage's config with every ``auto`` decided (the job passes a resolved one; this
    keeps a stage built on its own from guessing)."""
    from .models import resolve_models

    return resolve_models(from_dict(InpairConfig, config)).config


class _ClipStage(Stage):
    item_type = ClipWork

    def setup(self, config: dict[str, Any]) -> None:
        self.cfg = _concrete(config)


class PrepareStage(_ClipStage):
    """One input file -> its clips: probe, shots, speech-aligned plan (step ``prepare``), cut
    (step ``cut``, per clip)."""

    name = "prepare"
    steps = ("prepare", "cut")

    def __call__(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        from omni_core.media import probe

        from .clip import cut_clip, plan_video

        source = row["source"]  # a path or a URL: what the manifests record
        t0 = time.perf_counter()
        cut_s = 0.0
        tables: dict[str, list[dict[str, Any]]] = {"videos": [], "errors": []}
        works: list[ClipWork] = []
        finished = set(row.get("done") or ())  # clips an earlier run finished (the driver's)
        skipped: set[str] = set()
        failed = None
        try:
            local = local_input(source)  # a remote input is downloaded to this node's cache
            info = probe(local)
            if not info.has_video or not info.has_audio:
                missing = "video" if not info.has_video else "audio"
                raise OmniError(f"no {missing} stream: a talking clip needs both")
            content = _sha256(local)
            video_id = stable_id(source, content)
            tables["videos"].append({
                "video_id": video_id, "path": source, "content_hash": content,
                "duration_s": info.duration_s, "fps": info.fps, "n_frames": info.n_frames,
                "width": info.width, "height": info.height, "video_codec": info.video_codec,
                "has_audio": info.has_audio, "audio_codec": info.audio_codec,
                "sample_rate": info.sample_rate, "vfr": info.vfr})
            opts = self.cfg.clip
            shots, spans = plan_video(local, info, opts)
            if not spans:  # the input is accounted for: it gave no clip, and why
                longest = max((b - a for a, b in shots), default=0.0)
                a, b = info.av_span() or (0.0, 0.0)
                raise OmniError(f"no clip: no shot holds a {opts.clip_s:.2f} s clip (video "
                                f"with sound {b - a:.2f} s, {len(shots)} shot(s), longest "
                                f"{longest:.2f} s)")
            for span in spans:
                clip_id = stable_id(video_id, span.start_s, span.end_s)
                rel = Path("clips") / video_id / f"{clip_id}.mp4"
                clip_row = {"clip_id": clip_id, "video_id": video_id,
                            "shot_index": span.shot_index, "start_s": span.start_s,
                            "end_s": span.end_s, "path": rel.as_posix(), "fps": opts.fps,
                            "n_frames": opts.clip_frames, "width": info.width,
                            "height": info.height, "sample_rate": opts.sample_rate}
                work = ClipWork.start(clip_id, video_id, source, clip_row)
                works.append(work)
                if clip_id in finished:
                    skipped.add(clip_id)
                    continue  # finished by an earlier run: not cut again
                ts = time.perf_counter()
                try:
                    cut = cut_clip(local, span, self.out.local(rel.as_posix(), fetch=False),
                                   opts, info=info)
                    self.out.publish(rel.as_posix())
                    clip_row.update(width=cut.width, height=cut.height)
                except Exception as exc:
                    work.fail("cut", exc)
                work.steps["cut"] = time.perf_counter() - ts
                cut_s += work.steps["cut"]
        except Exception as exc:  # the whole input is unusable: one error row
            if not isinstance(exc, OmniError):
                traceback.print_exc()
            tables["errors"].append(error_row(source, self.name, exc))
            works, failed = [], self.name
        todo = [w for w in works if w.clip_id not in skipped]
        # the input's plan travels with its clips to the finish stage, which publishes it
        plan = ClipWork(source, {"clip_ids": [w.clip_id for w in works], "stat": row.get("stat"),
                                 "stats": {"steps": {"prepare": time.perf_counter() - t0 - cut_s},
                                           "failed": failed}},
                        tables=tables, carried=True)
        self.report(done=1, failed=int(failed is not None), out=len(todo))
        yield plan.to_row()
        for w in todo:
            yield w.to_row()


class AudioStage(_ClipStage):
    """Per clip: enhancement (optional), diarization, transcription, attribution
    (:class:`pipelines.inpair.audio.AudioModels`, built once per actor)."""

    name = "audio"

    def setup(self, config: dict[str, Any]) -> None:
        super().setup(config)
        if self.cfg.audio.backend == "annotations":
            from .doubles import AnnotationSpeech

            self.double: Any = AnnotationSpeech()
        else:
            from .audio import AudioModels

            self.double = None
            self.models = AudioModels.load(self.cfg.audio, self.cfg.weights, self.cfg.device)

    @classmethod
    def preflight(cls, config: dict[str, Any]) -> None:
        cfg = _concrete(config)
        if cfg.audio.backend != "annotations":
            from .audio import AudioModels

            AudioModels.check(cfg.audio, cfg.weights)

    def process(self, work: ClipWork) -> None:
        if self.double is not None:
            segments = self.double.segments(work.source, work.clip["start_s"],
                                            work.clip["end_s"])
        else:
            audio = _clip_audio(self.out.local(work.clip["path"]), self.cfg.clip)
            work.decoded(self.name, "audio")
            segments = self.models.segments(audio, self.cfg.clip.sample_rate)
        work.tables["speech_segments"] = [
            {"segment_id": stable_id(work.clip_id, s.speaker, s.start_s, s.end_s),
             "clip_id": work.clip_id, "speaker": s.speaker, "start_s": s.start_s,
             "end_s": s.end_s, "text": s.text, "confidence": s.confidence}
            for s in segments]


def _clip_audio(path: Path, opts: Any) -> Any:
    """The clip's mono waveform at the clip sample rate, exactly ``clip_frames / fps`` long
    (AAC decoders keep the encoder's end padding)."""
    from omni_core.media import load_audio

    audio = load_audio(path, opts.sample_rate)
    return audio[: round(opts.clip_s * opts.sample_rate)]


class VisualStage(_ClipStage):
    """Per clip, on one decode of its frames: faces -> tracks -> identities, speaker <-> face
    association, references and masks (:mod:`.faces`, :mod:`.associate`,
    :mod:`.references`). Sets the clip's ``status``; only a clip that passes every filter gets
    subjects and references."""

    name = "visual"
    steps = ("faces", "associate", "references")

    @classmethod
    def preflight(cls, config: dict[str, Any]) -> None:
        from omni_core.models.face import face_model_class

        cfg = _concrete(config)
        if cfg.faces.embedder == "arcface":
            face_model_class(cfg.faces.pack).check_weights(cfg.weights)
        if cfg.associate.backend == "syncnet":
            from omni_core.models.syncnet import SyncNet

            SyncNet.check_weights(cfg.weights)

    def setup(self, config: dict[str, Any]) -> None:
        from omni_core.media import check_decoder
        from omni_core.models.face import face_model_class

        super().setup(config)
        check_decoder(self.cfg.decoder)  # this worker can run it (NVDEC: a GPU here)
        pack = face_model_class(self.cfg.faces.pack)
        twin = self.cfg.faces.embedder == "twin"
        self.face_model = pack.for_weights("debug" if twin else self.cfg.weights,
                                           self.cfg.device)
        self.syncnet = None
        if self.cfg.associate.backend == "syncnet":
            from omni_core.models.syncnet import SyncNet

            self.syncnet = SyncNet.for_weights(self.cfg.weights, self.cfg.device)

    def process(self, work: ClipWork) -> None:
        import numpy as np

        from omni_core.media import read_frames, write_image, write_wav

        from .associate import (
            associate,
            dense_boxes,
            merge_dense,
            status_after_association,
            status_before_association,
        )
        from .faces import analyze_faces, identity_rows, track_rows
        from .references import assemble_references

        clip, opts = work.clip, self.cfg.clip
        clip_file = self.out.local(clip["path"])  # fetched once when the output is remote
        frames = read_frames(clip_file, decoder=self.cfg.decoder)
        work.decoded(self.name, "video")
        result = analyze_faces(frames, opts.fps, self.face_model, self.cfg.faces)
        tracks = track_rows(work.clip_id, result)
        idents = identity_rows(work.clip_id, result)
        work.tables["face_tracks"], work.tables["identities"] = tracks, idents
        segments = [(r["speaker"], r["start_s"], r["end_s"])
                    for r in work.tables.get("speech_segments", [])]
        speakers = sorted({s for s, _, _ in segments})
        clip.update(n_speakers=len(speakers), n_faces=sum(t["passed"] for t in tracks),
                    best_sync=None)
        stop = status_before_association(speakers, idents, tracks)
        if stop:
            return work.status(*stop)

        self.step("associate")
        n = len(frames)
        per_ident = [merge_dense([dense_boxes(result.tracks[k].frame_indices,
                                              result.tracks[k].boxes, n)
                                  for k in ident.tracks]) for ident in result.identities]
        audio = _clip_audio(clip_file, opts)
        work.decoded(self.name, "audio")
        names, scores, assignment = associate(frames, opts.fps, per_ident, audio, segments,
                                              self.cfg.associate, self.syncnet)
        best = assignment.best
        clip["best_sync"] = float(best) if np.isfinite(best) else None
        for (s, t), score, margin in zip(assignment.pairs, assignment.scores,
                                         assignment.margins, strict=True):
            idents[t].update(speaker=names[s], sync_confidence=score, margin=margin)
        stop = status_after_association(assignment, names, len(idents), self.cfg.associate)
        if stop:
            return work.status(*stop)

        self.step("references")
        refs = assemble_references(work.clip_id, work.video_id, frames, audio,
                                   opts.sample_rate, result, assignment, names, segments,
                                   [r["identity_id"] for r in idents], self.cfg.references)
        if refs.no_reference:
            return work.status("no_reference", refs.no_reference)
        for rel, data in refs.media:
            dest = self.out.local(rel, fetch=False)
            if rel.endswith(".png"):
                write_image(dest, data)
            else:
                write_wav(dest, data, opts.sample_rate)
            self.out.publish(rel)
        work.tables["references"] = refs.rows
        work.subjects = refs.subjects
        work.status("sample", None)


class CaptionStage(_ClipStage):
    """Per clip that passed every filter: the structured caption (speech spans and timestamps
    from the segments; descriptive fields from the caption VLM when one is configured, else
    empty and flagged) written as JSON, and the ``samples`` row."""

    name = "caption"
    #: frames of the clip sent to the VLM, spread evenly
    vlm_frames = 4

    def setup(self, config: dict[str, Any]) -> None:
        from .caption import CaptionVLM

        super().setup(config)
        self.vlm = CaptionVLM.from_env(self.cfg.caption)
        if self.vlm is not None:
            from omni_core.media import check_decoder

            check_decoder(self.cfg.decoder)

    def process(self, work: ClipWork) -> None:
        import json

        if work.clip.get("status") != "sample":
            return
        from .caption import assemble_caption, format_transcript

        subjects = work.subjects
        labels = [s["speaker"] for s in subjects]
        segments = work.tables.get("speech_segments", [])
        descriptive = None
        if self.vlm is not None:
            from omni_core.media import read_frames, read_image, sample_indices

            idx = sample_indices(int(work.clip["n_frames"]), self.vlm_frames)
            frames = read_frames(self.out.local(work.clip["path"]), idx,
                                 decoder=self.cfg.decoder)
            work.decoded(self.name, "video")
            faces = [read_image(self.out.local(s["image_path"])) for s in subjects]
            descriptive = self.vlm.describe(list(frames), faces,
                                            format_transcript(labels, segments))
        cap, flags = assemble_caption(labels, segments, descriptive=descriptive)
        rel = Path("captions") / work.video_id / f"{work.clip_id}.json"
        doc = {"clip_id": work.clip_id,
               "subjects": [{"anchor": s["anchor"], "speaker": s["speaker"],
                             "identity_id": s["identity_id"]} for s in subjects],
               "caption": cap.render(), "flags": flags,
               "vlm": self.vlm.info() if self.vlm is not None else None}
        self.out.write_text(rel.as_posix(),
                            json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        work.tables["samples"] = [{
            "sample_id": stable_id(work.clip_id, "inpair", "r2av"), "kind": "inpair",
            "task": "r2av", "clip_id": work.clip_id, "clip_path": work.clip["path"],
            "caption_path": rel.as_posix(),
            "identity_ids": [s["identity_id"] for s in subjects],
            "image_reference_ids": [s["image_reference_id"] for s in subjects],
            "audio_reference_ids": [s["audio_reference_id"] for s in subjects],
            "n_speakers": int(work.clip["n_speakers"]),
            "mask_frames": [s["frame_index"] for s in subjects],
            "mask_boxes": [s["box"] for s in subjects],
            "mask_spans": [s["span"] for s in subjects],
            "caption_flags": flags}]


class FinishStage(_ClipStage):
    """Last stage, per batch of clips (failed ones too) and of the inputs' plans: publishes
    them as result parts (:meth:`ResultStore.put_part`: the clips' rows of every table,
    columnar, and the plans), and returns one small row per batch."""

    name = "finish"

    def setup(self, config: dict[str, Any]) -> None:
        self.store = ResultStore(self.out, JOB)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import json

        from omni_core.jobs.store import Entry

        t0 = time.perf_counter()
        works: list[ClipWork] = []
        plans: list[Entry] = []
        for item, work_json in zip(batch["item"], batch["work"], strict=True):
            work = ClipWork.from_row({"item": item, "work": work_json})
            if not work.carried:
                works.append(work)
                continue
            d = work.data  # an input's plan
            plans.append(Entry(work.item, {"clip_ids": d["clip_ids"], "stats": d["stats"]},
                               source=work.item, tables=work.tables,
                               stat=json.loads(d["stat"]) if d.get("stat") else None))
        share = (time.perf_counter() - t0) / max(1, len(works))
        clips: list[Entry] = []
        for work in works:
            work.steps["finish"] = share  # the batch's time, shared by its clips
            tables = dict(work.tables)
            if work.failed is None:
                tables["clips"] = [work.clip]
            clips.append(Entry(work.clip_id, {"stats": {**work.stats(),
                                                        "decodes": work.decodes}},
                               parent=work.source, tables=tables))
        failed = sum(w.failed is not None for w in works)
        lost: list[list[str]] = []  # [item, kind, reason] of what could not be published
        for kind, entries in (("clips", clips), ("inputs", plans)):
            try:
                self.store.put_part(kind, self.job.key, entries)  # retried there
            except Exception as exc:  # noqa: BLE001 - reported as error rows, not a dead run
                reason = error_row("", "finish", exc)["reason"]
                lost += [[e.item if kind == "clips" else e.source or e.item, kind, reason]
                         for e in entries]
        self.report(done=len(clips), failed=failed + len(lost), out=len(clips))
        return {"item": [f"{len(clips)} clips, {len(plans)} inputs"], "failed": [str(failed)],
                "unpublished": [json.dumps(lost)]}


def unpublished_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``errors`` rows (stage ``finish``) for the clips and inputs whose results the finish
    stage could not publish (:class:`FinishStage`'s returned rows): they are not finished, so
    a rerun processes them again."""
    out = []
    for row in rows:
        for item, kind, reason in json.loads(row.get("unpublished") or "[]"):
            what = "clip" if kind == "clips" else "input"
            out.append(error_row(item, "finish", OmniError(
                f"the {what}'s results could not be published ({reason}); a rerun retries it")))
    return out


#: the stages in order with their steps (the summary's and the report's stage table)
STAGES = (PrepareStage, AudioStage, VisualStage, CaptionStage, FinishStage)


def run_inpair(source: str | os.PathLike[str], out: RunFolder | str | os.PathLike[str],
               config: InpairConfig | None = None, *, progress: bool = True,
               verbose: bool = False) -> JobSummary:
    """Run (or resume) the job over every file of ``source``; write the manifests to ``out``.

    Both may be local paths or fsspec URLs (``s3://bucket/videos``, ``s3://bucket/run``):
    remote inputs are downloaded to each node's cache to be decoded, and every file of a
    remote output is written to the node's staging folder and uploaded
    (:mod:`omni_core.storage`), so actors on any node need no shared filesystem.
    """
    from .models import resolve_models

    t0 = time.perf_counter()
    models = resolve_models(pin_endpoints(config or InpairConfig()))
    cfg = models.config
    print(models.headline(), flush=True)
    folder = as_run_folder(out)
    folder.root.mkdir(parents=True, exist_ok=True)
    cfg_dict = to_dict(cfg)
    key = result_key({k: v for k, v in cfg_dict.items()
                      if k not in ("ray", "resources", "output")},
                     {s.name: s.version for s in STAGES})
    store = ResultStore(folder, JOB)
    listing = list_inputs(source, folder)
    inputs = listing.files
    done = finished(store, key, listing)
    todo = [s for s in inputs if s not in done.complete]
    job = JobContext(JOB, folder, key)
    res = cfg.resources
    plans = [StagePlan(PrepareStage, res.prepare, {"config": cfg_dict}, fan_out=True,
                       unit="inputs"),
             StagePlan(AudioStage, res.audio, {"config": cfg_dict}, unit="clips"),
             StagePlan(VisualStage, res.visual, {"config": cfg_dict}, unit="clips"),
             StagePlan(CaptionStage, res.caption, {"config": cfg_dict}, unit="clips"),
             StagePlan(FinishStage, res.finish, {"config": cfg_dict}, unit="clips",
                       batch_size=cfg.output.part_clips)]
    feed = FeedWriter(folder, f"{STAGING_DIR}/{JOB}/inputs-{job.run}.parquet",
                      rows_per_block(len(todo)), _feed_schema())
    for s in todo:
        stat = listing.stats.get(s)
        feed.add({"source": s, "stat": json.dumps(stat) if stat is not None else None,
                  "done": done.partial.get(s, [])})
    lost = unpublished_rows(run_on_ray(job, feed.close(), plans, cfg.ray, progress=progress,
                                       verbose=verbose))
    folder.remove(f"{STAGING_DIR}/{JOB}")
    setup = collect_setup(job)
    store.refresh()
    listed = [error_row(entry, "list", OmniError(reason)) for entry, reason in listing.problems]
    merged = merge_run(store, key, listing, folder, cfg.output.shard_clips,
                       errors=[*listed, *lost])
    done, counts, decodes = merged.done, merged.counts, merged.decodes
    stages = merged.tally.rows(setup=setup.seconds, actors=setup.actors,
                               override={"prepare": {"in": len(inputs), "out": len(done.clips),
                                                     "failed": merged.failed}})
    filters = _status_counts(folder)
    notes = [*models.lines(),
             f"listing: {len(inputs)} inputs, {len(listing.problems)} entries not inputs "
             f"(error rows, step list); skipped {listing.hidden} hidden entries and "
             f"{listing.excluded} files under the output folder"]
    if filters:
        notes.append("clips by status: "
                     + ", ".join(f"{s} {n}" for s, n in sorted(filters.items())))
    summary = JobSummary.build(
        JOB, folder.out, total=len(inputs) + len(listing.problems),
        skipped=len(inputs) - len(todo), stages=stages,
        errors=read_manifest(folder.local("errors.parquet"), "errors"), counts=counts,
        wall_s=time.perf_counter() - t0, result_key=key,
        details={"listing": {"inputs": len(inputs), "not_inputs": len(listing.problems),
                             "hidden": listing.hidden, "under_output": listing.excluded},
                 "models": models.to_dict(),
                 "filters": dict(sorted(filters.items())),
                 "max_decodes_per_clip": dict(sorted(decodes.items()))},
        provenance=provenance(cfg_dict, weights=cfg.weights, inputs=[str(source)],
                              checkpoints=setup.checkpoints),
        notes=notes)
    summary.write(folder)
    from .report import write_report

    write_report(folder)
    return summary


@dataclass
class Finished:
    """What earlier runs finished under a key, for the inputs of a listing: the inputs'
    plans (unchanged inputs only), their finished clips, the inputs whose every clip is
    finished, and the finished clips of the others."""

    inputs: Index
    clips: Index
    complete: set[str]
    partial: dict[str, list[str]]


def finished(store: ResultStore, key: str, listing: Listing) -> Finished:
    """One listing of the store's parts per kind, checked against the input listing's stats
    (no request per input or clip). The clips' index holds ids, not records, and the
    matching of planned to finished clips is an Arrow join: the driver holds no Python object
    per clip."""
    import pyarrow as pa
    import pyarrow.compute as pc

    plans = store.fresh("inputs", key, listing.stats)
    clips = store.index("clips", key, records=False)
    chunks: list[Any] = []
    srcs: list[str] = []
    ids: list[str] = []
    complete: set[str] = set()
    for source, rec in store.records(plans):
        if not rec["clip_ids"]:
            complete.add(source)
        srcs += [source] * len(rec["clip_ids"])
        ids += rec["clip_ids"]
        if len(ids) >= 65_536:
            chunks.append(pa.table({"parent": pa.array(srcs, pa.string()),
                                    "item": pa.array(ids, pa.string())}))
            srcs, ids = [], []
    chunks.append(pa.table({"parent": pa.array(srcs, pa.string()),
                            "item": pa.array(ids, pa.string())}))
    planned = pa.concat_tables(chunks)
    # a planned clip is finished when the clips' index has it under the same input
    pos = pc.index_in(planned.column("item"), value_set=clips.table.column("item"))
    parent = clips.table.column("parent").take(pc.fill_null(pos, 0)) if len(clips) else \
        pa.nulls(planned.num_rows, pa.string())
    have = pc.fill_null(pc.and_(pc.is_valid(pos), pc.equal(parent, planned.column("parent"))),
                        False)
    planned = planned.append_column("have", have)
    counts = planned.group_by("parent").aggregate([("item", "count"), ("have", "sum")])
    whole = pc.equal(counts.column("item_count"), counts.column("have_sum"))
    complete.update(counts.filter(whole).column("parent").to_pylist())
    some = pc.and_(pc.invert(whole), pc.greater(counts.column("have_sum"), 0))
    got = planned.filter(have)
    partial = {src: sorted(items.to_pylist()) for src, items in group_values(
        got.filter(pc.is_in(got.column("parent"),
                            value_set=counts.filter(some).column("parent"))),
        "parent", "item").items()}
    if got.num_rows < clips.table.num_rows:
        clips = clips.filter(pc.is_in(clips.table.column("item"), value_set=got.column("item")))
    pa.default_memory_pool().release_unused()  # the join's scratch, back to the system
    return Finished(plans, clips, complete, partial)


@dataclass
class Merged:
    """The end of a run (:func:`merge_run`): what is finished, the stage tally of its
    records, the rows per manifest, the inputs and clips that failed in ``prepare``/``cut``,
    and the most decodes of one clip per stage and media kind."""

    done: Finished
    tally: StageTally
    counts: dict[str, int]
    failed: int
    decodes: dict[str, int]


def merge_run(store: ResultStore, key: str, listing: Listing, folder: RunFolder,
              shard_clips: int, errors: Sequence[dict[str, Any]] = ()) -> Merged:
    """The driver's end of a run: decide what is finished, tally its records (streamed from
    the items files), write every manifest by the streaming merge (``errors``: extra error
    rows, e.g. the listing's) and fold the items files. Driver memory: one part and one
    shard of rows, plus the ids of the finished clips (Arrow, about 100 bytes a clip)."""
    done = finished(store, key, listing)
    tally = StageTally([(s.name, s.step_names()) for s in STAGES])
    failed = 0
    decodes: dict[str, int] = {}
    for _, rec in store.records(done.inputs):
        tally.add(rec["stats"])
        failed += bool(rec["stats"]["failed"])
    for _, rec in store.records(done.clips, "clips", key):
        st = rec["stats"]
        tally.add(st)
        failed += st["failed"] == "cut"
        for k, n in st.get("decodes", {}).items():
            decodes[k] = max(decodes.get(k, 0), int(n))
    shards = shard_count(len(done.clips), shard_clips)
    sources = {"videos": [Source("inputs", key, done.inputs)],
               "errors": [Source("inputs", key, done.inputs), Source("clips", key, done.clips)]}
    counts = {t: merge_table(store, sources.get(t, [Source("clips", key, done.clips)]), t,
                             SPECS[t], folder, shards=shards,
                             extra=errors if t == "errors" else ())
              for t in TABLES}
    for kind in ("inputs", "clips"):  # the next resume reads one items file per kind
        store.compact(kind, key)
    return Merged(done, tally, counts, failed, decodes)


def _status_counts(folder: RunFolder) -> dict[str, int]:
    """Clips per ``status``, read from the written manifest's one column."""
    import pyarrow.parquet as pq

    status = pq.read_table(folder.local("clips.parquet"), columns=["status"]).column("status")
    counts = status.combine_chunks().value_counts().to_pylist() if len(status) else []
    return {str(c["values"]): int(c["counts"]) for c in counts}


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
