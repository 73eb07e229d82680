"""The in-pair curation DAG on Ray Data: raw talking videos -> clips with who-speaks-when.

Stages (each a Ray Data callable class that loads its models once per actor and declares its
CPU/GPU needs from the config):

1. :class:`PrepareStage` (one input -> its clips): probe (unusable -> error row), shot
   boundaries, speech-aligned clip plan, cut to the target fps and 16 kHz mono;
2. :class:`AudioStage` (per clip): optional enhancement, diarization, transcription, words
   attributed to speakers -> ``speech_segments``;
3. :class:`FinishStage` (per clip): writes the clip's part (see :mod:`pipelines.parts`).

Faces, speaker<->face association, references and captions follow as further stages.
Every input ends up processed or as an error row (stage, reason); a failing item never stops
the run. Ids are deterministic; a rerun skips finished parts; the final manifests are the
sorted merge of the parts, so a killed run resumed gives the same manifests as one that was
never interrupted.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_core.config import to_dict
from omni_core.errors import OmniError
from omni_core.manifests import stable_id
from omni_core.ray_helpers import init_ray, plan_actor_pool

from ..parts import PartStore, config_hash
from .config import InpairConfig

TABLES = ("videos", "clips", "speech_segments", "errors")
SORT_KEYS = {
    "videos": ("video_id",),
    "clips": ("clip_id",),
    "speech_segments": ("clip_id", "start_s", "segment_id"),
    "errors": ("stage", "item", "reason"),
}


def list_inputs(source: str | os.PathLike[str]) -> list[str]:
    """Every regular file under a folder (sorted, hidden files skipped) or the one file given.

    Nothing is filtered by extension: a file that is not media becomes an error row, so every
    input is accounted for.
    """
    root = Path(source)
    if root.is_file():
        return [str(root)]
    if not root.is_dir():
        raise OmniError(f"input not found: {source}")
    return sorted(str(p) for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in
                                             p.relative_to(root).parts))


def error_row(item: str, stage: str, exc: BaseException) -> dict[str, Any]:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return {"item": item, "stage": stage, "error_type": type(exc).__name__, "reason": reason,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


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
    """Base of the per-clip stages: run :meth:`process`, time it, turn failures into rows."""

    name = ""

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        work = ClipWork.from_row(row)
        if work.failed is None:
            t0 = time.perf_counter()
            try:
                self.process(work)
            except Exception as exc:  # one clip's failure is an error row, never a crash
                if not isinstance(exc, OmniError):
                    traceback.print_exc()
                work.fail(self.name, exc)
            work.stats[self.name] = work.stats.get(self.name, 0.0) + time.perf_counter() - t0
        return work.to_row()

    def process(self, work: ClipWork) -> None:
        raise NotImplementedError


class PrepareStage:
    """Stage 1, one input file -> its clips: probe, shots, speech-aligned plan, cut."""

    name = "prepare"

    def __init__(self, config: dict[str, Any], out: str, parts_key: str) -> None:
        from omni_core.config import from_dict

        self.cfg = from_dict(InpairConfig, config)
        self.out = Path(out)
        self.store = PartStore(out, parts_key)

    def __call__(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        from omni_core.media import load_audio, probe

        from .clip import cut_clip, detect_shots, plan_clips, speech_spans

        source = row["source"]
        t0 = time.perf_counter()
        tables: dict[str, list[dict[str, Any]]] = {"videos": [], "errors": []}
        works: list[ClipWork] = []
        try:
            info = probe(source)
            if not info.has_video or not info.has_audio:
                missing = "video" if not info.has_video else "audio"
                raise OmniError(f"no {missing} stream: a talking clip needs both")
            content = _sha256(source)
            video_id = stable_id(source, content)
            tables["videos"].append({
                "video_id": video_id, "path": source, "content_hash": content,
                "duration_s": info.duration_s, "fps": info.fps, "n_frames": info.n_frames,
                "width": info.width, "height": info.height, "video_codec": info.video_codec,
                "has_audio": info.has_audio, "audio_codec": info.audio_codec,
                "sample_rate": info.sample_rate, "vfr": info.vfr})
            opts = self.cfg.clip
            shots = detect_shots(source, info, opts)
            speech = speech_spans(load_audio(source, opts.sample_rate), opts.sample_rate)
            for span in plan_clips(shots, speech, opts):
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
                    cut = cut_clip(source, span, self.out / rel, opts, info=info)
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

    def __init__(self, config: dict[str, Any], out: str) -> None:
        from omni_core.config import from_dict

        from .audio import AudioModels

        self.cfg = from_dict(InpairConfig, config)
        self.out = Path(out)
        self.models = AudioModels.load(self.cfg.audio, self.cfg.weights, self.cfg.device)

    def process(self, work: ClipWork) -> None:
        from omni_core.media import load_audio

        opts = self.cfg.clip
        audio = load_audio(self.out / work.clip["path"], opts.sample_rate)
        # AAC decoders keep the encoder's end padding: the clip is clip_frames / fps long
        audio = audio[: round(opts.clip_s * opts.sample_rate)]
        segments = self.models.segments(audio, opts.sample_rate)
        work.tables["speech_segments"] = [
            {"segment_id": stable_id(work.clip_id, s.speaker, s.start_s, s.end_s),
             "clip_id": work.clip_id, "speaker": s.speaker, "start_s": s.start_s,
             "end_s": s.end_s, "text": s.text, "confidence": s.confidence}
            for s in segments]


class FinishStage(_Stage):
    """Last stage, per clip: the clip's rows of every table become its part."""

    name = "finish"

    def __init__(self, out: str, parts_key: str) -> None:
        self.store = PartStore(out, parts_key)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        work = ClipWork.from_row(row)
        tables = dict(work.tables)
        if work.failed is None:
            tables["clips"] = [work.clip]
        self.store.put_clip(work.clip_id, tables, {"failed": work.failed, **work.stats})
        return {"clip_id": work.clip_id, "failed": work.failed or ""}


