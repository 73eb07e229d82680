"""The in-pair curation DAG on Ray Data: raw talking videos -> clips with who-speaks-when.

Stages (each a Ray Data callable class that loads its models once per actor and declares its
CPU/GPU needs from the config):

1. :class:`PrepareStage` (one input -> its clips): probe (unusable -> error row), shot
   boundaries, speech-aligned clip plan, cut to the target fps and 16 kHz mono;
2. :class:`AudioStage` (per clip): optional enhancement, diarization, transcription, words
   attributed to speakers -> ``speech_segments``;
3. :class:`VisualStage` (per clip, one decode of its frames): faces -> tracks -> identities
   (``face_tracks``, ``identities``), speaker <-> face association, and for a clip that passes
   every filter each subject's identity and timbre references with their masks
   (``references``);
4. :class:`CaptionStage` (per clip): the structured caption (speech from the segments, the
   descriptive fields from a VLM when one is configured) and the ``samples`` row;
5. :class:`FinishStage` (per clip): writes the clip's part (see :mod:`pipelines.parts`).

Each clip ends with a ``status`` in the ``clips`` table: ``sample`` or the filter that
stopped it (``omni_core.manifests.CLIP_STATUS``). Every input ends up processed or as an
error row (stage, reason); a failing item never stops the run. Ids are deterministic; a rerun
skips finished parts; the final manifests are the sorted merge of the parts, so a killed run
resumed gives the same manifests as one that was never interrupted.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_core.config import to_dict
from omni_core.errors import OmniError
from omni_core.manifests import error_row, stable_id
from omni_core.ray_helpers import init_ray, plan_actor_pool
from omni_core.storage import RunFolder, as_run_folder, join, list_files, local_input

from ..parts import PartStore, config_hash
from .config import InpairConfig

TABLES = ("videos", "clips", "speech_segments", "face_tracks", "identities", "references",
          "samples", "errors")
SORT_KEYS = {
    "videos": ("video_id",),
    "clips": ("clip_id",),
    "speech_segments": ("clip_id", "start_s", "segment_id"),
    "face_tracks": ("clip_id", "track_id"),
    "identities": ("clip_id", "identity_id"),
    "references": ("source_clip_id", "identity_id", "kind"),
    "samples": ("sample_id",),
    "errors": ("stage", "item", "reason"),
}
#: every stage and sub-stage in DAG order (the per-stage stats of the summary and report)
STAGES = ("prepare", "cut", "audio", "faces", "associate", "references", "caption")


def list_inputs(source: str | os.PathLike[str]) -> list[str]:
    """Every regular file under a folder or a URL prefix (``s3://bucket/videos``; sorted,
    hidden files skipped) or the one file given (:func:`omni_core.storage.list_files`).

    Nothing is filtered by extension: a file that is not media becomes an error row, so every
    input is accounted for.
    """
    return list_files(source)


@dataclass
class ClipWork:
    """One clip travelling through the stages (carried as JSON between them)."""

    clip_id: str
    video_id: str
    source: str
    clip: dict[str, Any]  # the ``clips`` row
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    failed: str | None = None  # the stage that failed; later stages skip the clip
    #: per subject (subject order): anchor, speaker, identity_id, reference ids, masks
    subjects: list[dict[str, Any]] = field(default_factory=list)
    #: "<stage> <video|audio>" -> times the clip's media was decoded there (the benchmark
    #: checks each clip is decoded once per stage group)
    decodes: dict[str, int] = field(default_factory=dict)

    def decoded(self, stage: str, kind: str) -> None:
        key = f"{stage} {kind}"
        self.decodes[key] = self.decodes.get(key, 0) + 1

    def to_row(self) -> dict[str, str]:
        return {"clip_id": self.clip_id, "work": json.dumps(self.__dict__, default=_default)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ClipWork:
        return cls(**json.loads(row["work"]))

    def fail(self, stage: str, exc: BaseException) -> None:
        self.failed = stage
        self.tables.setdefault("errors", []).append(error_row(self.clip_id, stage, exc))


def _default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _Stage:
    """Base of the per-clip stages: run :meth:`process`, time it, turn failures into rows.

    A stage that does several steps names each with :meth:`step`, so that its time and a
    failure are booked to the step (e.g. ``faces``, ``associate``, ``references``).
    """

    name = ""

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        work = ClipWork.from_row(row)
        if work.failed is None:
            self._step, self._t = self.name, time.perf_counter()
            try:
                self.process(work)
            except Exception as exc:  # one clip's failure is an error row, never a crash
                if not isinstance(exc, OmniError):
                    traceback.print_exc()
                work.fail(self._step, exc)
            self._book(work)
        return work.to_row()

    def step(self, work: ClipWork, name: str) -> None:
        """Close the running step's clock and start ``name``'s."""
        self._book(work)
        self._step, self._t = name, time.perf_counter()

    def _book(self, work: ClipWork) -> None:
        now = time.perf_counter()
        work.stats[self._step] = work.stats.get(self._step, 0.0) + now - self._t
        self._t = now

    def process(self, work: ClipWork) -> None:
        raise NotImplementedError


class PrepareStage:
    """Stage 1, one input file -> its clips: probe, shots, speech-aligned plan, cut."""

    name = "prepare"

    def __init__(self, config: dict[str, Any], out: RunFolder | str, parts_key: str) -> None:
        from omni_core.config import from_dict

        self.cfg = from_dict(InpairConfig, config)
        self.out = as_run_folder(out)
        self.store = PartStore(self.out, parts_key)

    def __call__(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        from omni_core.media import load_audio, probe

        from .clip import cut_clip, detect_shots, plan_clips, speech_spans

        source = row["source"]  # a path or a URL: what the manifests record
        t0 = time.perf_counter()
        tables: dict[str, list[dict[str, Any]]] = {"videos": [], "errors": []}
        works: list[ClipWork] = []
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
            shots = detect_shots(local, info, opts)
            speech = speech_spans(load_audio(local, opts.sample_rate), opts.sample_rate)
            spans = plan_clips(shots, speech, opts)
            if not spans:  # the input is accounted for: it gave no clip, and why
                longest = max((b - a for a, b in shots), default=0.0)
                raise OmniError(f"no clip: no shot holds a {opts.clip_s:.2f} s clip (video "
                                f"{info.duration_s or 0:.2f} s, {len(shots)} shot(s), longest "
                                f"{longest:.2f} s)")
            for span in spans:
                clip_id = stable_id(video_id, span.start_s, span.end_s)
                rel = Path("clips") / video_id / f"{clip_id}.mp4"
                clip_row = {"clip_id": clip_id, "video_id": video_id,
                            "shot_index": span.shot_index, "start_s": span.start_s,
                            "end_s": span.end_s, "path": rel.as_posix(), "fps": opts.fps,
                            "n_frames": opts.clip_frames, "width": info.width,
                            "height": info.height, "sample_rate": opts.sample_rate}
                work = ClipWork(clip_id, video_id, source, clip_row)
                works.append(work)
                if self.store.clip_done(clip_id):
                    continue  # finished by an earlier run: not cut again
                ts = time.perf_counter()
                try:
                    cut = cut_clip(local, span, self.out.local(rel.as_posix(), fetch=False),
                                   opts, info=info)
                    self.out.publish(rel.as_posix())
                    clip_row.update(width=cut.width, height=cut.height)
                except Exception as exc:
                    work.fail("cut", exc)
                work.stats["cut"] = time.perf_counter() - ts
        except Exception as exc:  # the whole input is unusable: one error row
            if not isinstance(exc, OmniError):
                traceback.print_exc()
            tables["errors"].append(error_row(source, self.name, exc))
            works = []
        elapsed = time.perf_counter() - t0
        self.store.put_input(source, [w.clip_id for w in works],
                             {**tables, "_stats": [{"stage": self.name, "seconds": elapsed}]})
        for w in works:
            if not self.store.clip_done(w.clip_id):
                yield w.to_row()


class AudioStage(_Stage):
    """Stage 2, per clip: enhancement (optional), diarization, transcription, attribution
    (:class:`pipelines.inpair.audio.AudioModels`, built once per actor)."""

    name = "audio"

    def __init__(self, config: dict[str, Any], out: RunFolder | str,
                 run: str | None = None) -> None:
        t0 = time.perf_counter()
        from omni_core.config import from_dict

        from .audio import AudioModels

        self.cfg = from_dict(InpairConfig, config)
        self.out = as_run_folder(out)
        if self.cfg.audio.source == "annotations":
            from .doubles import AnnotationSpeech

            self.double: Any = AnnotationSpeech()
        else:
            self.double = None
            self.models = AudioModels.load(self.cfg.audio, self.cfg.weights, self.cfg.device)
        record_setup(out, run, "audio", t0)

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


SETUP_DIR = "_setup"


def record_setup(out: RunFolder | str, run: str | None, group: str, t0: float) -> None:
    """Book an actor's construction time (model loading) to ``group`` for run ``run``: one
    small JSON file per actor under ``OUT/_setup/<run>/`` (works across nodes: a remote output
    gets an object per actor); :func:`setup_seconds` sums them when the run ends."""
    if run is None:
        return
    name = f"{group}-{os.getpid()}-{time.monotonic_ns()}-{uuid.uuid4().hex[:8]}.json"
    as_run_folder(out).write_text(f"{SETUP_DIR}/{run}/{name}", json.dumps(
        {"group": group, "seconds": time.perf_counter() - t0}))


def setup_seconds(out: RunFolder | str | os.PathLike[str], run: str) -> dict[str, float]:
    """Summed actor construction seconds per stage group of run ``run``; removes the files."""
    folder = as_run_folder(out)
    total: dict[str, float] = {}
    for rel in folder.list(f"{SETUP_DIR}/{run}"):
        if not rel.endswith(".json"):
            continue
        rec = json.loads(folder.read_text(rel))
        total[rec["group"]] = round(total.get(rec["group"], 0.0) + rec["seconds"], 2)
    folder.remove(SETUP_DIR)
    return dict(sorted(total.items()))


def _clip_audio(path: Path, opts: Any) -> Any:
    """The clip's mono waveform at the clip sample rate, exactly ``clip_frames / fps`` long
    (AAC decoders keep the encoder's end padding)."""
    from omni_core.media import load_audio

    audio = load_audio(path, opts.sample_rate)
    return audio[: round(opts.clip_s * opts.sample_rate)]


class VisualStage(_Stage):
    """Stages 3-5, per clip, on one decode of its frames: faces -> tracks -> identities,
    speaker <-> face association, references and masks (:mod:`.faces`, :mod:`.associate`,
    :mod:`.references`). Sets the clip's ``status``; only a clip that passes every filter gets
    subjects and references."""

    name = "faces"

    def __init__(self, config: dict[str, Any], out: RunFolder | str,
                 run: str | None = None) -> None:
        t0 = time.perf_counter()
        from omni_core.config import from_dict
        from omni_core.models.face import face_model_class

        self.cfg = from_dict(InpairConfig, config)
        self.out = as_run_folder(out)
        pack = face_model_class(self.cfg.faces.pack)
        self.face_model = pack.for_weights(self.cfg.weights, self.cfg.device)
        self.syncnet = None
        if self.cfg.associate.backend == "syncnet":
            from omni_core.models.syncnet import SyncNet

            self.syncnet = SyncNet.for_weights(self.cfg.weights, self.cfg.device)
        record_setup(out, run, "visual", t0)

    def process(self, work: ClipWork) -> None:
        import numpy as np

        from omni_core.media import read_frames

        from .associate import associate, dense_boxes, merge_dense
        from .faces import analyze_faces, identity_rows, track_rows

        clip, opts = work.clip, self.cfg.clip
        clip_file = self.out.local(clip["path"])  # fetched once when the output is remote
        frames = read_frames(clip_file)
        work.decoded("visual", "video")
        result = analyze_faces(frames, opts.fps, self.face_model, self.cfg.faces)
        tracks = track_rows(work.clip_id, result)
        idents = identity_rows(work.clip_id, result)
        work.tables["face_tracks"], work.tables["identities"] = tracks, idents
        segments = [(r["speaker"], r["start_s"], r["end_s"])
                    for r in work.tables.get("speech_segments", [])]
        speakers = sorted({s for s, _, _ in segments})
        clip.update(n_speakers=len(speakers), n_faces=sum(t["passed"] for t in tracks),
                    best_sync=None)
        if not speakers:
            return _status(clip, "no_speech", "no words attributed to any speaker")
        if not idents:
            return _status(clip, "no_faces", "no face track passed the quality filters"
                           + _rejects(tracks))

        self.step(work, "associate")

        n = len(frames)
        per_ident = [merge_dense([dense_boxes(result.tracks[k].frame_indices,
                                              result.tracks[k].boxes, n)
                                  for k in ident.tracks]) for ident in result.identities]
        audio = _clip_audio(clip_file, opts)
        work.decoded("visual", "audio")
        names, scores, assignment = associate(frames, opts.fps, per_ident, audio, segments,
                                              self.cfg.associate, self.syncnet)
        best = assignment.best
        clip["best_sync"] = float(best) if np.isfinite(best) else None
        for (s, t), score, margin in zip(assignment.pairs, assignment.scores,
                                         assignment.margins, strict=True):
            idents[t].update(speaker=names[s], sync_confidence=score, margin=margin)
        if assignment.filtered:
            return _status(clip, "filtered", assignment.filtered)
        if len(assignment.pairs) < len(names):
            lost = sorted(set(names) - {names[s] for s, _ in assignment.pairs})
            return _status(clip, "unmatched", f"no face for speaker(s) {', '.join(lost)} "
                           f"({len(names)} speakers, {len(idents)} identities)")
        if assignment.ambiguous:
            low = min(assignment.margins)
            return _status(clip, "ambiguous", f"assignment margin {low:.3g} below "
                           f"{self.cfg.associate.margin:g}")

        self.step(work, "references")
        self._references(work, frames, audio, result, assignment, names, segments)

    def _references(self, work: ClipWork, frames: Any, audio: Any, result: Any,
                    assignment: Any, names: list[str], segments: list[Any]) -> None:
        import numpy as np

        from omni_core.media import write_image, write_wav

        from .references import image_reference, pick_keyframe, subject_order, timbre_span

        clip, ropts = work.clip, self.cfg.references
        idents = work.tables["identities"]
        pairs = list(assignment.pairs)
        centres = []
        for _, t in pairs:
            boxes = np.concatenate([result.tracks[k].boxes for k in result.identities[t].tracks])
            centres.append(float(np.median((boxes[:, 0] + boxes[:, 2]) / 2)))
        subjects, media = [], []
        for k, i in enumerate(subject_order(centres), start=1):
            s, t = pairs[i]
            ident = result.identities[t]
            tr = [result.tracks[j] for j in ident.tracks]
            key = pick_keyframe(np.concatenate([x.frame_indices for x in tr]),
                                np.concatenate([x.boxes for x in tr]),
                                np.concatenate([x.kps for x in tr]),
                                np.concatenate([x.det_scores for x in tr]),
                                np.concatenate([x.sharpness for x in tr]))
            span = timbre_span(audio, segments, names[s], ropts, self.cfg.clip.sample_rate)
            if span is None:
                return _status(clip, "no_reference", f"speaker {names[s]} has no clean "
                               f"stretch of {ropts.audio_min_s:g} s away from other speakers")
            identity_id = idents[t]["identity_id"]
            image_id = stable_id(identity_id, "image", key.frame_index)
            crop, box, applied = image_reference(frames[key.frame_index], key, ropts,
                                                 seed=int(image_id[:8], 16))
            audio_id = stable_id(identity_id, "audio", *span)
            folder = Path("references") / work.video_id / work.clip_id
            sr = self.cfg.clip.sample_rate
            wav = audio[round(span[0] * sr):round(span[1] * sr)]
            media.append((folder / f"{image_id}.png", crop, folder / f"{audio_id}.wav", wav))
            subjects.append({
                "anchor": f"<sub{k}>", "speaker": names[s], "identity_id": identity_id,
                "image_reference_id": image_id, "audio_reference_id": audio_id,
                "image_path": (folder / f"{image_id}.png").as_posix(),
                "frame_index": key.frame_index, "box": [float(v) for v in box],
                "span": [float(span[0]), float(span[1])],
                "augment": None if applied is None else json.dumps(applied, sort_keys=True)})
        refs = []
        for (png, crop, wav_path, wav), sub in zip(media, subjects, strict=True):
            write_image(self.out.local(png.as_posix(), fetch=False), crop)
            self.out.publish(png.as_posix())
            write_wav(self.out.local(wav_path.as_posix(), fetch=False), wav,
                      self.cfg.clip.sample_rate)
            self.out.publish(wav_path.as_posix())
            refs.append({"reference_id": sub["image_reference_id"],
                         "identity_id": sub["identity_id"], "kind": "image",
                         "path": png.as_posix(), "source_clip_id": work.clip_id,
                         "frame_index": sub["frame_index"], "box": sub["box"],
                         "start_s": None, "end_s": None, "augment": sub["augment"]})
            refs.append({"reference_id": sub["audio_reference_id"],
                         "identity_id": sub["identity_id"], "kind": "audio",
                         "path": wav_path.as_posix(), "source_clip_id": work.clip_id,
                         "frame_index": None, "box": None, "start_s": sub["span"][0],
                         "end_s": sub["span"][1], "augment": None})
        work.tables["references"] = refs
        work.subjects = subjects
        _status(clip, "sample", None)


class CaptionStage(_Stage):
    """Stage 6, per clip that passed every filter: the structured caption (speech spans and
    timestamps from the segments; descriptive fields from the caption VLM when one is
    configured, else empty and flagged) written as JSON, and the ``samples`` row."""

    name = "caption"
    #: frames of the clip sent to the VLM, spread evenly
    vlm_frames = 4

    def __init__(self, config: dict[str, Any], out: RunFolder | str,
                 run: str | None = None) -> None:
        t0 = time.perf_counter()
        from omni_core.config import from_dict

        from .caption import CaptionVLM

        self.cfg = from_dict(InpairConfig, config)
        self.out = as_run_folder(out)
        self.vlm = CaptionVLM.from_env(self.cfg.caption)
        record_setup(out, run, "caption", t0)

    def process(self, work: ClipWork) -> None:
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
            frames = read_frames(self.out.local(work.clip["path"]), idx)
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


def _status(clip: dict[str, Any], status: str, reason: str | None) -> None:
    clip.update(status=status, status_reason=reason)


def _rejects(tracks: list[dict[str, Any]]) -> str:
    from .faces import reject_kinds

    kinds = sorted({k for t in tracks for k in reject_kinds(t["reject_reason"])})
    return f" (rejected: {', '.join(kinds)})" if kinds else ""


class FinishStage(_Stage):
    """Last stage, per clip: the clip's rows of every table become its part."""

    name = "finish"

    def __init__(self, out: RunFolder | str, parts_key: str) -> None:
        self.store = PartStore(out, parts_key)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        work = ClipWork.from_row(row)
        tables = dict(work.tables)
        if work.failed is None:
            tables["clips"] = [work.clip]
        self.store.put_clip(work.clip_id, tables,
                            {"failed": work.failed, "decodes": work.decodes, **work.stats})
        return {"clip_id": work.clip_id, "failed": work.failed or ""}


@dataclass
class RunSummary:
    out: Path | str  # the output folder, or its URL when remote
    inputs: int
    skipped_inputs: int
    counts: dict[str, int]
    errors_by_stage: dict[str, int]
    stage_seconds: dict[str, float]
    wall_s: float
    manifests: dict[str, Path]
    filters: dict[str, int] = field(default_factory=dict)  # clips per status
    stages: list[dict[str, Any]] = field(default_factory=list)  # see stage_table
    #: actor construction (model loading) seconds per stage group, summed over actors
    setup_seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"in-pair curation: {self.inputs} inputs ({self.skipped_inputs} finished by an "
               f"earlier run), wall {self.wall_s:.1f} s"]
        out += [f"  {t}: {n} rows" for t, n in self.counts.items()]
        if self.filters:
            out.append("  clips by status: " + ", ".join(
                f"{s} {n}" for s, n in sorted(self.filters.items())))
        if self.errors_by_stage:
            out.append("  errors by stage: " + ", ".join(
                f"{s} {n}" for s, n in sorted(self.errors_by_stage.items())))
        busy = sum(self.stage_seconds.values())
        out += [f"  {r['stage']:<10} in {r['in']:>5}  out {r['out']:>5}  failed {r['failed']:>4}"
                f"  {r['seconds']:>8.1f} s" for r in self.stages]
        out.append("  stage seconds: " + ", ".join(
            f"{s} {v:.1f}" for s, v in self.stage_seconds.items())
            + (f" (wall / summed compute = {self.wall_s / busy:.2f})"
               if busy and self.skipped_inputs < self.inputs else ""))
        if self.setup_seconds:
            setup = sum(self.setup_seconds.values())
            out.append("  actor setup (model loading) seconds: " + ", ".join(
                f"{s} {v:.1f}" for s, v in self.setup_seconds.items())
                + (f" (wall / (compute + setup) = {self.wall_s / (busy + setup):.2f})"
                   if busy + setup else ""))
        out.append(f"  manifests in {self.out}, report {join(self.out, 'report.html')}")
        return out


