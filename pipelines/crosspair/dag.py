"""The cross-pair DAG: in-pair runs -> stage-2 (cross-pair) and stage-3 (omni-task) samples.

``omni curate crosspair --inpair RUN [--inpair RUN ...] --out OUT``:

1. ``retrieval`` (driver): every identity of the runs into one ArcFace database; for each
   subject, verified matches of the same person in another clip (``identity_matches``);
   an in-pair sample with a subject matched nowhere is ``no_match`` (``crosspair_sources``);
2. ``voices`` (Ray Data actor pool, one work item per speaker to clone; the actor holds the
   TTS, ClearerVoice, the speaker verifier and Whisper): ``labels`` (optional, multi-speaker
   clips: a multimodal LLM re-reads who says each segment, ``speaker_labels``; a prompt it
   gives to someone else is not cloned), ``prompt`` and ``clone`` (the speaker's in-pair
   timbre reference as the prompt, Whisper's transcript as its text, a sentence sharing the
   fewest words with the target as the text), ``enhance``, ``check`` (same speaker, right
   words); every item ends as a ``voices`` row, a failure also as an ``errors`` row (stage and
   reason);
3. ``samples`` (driver): cross-pair samples of the candidates whose every voice passed (the
   others ``no_voice``), written as a curation folder (OUT itself) ``omni latents`` reads;
   and the stage-3 table (``OUT/stage3``): the pool's samples with R2AV : RV2AV : RA2V
   assigned in the configured ratio.

Each voice is one part (:mod:`pipelines.parts`): a rerun skips the finished ones, and the
manifests are the sorted merge of the parts, so a killed run resumed gives the same
manifests as one never interrupted. OUT/summary.json and OUT/report.html describe the run.
The in-pair runs and OUT may be folders or URLs (``s3://...``, :mod:`omni_core.storage`):
actors read media through local copies and publish what they write.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from omni_core.config import to_dict
from omni_core.errors import OmniError
from omni_core.manifests import error_row, errors_frame, read_manifest, stable_id, write_manifest
from omni_core.ray_helpers import init_ray
from omni_core.storage import RunFolder, as_run_folder, exists, join, local_input

from ..inpair.dag import _actor_args, record_setup, setup_seconds
from ..parts import PartStore, config_hash
from .config import CrosspairConfig

#: tables of OUT (the stage-3 folder has its own samples/references/clips/...)
TABLES = ("identity_matches", "speaker_labels", "voices", "crosspair_sources", "samples",
          "references", "errors")
#: steps of the voices stage, in order (per-step seconds and failures)
VOICE_STEPS = ("labels", "prompt", "clone", "enhance", "check")


@dataclass
class CrosspairSummary:
    out: str  # the output folder or URL
    runs: list[str]
    inpair_samples: int
    counts: dict[str, int]
    sources: dict[str, int]  # crosspair_sources status -> in-pair samples
    stage3_tasks: dict[str, int]
    voices: dict[str, Any]
    retrieval: dict[str, Any]
    errors_by_stage: dict[str, int]
    stage_seconds: dict[str, float]
    setup_seconds: dict[str, float]
    skipped_voices: int
    wall_s: float
    stages: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        v = self.voices
        out = [f"cross-pair curation: {len(self.runs)} in-pair run(s), {self.inpair_samples} "
               f"in-pair samples, wall {self.wall_s:.1f} s",
               "  in-pair samples: " + ", ".join(f"{k} {n}" for k, n in
                                                 sorted(self.sources.items())),
               f"  retrieval: {self.retrieval['verified']} verified matches of "
               f"{self.retrieval['queries']} subjects ({self.retrieval['refused']} refused)",
               f"  voices: {v['cloned']} cloned ({self.skipped_voices} by an earlier run), "
               f"{v['passed']} passed; similarity pass {_pct(v['similarity_pass_rate'])}, "
               f"WER pass {_pct(v['wer_pass_rate'])}"]
        out += [f"  {t}: {n} rows" for t, n in self.counts.items()]
        out.append("  stage 3: " + ", ".join(f"{t} {n}" for t, n in self.stage3_tasks.items()))
        if self.errors_by_stage:
            out.append("  errors by stage: " + ", ".join(
                f"{s} {n}" for s, n in sorted(self.errors_by_stage.items())))
        out += [f"  {r['stage']:<10} in {r['in']:>5}  out {r['out']:>5}  failed {r['failed']:>4}"
                f"  {r['seconds']:>8.1f} s" for r in self.stages]
        out.append(f"  manifests in {self.out}, stage-3 table in {join(self.out, 'stage3')}, "
                   f"report {join(self.out, 'report.html')}")
        return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


class VoiceStage:
    """Per speaker: prompt transcript, clone, enhancement, check; one part per voice."""

    name = "voices"

    def __init__(self, config: dict[str, Any], out: RunFolder | str, parts_key: str,
                 run: str | None = None) -> None:
        t0 = time.perf_counter()
        from omni_core.config import from_dict
        from omni_core.models.enhancer import Enhancer
        from omni_core.models.speaker import SpeakerVerifier
        from omni_core.models.whisper import WhisperASR

        from .voices import make_cloner

        self.cfg = from_dict(CrosspairConfig, config)
        self.folder = as_run_folder(out)
        self.store = PartStore(out, parts_key)
        c = self.cfg.clone
        kw: dict[str, Any] = {}
        if c.backend == "cosyvoice":
            kw = {"model_dir": c.model_dir}
        elif c.backend == "f5-tts":
            kw = {"weights": self.cfg.weights, "device": self.cfg.device}
        self.cloner = make_cloner(c.backend, **kw)
        self.enhancer = Enhancer(c.enhance, c.enhance_model, self.cfg.weights)
        self.verifier = SpeakerVerifier.for_weights(self.cfg.weights, self.cfg.device)
        self.asr = WhisperASR.for_weights(self.cfg.weights, self.cfg.device)
        self._refined: dict[str, Any] = {}  # clip id -> the MLLM's relabelling
        record_setup(out, run, "voices", t0)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        unit = json.loads(row["unit"])
        voice_id = unit["voice_id"]
        tables: dict[str, list[dict[str, Any]]] = {"voices": [], "errors": [],
                                                   "speaker_labels": []}
        stats: dict[str, Any] = {}
        step, t = "labels", time.perf_counter()

        def book(next_step: str | None) -> None:
            nonlocal step, t
            now = time.perf_counter()
            stats[step] = stats.get(step, 0.0) + now - t
            step, t = next_step or step, now

        voice = {k: unit[k] for k in ("voice_id", "identity_id", "prompt_reference_id",
                                      "prompt_clip_id", "text")}
        voice.update(backend=self.cloner.name, prompt_text=None, path=None, duration_s=None,
                     similarity=None, wer=None, transcript=None, passed=False, reason=None)
        try:
            self._labels(unit, tables)
            book("prompt")
            self._voice(unit, voice, book)
        except Exception as exc:  # one voice's failure is an error row, never a crash
            if not isinstance(exc, OmniError):
                traceback.print_exc()
            stats["failed"] = step
            tables["errors"].append(error_row(voice_id, step, exc))
            voice["reason"] = voice["reason"] or f"{step}: {tables['errors'][-1]['reason']}"
        book(None)
        tables["voices"].append(voice)
        self.store.put_clip(voice_id, tables, stats)
        return {"voice_id": voice_id}

    def _labels(self, unit: dict[str, Any], tables: dict[str, list[dict[str, Any]]]) -> None:
        """The MLLM's reading of the clip's speakers (once per clip and actor); raises when
        it gives the prompt's speech to someone else."""
        from omni_core.media import read_frames, read_image

        from .labels import needs_refinement, refine_speakers, verdict

        if not self.cfg.labels.enabled or not needs_refinement(unit["segments"]):
            return
        clip = unit["clip_id"]
        if clip not in self._refined:
            n = max(1, self.cfg.labels.frames)
            total = int(unit["n_frames"])
            idx = sorted({round(i * (total - 1) / max(1, n - 1)) for i in range(n)})
            frames = list(read_frames(local_input(unit["clip_path"]), idx))
            faces = {sp: read_image(local_input(path)) for sp, path in unit["faces"].items()}
            self._refined[clip] = refine_speakers(self.cfg.labels, frames, faces,
                                                  unit["segments"], clip_id=clip)
        ref = self._refined[clip]
        tables["speaker_labels"] += ref.to_rows()
        reason = verdict(ref, unit["speaker"], tuple(unit["span"]))
        if reason is not None:
            raise OmniError(reason)

    def _voice(self, unit: dict[str, Any], voice: dict[str, Any], book: Any) -> None:
        from omni_core.media import load_audio, write_wav
        from omni_core.media.audio import resample
        from omni_core.models.whisper import transcribe

        from .voices import SAMPLE_RATE, check_clone

        c = self.cfg.clone
        prompt = load_audio(local_input(unit["prompt_path"]), SAMPLE_RATE)
        if self.cloner.needs_prompt_text:
            words = transcribe(self.asr, prompt, SAMPLE_RATE, language=c.language)
            voice["prompt_text"] = " ".join(w.text for w in words).strip()
        book("clone")
        wav = self.cloner.clone(unit["text"], prompt, SAMPLE_RATE, voice["prompt_text"] or "")
        wav = resample(wav, self.cloner.sample_rate, SAMPLE_RATE)
        if wav.size < SAMPLE_RATE // 4:
            raise OmniError(f"the clone is {wav.size / SAMPLE_RATE:.2f} s long")
        book("enhance")
        wav = self.enhancer(wav, SAMPLE_RATE)
        book("check")
        check = check_clone(wav, SAMPLE_RATE, prompt, SAMPLE_RATE, unit["text"], self.verifier,
                            self.asr, self.cfg.check, language=c.language)
        voice.update(similarity=check.similarity, wer=check.wer, transcript=check.transcript,
                     duration_s=round(wav.size / SAMPLE_RATE, 3), passed=check.passed,
                     reason=check.reason or None)
        if not check.passed:
            raise OmniError(f"clone check failed: {check.reason}")
        rel = f"voices/{unit['voice_id']}.wav"
        write_wav(self.folder.local(rel, fetch=False), wav, SAMPLE_RATE)
        self.folder.publish(rel)
        voice["path"] = rel