@dataclass
class RunSummary:
    out: Path
    inputs: int
    skipped_inputs: int
    counts: dict[str, int]
    errors_by_stage: dict[str, int]
    stage_seconds: dict[str, float]
    wall_s: float
    manifests: dict[str, Path]

    def lines(self) -> list[str]:
        out = [f"in-pair curation: {self.inputs} inputs ({self.skipped_inputs} finished by an "
               f"earlier run), wall {self.wall_s:.1f} s"]
        out += [f"  {t}: {n} rows" for t, n in self.counts.items()]
        if self.errors_by_stage:
            out.append("  errors by stage: " + ", ".join(
                f"{s} {n}" for s, n in sorted(self.errors_by_stage.items())))
        busy = sum(self.stage_seconds.values())
        out.append("  stage seconds: " + ", ".join(
            f"{s} {v:.1f}" for s, v in self.stage_seconds.items())
            + (f" (wall / summed compute = {self.wall_s / busy:.2f})"
               if busy and self.skipped_inputs < self.inputs else ""))
        out.append(f"  manifests in {self.out}")
        return out


def run_inpair(source: str | os.PathLike[str], out: str | os.PathLike[str],
               config: InpairConfig | None = None, *, progress: bool = True) -> RunSummary:
    """Run (or resume) the DAG over every file of ``source``; write the manifests to ``out``."""
    import ray

    cfg = config or InpairConfig()
    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg_dict = to_dict(cfg)
    key = config_hash({k: v for k, v in cfg_dict.items() if k not in ("ray", "resources")})
    store = PartStore(out, key)
    inputs = list_inputs(source)
    todo = [s for s in inputs if not store.input_complete(s)]
    if todo:
        init_ray(cfg.ray)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.execution_options.verbose_progress = False
        ds = ray.data.from_items([{"source": s} for s in todo],
                                 override_num_blocks=max(1, len(todo)))
        prep = cfg.resources.prepare
        ds = ds.flat_map(PrepareStage, fn_constructor_kwargs={
            "config": cfg_dict, "out": str(out), "parts_key": key},
            **_actor_args(prep))
        ds = ds.map(AudioStage, fn_constructor_kwargs={"config": cfg_dict, "out": str(out)},
                    **_actor_args(cfg.resources.audio))
        ds = ds.map(FinishStage, fn_constructor_kwargs={"out": str(out), "parts_key": key},
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
    for st in store.clip_stats:
        for k, v in st.items():
            if k != "failed":
                stage_seconds[k] = stage_seconds.get(k, 0.0) + float(v)
    errors = frames["errors"]
    summary = RunSummary(
        out=out, inputs=len(inputs), skipped_inputs=len(inputs) - len(todo),
        counts={t: len(df) for t, df in frames.items()},
        errors_by_stage=errors.groupby("stage").size().to_dict() if len(errors) else {},
        stage_seconds={k: round(v, 2) for k, v in sorted(stage_seconds.items())},
        wall_s=time.perf_counter() - t0, manifests=manifests)
    (out / "summary.json").write_text(json.dumps({
        "inputs": summary.inputs, "skipped_inputs": summary.skipped_inputs,
        "counts": summary.counts, "errors_by_stage": summary.errors_by_stage,
        "stage_seconds": summary.stage_seconds, "config": cfg_dict, "parts": key},
        indent=2, default=str))
    return summary


def _actor_args(res: Any) -> dict[str, Any]:
    plan = plan_actor_pool(res.num_cpus, res.num_gpus, max_size=res.max_actors)
    return {"compute": plan.strategy(), **plan.ray_remote_args()}


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