def run_inpair(source: str | os.PathLike[str], out: RunFolder | str | os.PathLike[str],
               config: InpairConfig | None = None, *, progress: bool = True) -> RunSummary:
    """Run (or resume) the DAG over every file of ``source``; write the manifests to ``out``.

    Both may be local paths or fsspec URLs (``s3://bucket/videos``, ``s3://bucket/run``):
    remote inputs are downloaded to each node's cache to be decoded, and every file of a
    remote output is written to the node's staging folder and uploaded
    (:mod:`omni_core.storage`), so actors on any node need no shared filesystem.
    """
    import ray

    cfg = _resolve_endpoints(config or InpairConfig())
    t0 = time.perf_counter()
    folder = as_run_folder(out)
    folder.root.mkdir(parents=True, exist_ok=True)
    cfg_dict = to_dict(cfg)
    key = config_hash({k: v for k, v in cfg_dict.items() if k not in ("ray", "resources")})
    store = PartStore(folder, key)
    inputs = list_inputs(source)
    todo = [s for s in inputs if not store.input_complete(s)]
    run = uuid.uuid4().hex  # this invocation: its actors book their setup time under it
    if todo:
        init_ray(cfg.ray)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.execution_options.verbose_progress = False
        ds = ray.data.from_items([{"source": s} for s in todo],
                                 override_num_blocks=max(1, len(todo)))
        prep = cfg.resources.prepare
        ds = ds.flat_map(PrepareStage, fn_constructor_kwargs={
            "config": cfg_dict, "out": folder, "parts_key": key},
            **_actor_args(prep))
        ds = ds.map(AudioStage, fn_constructor_kwargs={"config": cfg_dict, "out": folder,
                                                "run": run},
                    **_actor_args(cfg.resources.audio))
        ds = ds.map(VisualStage, fn_constructor_kwargs={"config": cfg_dict, "out": folder,
                                                "run": run},
                    **_actor_args(cfg.resources.visual))
        ds = ds.map(CaptionStage, fn_constructor_kwargs={"config": cfg_dict, "out": folder,
                                                "run": run},
                    **_actor_args(cfg.resources.caption))
        ds = ds.map(FinishStage, fn_constructor_kwargs={"out": folder, "parts_key": key},
                    **_actor_args(cfg.resources.finish))
        for _ in ds.iter_rows():
            pass
    frames = store.merge(inputs, TABLES, SORT_KEYS)
    manifests = store.write(frames)
    stage_seconds: dict[str, float] = {}
    for source_ in inputs:
        part = store.input_part(source_) or {"tables": {}}
        for st in part["tables"].get("_stats", []):
            stage_seconds[st["stage"]] = stage_seconds.get(st["stage"], 0.0) + st["seconds"]
    decodes: dict[str, int] = {}  # most decodes of one clip, per stage and media kind
    for st in store.clip_stats:
        for k, n in st.get("decodes", {}).items():
            decodes[k] = max(decodes.get(k, 0), int(n))
        for k, v in st.items():
            if k not in ("failed", "decodes"):
                stage_seconds[k] = stage_seconds.get(k, 0.0) + float(v)
    setup = setup_seconds(folder, run)
    errors = frames["errors"]
    stages = stage_table(len(inputs), errors, store.clip_stats, stage_seconds)
    summary = RunSummary(
        out=folder.out if folder.remote else Path(folder.out), inputs=len(inputs),
        skipped_inputs=len(inputs) - len(todo),
        counts={t: len(df) for t, df in frames.items()},
        errors_by_stage=errors.groupby("stage").size().to_dict() if len(errors) else {},
        stage_seconds={k: round(v, 2) for k, v in sorted(stage_seconds.items())},
        wall_s=time.perf_counter() - t0, manifests=manifests,
        filters={str(k): int(v) for k, v in frames["clips"]["status"].value_counts().items()}
        if len(frames["clips"]) else {}, stages=stages, setup_seconds=setup)
    folder.local("summary.json", fetch=False).write_text(json.dumps({
        "inputs": summary.inputs, "skipped_inputs": summary.skipped_inputs,
        "counts": summary.counts, "errors_by_stage": summary.errors_by_stage,
        "stage_seconds": summary.stage_seconds, "setup_seconds": setup, "stages": stages,
        "max_decodes_per_clip": dict(sorted(decodes.items())),
        "filters": dict(sorted(summary.filters.items())),
        "wall_s": round(summary.wall_s, 2), "config": cfg_dict, "parts": key},
        indent=2, default=str))
    folder.publish("summary.json")
    from .report import write_report

    write_report(folder)
    return summary