def voice_units(plan: Any, runs: list[str], cfg: CrosspairConfig) -> list[dict[str, Any]]:
    """What each voice item needs: the prompt, what the speaker says in the target clip (the
    clone says something else), and the id (which depends on the text and the backend)."""
    from .voices import load_texts, pick_text

    texts = load_texts(cfg.clone.texts)
    segments: dict[str, list[dict[str, Any]]] = {}  # clip -> its speech segments
    speaker_of: dict[str, str] = {}
    clips: dict[str, tuple[str, int]] = {}  # clip -> (absolute path, frames)
    faces: dict[str, dict[str, str]] = {}  # clip -> speaker -> its image reference
    for root in runs:
        segs = read_manifest(join(root, "speech_segments.parquet"), "speech_segments")
        for s in segs.itertuples():
            segments.setdefault(s.clip_id, []).append({
                "segment_id": s.segment_id, "clip_id": s.clip_id, "speaker": s.speaker,
                "start_s": float(s.start_s), "end_s": float(s.end_s), "text": s.text})
        ids = read_manifest(join(root, "identities.parquet"), "identities")
        speaker_of.update({i.identity_id: i.speaker for i in ids.itertuples()
                           if isinstance(i.speaker, str)})
        for c in read_manifest(join(root, "clips.parquet"), "clips").itertuples():
            if isinstance(c.path, str):
                clips[c.clip_id] = (join(root, c.path), int(c.n_frames))
    refs = plan.references
    for r in refs[refs.kind == "image"].itertuples():
        if r.identity_id in speaker_of:
            faces.setdefault(r.source_clip_id, {})[speaker_of[r.identity_id]] = str(r.path)
    units = []
    for v in plan.voices:
        speaker = speaker_of.get(v["identity_id"], "")
        clip = v["clip_id"]
        avoid = " ".join(s["text"] or "" for s in segments.get(clip, [])
                         if s["speaker"] == speaker)
        text = pick_text(texts, avoid, v["prompt_reference_id"])
        path, n_frames = clips[clip]
        units.append({**v, "text": text, "speaker": speaker, "clip_path": path,
                      "n_frames": n_frames, "segments": segments.get(clip, []),
                      "faces": faces.get(clip, {}),
                      "voice_id": stable_id("voice", v["prompt_reference_id"], text,
                                            cfg.clone.backend)})
    return units


def run_crosspair(runs: list[str], out: str, cfg: CrosspairConfig | None = None, *,
                  progress: bool = True) -> CrosspairSummary:
    """Run the cross-pair DAG over the in-pair outputs ``runs`` into ``out`` (folders or
    URLs)."""
    import ray

    from .identity import find_matches, load_database
    from .samples import (
        absolute,
        build_crosspair,
        plan_crosspair,
        stage3_samples,
        write_sample_folder,
    )

    cfg = _resolve_endpoints(cfg or CrosspairConfig())
    t0 = time.perf_counter()
    runs = sorted(RunFolder(r).out for r in runs)
    for r in runs:
        if not exists(join(r, "samples.parquet")):
            raise OmniError(f"{r} is not an in-pair run (no samples.parquet): run "
                            f"`omni curate inpair` first")
    folder = RunFolder(out)
    outp = folder.root  # this node's folder of the output (its staging folder when remote)
    outp.mkdir(parents=True, exist_ok=True)
    cfg_dict = to_dict(cfg)
    key = config_hash({"config": {k: v for k, v in cfg_dict.items()
                                  if k not in ("ray", "resources")}, "runs": runs})
    store = PartStore(folder, key)
    seconds: dict[str, float] = {}

    ts = time.perf_counter()
    db = load_database(runs)
    matches = find_matches(db, cfg.retrieval)
    plan = plan_crosspair(runs, db, matches)
    units = voice_units(plan, runs, cfg)
    seconds["retrieval"] = time.perf_counter() - ts

    todo = [u for u in units if not store.clip_done(u["voice_id"])]
    run = uuid.uuid4().hex
    if todo:
        init_ray(cfg.ray)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.execution_options.verbose_progress = False
        ds = ray.data.from_items([{"voice_id": u["voice_id"], "unit": json.dumps(u)}
                                  for u in todo], override_num_blocks=max(1, len(todo)))
        ds = ds.map(VoiceStage, fn_constructor_kwargs={
            "config": cfg_dict, "out": folder, "parts_key": key, "run": run},
            **_actor_args(cfg.resources.voices))
        for _ in ds.iter_rows():
            pass

    voices_rows, errors_rows, labels_rows, stats = [], [], [], []
    for u in units:
        if store.clip_done(u["voice_id"]):
            part = store.clip_part(u["voice_id"])
            voices_rows += part["tables"].get("voices", [])
            labels_rows += part["tables"].get("speaker_labels", [])
            errors_rows += part["tables"].get("errors", [])
            stats.append(part["stats"])
        else:  # a worker died on it without a part: still accounted for
            errors_rows.append(error_row(u["voice_id"], "voices", OmniError(
                "no result: the worker stopped before finishing it (rerun to retry)")))
    for st in stats:
        for k, v in st.items():
            if k != "failed":
                seconds[k] = seconds.get(k, 0.0) + float(v)

    ts = time.perf_counter()
    voices = _frame(voices_rows, "voices", ["voice_id"])
    samples, refs, sources = build_crosspair(plan, voices)
    sources_df = _frame(plan.sources + sources, "crosspair_sources", ["inpair_sample_id"])
    errors = errors_frame(errors_rows)
    labels = pd.DataFrame(labels_rows).drop_duplicates("segment_id").to_dict("records") \
        if labels_rows else []
    for table, df in (
            ("identity_matches", matches.assign(reason=[r or None for r in matches.reason])),
            ("voices", voices),
            ("speaker_labels", _frame(labels, "speaker_labels", ["clip_id", "segment_id"])),
            ("crosspair_sources", sources_df), ("errors", errors)):
        write_manifest(df, table, folder.local(f"{table}.parquet", fetch=False))
        folder.publish(f"{table}.parquet")
    write_sample_folder(folder, "", samples, refs, runs)

    pool = [samples] if "crosspair" in cfg.stage3.pool else []
    refs3 = [absolute(refs, folder.out, "path")]
    if "inpair" in cfg.stage3.pool:
        for r in runs:
            s = read_manifest(join(r, "samples.parquet"), "samples")
            pool.append(absolute(absolute(s, r, "clip_path"), r, "caption_path"))
        refs3.append(plan.references)
    pool_df = pd.concat(pool, ignore_index=True) if pool else samples.iloc[:0]
    stage3 = stage3_samples(pool_df, cfg.stage3.mix)
    write_sample_folder(folder, "stage3", stage3,
                        pd.concat(refs3, ignore_index=True).drop_duplicates("reference_id"),
                        runs)
    seconds["samples"] = time.perf_counter() - ts

    summary = _summary(folder.out, runs, plan, matches, voices, sources_df, stage3, errors,
                       seconds, setup_seconds(folder, run), len(units) - len(todo), t0, stats,
                       cfg)
    folder.write_text("summary.json", json.dumps({
        "runs": runs, "inpair_samples": summary.inpair_samples, "counts": summary.counts,
        "sources": summary.sources, "retrieval": summary.retrieval, "voices": summary.voices,
        "stage3_tasks": summary.stage3_tasks, "errors_by_stage": summary.errors_by_stage,
        "stages": summary.stages, "stage_seconds": summary.stage_seconds,
        "setup_seconds": summary.setup_seconds, "skipped_voices": summary.skipped_voices,
        "wall_s": round(summary.wall_s, 2), "config": cfg_dict, "parts": key},
        indent=2, default=str))
    from .report import write_report

    write_report(folder)
    return summary