def stage_table(n_inputs: int, errors: Any, clip_stats: list[dict[str, Any]],
                seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Items in, out and failed, and seconds, of every stage in DAG order.

    ``prepare`` counts inputs in and clips planned out; every later stage counts the clips that
    reached it. ``visual`` sub-steps a clip left early (a filter before association) are not
    counted as reached. A clip's failure is booked to the step it failed in.
    """
    failed_at = [st.get("failed") for st in clip_stats]
    rows = []
    prep_failed = int((errors["stage"] == "prepare").sum()) if len(errors) else 0
    rows.append({"stage": "prepare", "in": n_inputs, "out": len(clip_stats),
                 "failed": prep_failed, "seconds": round(seconds.get("prepare", 0.0), 2)})
    for name in STAGES[1:]:
        reached = sum(1 for st in clip_stats if name in st)
        failed = sum(1 for f in failed_at if f == name)
        rows.append({"stage": name, "in": reached, "out": reached - failed, "failed": failed,
                     "seconds": round(seconds.get(name, 0.0), 2)})
    return rows


def _resolve_endpoints(cfg: InpairConfig) -> InpairConfig:
    """The caption VLM endpoint read from the driver's environment into the config, so that
    every actor (on any node) uses the same one and the parts key records it."""
    from dataclasses import replace

    base, model = cfg.caption.resolved()
    return replace(cfg, caption=replace(cfg.caption, base_url=base, model=model))


def _actor_args(res: Any) -> dict[str, Any]:
    plan = plan_actor_pool(res.num_cpus, res.num_gpus, max_size=res.max_actors)
    args = {"compute": plan.strategy(), **plan.ray_remote_args()}
    if res.custom:
        args["resources"] = dict(res.custom)
    return args


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