def _resolve_endpoints(cfg: CrosspairConfig) -> CrosspairConfig:
    """The label MLLM's endpoint read from the driver's environment into the config, so every
    actor (on any node) uses the same one and the parts key records it."""
    from dataclasses import replace

    if not cfg.labels.enabled:
        return cfg
    base, model = cfg.labels.resolved()
    return replace(cfg, labels=replace(cfg.labels, base_url=base, model=model))


def _frame(rows: list[dict[str, Any]], table: str, keys: list[str]) -> pd.DataFrame:
    from omni_core.manifests import get_schema

    sch = get_schema(table)
    if not rows:
        return sch.empty()
    df = sch.validate_frame(pd.DataFrame(rows))
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def _summary(out: str, runs: list[str], plan: Any, matches: pd.DataFrame,
             voices: pd.DataFrame, sources: pd.DataFrame, stage3: pd.DataFrame,
             errors: pd.DataFrame, seconds: dict[str, float], setup: dict[str, float],
             skipped: int, t0: float, stats: list[dict[str, Any]], cfg: CrosspairConfig
             ) -> CrosspairSummary:
    n_voices = len(voices)
    checked = voices[voices.similarity.notna()] if n_voices else voices
    sim_ok = wer_ok = None  # pass rates of each test over the checked clones
    if len(checked):
        sim_ok = float((checked.similarity >= cfg.check.min_similarity).mean())
        if cfg.check.max_wer is not None:
            wer_ok = float((checked.wer <= cfg.check.max_wer).mean())
    counts = {"identity_matches": len(matches), "voices": n_voices,
              "samples": int((sources.status == "sample").sum()) if len(sources) else 0,
              "stage3 samples": len(stage3), "errors": len(errors)}
    failed_at = [st.get("failed") for st in stats]
    # retrieval: in-pair samples in, candidates out; then the voice steps; then samples
    stages = [{"stage": "retrieval", "in": len(sources), "out": len(plan.candidates),
               "failed": 0, "seconds": round(seconds.get("retrieval", 0.0), 2)}]
    for name in VOICE_STEPS:
        reached = sum(1 for st in stats if name in st)
        failed = sum(1 for f in failed_at if f == name)
        stages.append({"stage": name, "in": reached, "out": reached - failed,
                       "failed": failed, "seconds": round(seconds.get(name, 0.0), 2)})
    n_samples = counts["samples"]
    stages.append({"stage": "samples", "in": len(plan.candidates), "out": n_samples,
                   "failed": 0, "seconds": round(seconds.get("samples", 0.0), 2)})
    return CrosspairSummary(
        out=out, runs=runs, inpair_samples=len(sources), counts=counts,
        sources={str(k): int(v) for k, v in sources.status.value_counts().items()}
        if len(sources) else {},
        stage3_tasks={t: int((stage3.task == t).sum()) for t in ("r2av", "rv2av", "ra2v")}
        if len(stage3) else {"r2av": 0, "rv2av": 0, "ra2v": 0},
        voices={"cloned": n_voices, "checked": len(checked),
                "passed": int(voices.passed.sum()) if n_voices else 0,
                "similarity_pass_rate": sim_ok, "wer_pass_rate": wer_ok,
                "mean_similarity": float(checked.similarity.mean()) if len(checked) else None,
                "mean_wer": float(checked.wer.mean()) if checked.wer.notna().any() else None,
                "min_similarity": cfg.check.min_similarity, "max_wer": cfg.check.max_wer},
        retrieval={"queries": int(matches.query_identity_id.nunique()) if len(matches) else 0,
                   "verified": int(matches.verified.sum()) if len(matches) else 0,
                   "refused": int((~matches.verified).sum()) if len(matches) else 0,
                   "refusals": {str(k): int(v) for k, v in
                                matches[~matches.verified].reason.str.split(" ").str[0]
                                .value_counts().items()} if len(matches) else {}},
        errors_by_stage=errors.groupby("stage").size().to_dict() if len(errors) else {},
        stage_seconds={k: round(v, 2) for k, v in sorted(seconds.items())},
        setup_seconds=setup, skipped_voices=skipped, wall_s=time.perf_counter() - t0,
        stages=stages)
