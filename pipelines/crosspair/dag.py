"""The cross-pair DAG: in-pair runs -> stage-2 (cross-pair) and stage-3 (omni-task) samples.

``omni curate crosspair --inpair RUN [--inpair RUN ...] --out OUT``:

1. ``retrieval`` (driver): every identity of the runs into one ArcFace database; for each
   subject, verified matches of the same person in another clip (``identity_matches``);
   an in-pair sample with a subject matched nowhere is ``no_match`` (``crosspair_sources``);
2. ``voices`` (Ray Data actor pool, one work item per speaker to clone; the actor holds the
   TTS, ClearerVoice, and the check's speaker verifier and recogniser: WavLM-ECAPA and
   Whisper, or GE2E and PocketSphinx on the lite models, as ``models`` decides): ``labels``
   (optional, multi-speaker clips: a multimodal LLM re-reads who says each segment,
   ``speaker_labels``; a prompt it gives to someone else is not cloned),
   ``prompt`` and ``clone`` (the speaker's in-pair timbre reference as the prompt, the
   recogniser's transcript as its text, a sentence sharing the fewest words with the target
   as the text), ``enhance``, ``check`` (same speaker, right words); every item ends as a
   ``voices`` row, a failure also as an ``errors`` row (stage and reason);
3. ``samples`` (driver): cross-pair samples of the candidates whose every voice passed (the
   others ``no_voice``), written as a curation folder (OUT itself) ``omni latents`` reads;
   and the stage-3 table (``OUT/stage3``): the pool's samples with R2AV : RV2AV : RA2V
   assigned in the configured ratio.

Each voice is one result record (:class:`omni_core.jobs.ResultStore`): a rerun skips the
finished ones, and the manifests are the sorted merge of the records, so a killed run
resumed gives the same manifests as one never interrupted. OUT/summary.json and
OUT/report.html describe the run. The in-pair runs and OUT may be folders or URLs
(``s3://...``, :mod:`omni_core.storage`): actors read media through local copies and
publish what they write.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

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
    driver_stage,
    provenance,
    result_key,
    run_on_ray,
    stage_rows,
)
from omni_core.manifests import (
    error_row,
    errors_frame,
    read_manifest,
    rows_frame,
    stable_id,
    write_manifest,
)
from omni_core.storage import RunFolder, exists, join, local_input

from .config import CrosspairConfig

JOB = "crosspair"
#: tables of OUT (the stage-3 folder has its own samples/references/clips/...)
TABLES = ("identity_matches", "speaker_labels", "voices", "crosspair_sources", "samples",
          "references", "errors")
#: steps of the voices stage, in order (per-step seconds and failures)
VOICE_STEPS = ("labels", "prompt", "clone", "enhance", "check")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _concrete(config: dict[str, Any]) -> CrosspairConfig:
    """The stage's config with ``check.backend`` decided (the job passes a resolved one)."""
    from .models import resolve_models

    return resolve_models(from_dict(CrosspairConfig, config)).config


class VoiceStage(Stage):
    """Per speaker: the MLLM label check, prompt transcript, clone, enhancement, check; one
    result record per voice."""

    name = "voices"
    steps = VOICE_STEPS
    #: 2: the espeak double speaks with the espeak voice nearest the prompt's (GE2E)
    version = 2

    @classmethod
    def preflight(cls, config: dict[str, Any]) -> None:
        from omni_core.models.enhancer import Enhancer

        from .voices import check_check_models, check_cloner

        cfg = _concrete(config)
        c = cfg.clone
        check_cloner(c.backend, model_dir=c.model_dir, weights=cfg.weights)
        Enhancer.check(c.enhance, c.enhance_model, cfg.weights)
        check_check_models(cfg.check.backend == "lite", cfg.weights)

    def setup(self, config: dict[str, Any]) -> None:
        """The cloner, the enhancer and the check's models (``check.backend``: the paper's
        WavLM-ECAPA and Whisper, or the lite GE2E + PocketSphinx,
        :func:`~.voices.load_check_models`)."""
        from omni_core.models.enhancer import Enhancer

        from .voices import load_check_models, make_cloner

        self.cfg = _concrete(config)
        self.folder = self.out
        self.store = ResultStore(self.out, JOB)
        c = self.cfg.clone
        kw: dict[str, Any] = {}
        if c.backend == "cosyvoice":
            kw = {"model_dir": c.model_dir}
        elif c.backend == "f5-tts":
            kw = {"weights": self.cfg.weights, "device": self.cfg.device}
        self.cloner = make_cloner(c.backend, **kw)
        self.enhancer = Enhancer(c.enhance, c.enhance_model, self.cfg.weights)
        self.models = load_check_models(self.cfg.check.backend == "lite", self.cfg.weights,
                                        self.cfg.device)
        self._refined: dict[str, Any] = {}  # clip id -> the MLLM's relabelling

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        item = WorkItem.from_row(row)
        unit = item.data
        voice = {k: unit[k] for k in ("voice_id", "identity_id", "prompt_reference_id",
                                      "prompt_clip_id", "text")}
        voice.update(backend=self.cloner.name, prompt_text=None, path=None, duration_s=None,
                     similarity=None, wer=None, transcript=None, passed=False, reason=None)
        item.tables = {"voices": [], "errors": [], "speaker_labels": []}
        self.timed(item, self.process, voice)
        if item.failed is not None:
            reason = item.tables["errors"][-1]["reason"]
            voice["reason"] = voice["reason"] or f"{item.failed}: {reason}"
        item.tables["voices"].append(voice)
        try:  # retried by the store; a storage that still refuses it is not a dead run
            self.store.put("voices", item.item, self.job.key,
                           {"tables": item.tables, "stats": item.stats()})
        except Exception as exc:  # noqa: BLE001 - the driver's error row names it
            self.report(done=1, failed=1, out=0)
            return {"item": item.item, "unpublished": error_row("", "voices", exc)["reason"]}
        self.report(done=1, failed=int(item.failed is not None), out=1)
        return {"item": item.item, "unpublished": None}

    def process(self, item: WorkItem, voice: dict[str, Any]) -> None:
        self._labels(item.data, item.tables)
        self.step("prompt")
        self._voice(item.data, voice)

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

    def _voice(self, unit: dict[str, Any], voice: dict[str, Any]) -> None:
        from omni_core.media import load_audio, write_wav
        from omni_core.media.audio import resample

        from .voices import SAMPLE_RATE, check_clone

        c = self.cfg.clone
        prompt = load_audio(local_input(unit["prompt_path"]), SAMPLE_RATE)
        if self.cloner.needs_prompt_text:
            voice["prompt_text"] = self.models.transcribe(prompt, c.language)
        self.step("clone")
        wav = self.cloner.clone(unit["text"], prompt, SAMPLE_RATE, voice["prompt_text"] or "")
        wav = resample(wav, self.cloner.sample_rate, SAMPLE_RATE)
        if wav.size < SAMPLE_RATE // 4:
            raise OmniError(f"the clone is {wav.size / SAMPLE_RATE:.2f} s long")
        self.step("enhance")
        wav = self.enhancer(wav, SAMPLE_RATE)
        self.step("check")
        check = check_clone(wav, SAMPLE_RATE, prompt, SAMPLE_RATE, unit["text"], self.models,
                            self.cfg.check, language=c.language)
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
                  progress: bool = True, verbose: bool = False) -> JobSummary:
    """Run the cross-pair job over the in-pair outputs ``runs`` into ``out`` (folders or
    URLs)."""
    from .identity import find_matches, load_database
    from .models import resolve_models
    from .samples import (
        absolute,
        build_crosspair,
        plan_crosspair,
        stage3_samples,
        write_sample_folder,
    )

    t0 = time.perf_counter()
    models = resolve_models(pin_endpoints(cfg or CrosspairConfig()))
    cfg = models.config
    print(models.headline(), flush=True)
    runs = sorted(RunFolder(r).out for r in runs)
    for r in runs:
        if not exists(join(r, "samples.parquet")):
            raise OmniError(f"{r} is not an in-pair run (no samples.parquet): run "
                            f"`omni curate inpair` first")
    folder = RunFolder(out)
    folder.root.mkdir(parents=True, exist_ok=True)
    cfg_dict = to_dict(cfg)
    key = result_key({k: v for k, v in cfg_dict.items() if k not in ("ray", "resources")},
                     runs, {VoiceStage.name: VoiceStage.version})
    store = ResultStore(folder, JOB)
    seconds: dict[str, float] = {}

    ts = time.perf_counter()
    db = load_database(runs)
    matches = find_matches(db, cfg.retrieval, ray_config=cfg.ray)
    plan = plan_crosspair(runs, db, matches)
    units = voice_units(plan, runs, cfg)
    seconds["retrieval"] = time.perf_counter() - ts

    todo = [u for u in units if not store.done("voices", u["voice_id"], key)]
    job = JobContext(JOB, folder, key)
    returned = run_on_ray(job, [WorkItem(u["voice_id"], u).to_row() for u in todo],
                          [StagePlan(VoiceStage, cfg.resources.voices,
                                     {"config": cfg_dict}, unit="voices")],
                          cfg.ray, progress=progress, verbose=verbose)
    unpublished = {r["item"]: r["unpublished"] for r in returned if r.get("unpublished")}
    setup = collect_setup(job)
    store.refresh()  # the workers published their voices

    voices_rows, errors_rows, labels_rows, stats = [], [], [], []
    for u in units:
        rec = store.get("voices", u["voice_id"], key)
        if rec is not None:
            voices_rows += rec["tables"].get("voices", [])
            labels_rows += rec["tables"].get("speaker_labels", [])
            errors_rows += rec["tables"].get("errors", [])
            stats.append(rec["stats"])
        elif u["voice_id"] in unpublished:
            errors_rows.append(error_row(u["voice_id"], "voices", OmniError(
                f"the voice's result could not be published ({unpublished[u['voice_id']]}); "
                "a rerun retries it")))
        else:  # a worker died on it without a record: still accounted for
            errors_rows.append(error_row(u["voice_id"], "voices", OmniError(
                "no result: the worker stopped before finishing it (rerun to retry)")))

    ts = time.perf_counter()
    voices = rows_frame("voices", voices_rows, ["voice_id"])
    samples, refs, sources = build_crosspair(plan, voices)
    sources_df = rows_frame("crosspair_sources", plan.sources + sources, ["inpair_sample_id"])
    errors = errors_frame(errors_rows)
    labels = pd.DataFrame(labels_rows).drop_duplicates("segment_id").to_dict("records") \
        if labels_rows else []
    for table, df in (
            ("identity_matches", matches.assign(reason=[r or None for r in matches.reason])),
            ("voices", voices),
            ("speaker_labels", rows_frame("speaker_labels", labels, ["clip_id", "segment_id"])),
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

    n_samples = int((sources_df.status == "sample").sum()) if len(sources_df) else 0
    stages = [driver_stage("retrieval", len(sources_df), len(plan.candidates),
                           seconds["retrieval"]),
              *stage_rows([(VoiceStage.name, VOICE_STEPS)], stats, setup=setup.seconds,
                          actors=setup.actors),
              driver_stage("samples", len(plan.candidates), n_samples, seconds["samples"])]
    details = _details(runs, plan, matches, voices, sources_df, stage3, cfg,
                       cfg.check.threshold(lite=cfg.check.backend == "lite"))
    details["models"] = models.to_dict()
    summary = JobSummary.build(
        JOB, folder.out, total=len(units), skipped=len(units) - len(todo), stages=stages,
        errors=errors, counts={"identity_matches": len(matches), "voices": len(voices),
                               "samples": n_samples, "stage3 samples": len(stage3),
                               "errors": len(errors)},
        wall_s=time.perf_counter() - t0, result_key=key, details=details,
        provenance=provenance(cfg_dict, weights=cfg.weights, inputs=runs,
                              checkpoints=setup.checkpoints),
        notes=models.lines() + _notes(details, len(units) - len(todo)) + [
            f"stage-3 table in {join(folder.out, 'stage3')}, report "
            f"{join(folder.out, 'report.html')}"])
    summary.write(folder)
    from .report import write_report

    write_report(folder)
    return summary


def _details(runs: list[str], plan: Any, matches: pd.DataFrame, voices: pd.DataFrame,
             sources: pd.DataFrame, stage3: pd.DataFrame, cfg: CrosspairConfig,
             min_similarity: float) -> dict[str, Any]:
    """What only the cross-pair summary has: the runs, the fate of every in-pair sample,
    retrieval, the voices' checks (``min_similarity``: the threshold they were held to) and
    the stage-3 task mix."""
    n_voices = len(voices)
    checked = voices[voices.similarity.notna()] if n_voices else voices
    sim_ok = wer_ok = None  # pass rates of each test over the checked clones
    if len(checked):
        sim_ok = float((checked.similarity >= min_similarity).mean())
        if cfg.check.max_wer is not None:
            wer_ok = float((checked.wer <= cfg.check.max_wer).mean())
    return {
        "runs": runs, "inpair_samples": len(sources),
        "sources": {str(k): int(v) for k, v in sources.status.value_counts().items()}
        if len(sources) else {},
        "retrieval": {
            "queries": int(matches.query_identity_id.nunique()) if len(matches) else 0,
            "verified": int(matches.verified.sum()) if len(matches) else 0,
            "refused": int((~matches.verified).sum()) if len(matches) else 0,
            "refusals": {str(k): int(v) for k, v in
                         matches[~matches.verified].reason.str.split(" ").str[0]
                         .value_counts().items()} if len(matches) else {}},
        "voices": {"cloned": n_voices, "checked": len(checked),
                   "passed": int(voices.passed.sum()) if n_voices else 0,
                   "similarity_pass_rate": sim_ok, "wer_pass_rate": wer_ok,
                   "mean_similarity": float(checked.similarity.mean()) if len(checked)
                   else None,
                   "mean_wer": float(checked.wer.mean()) if checked.wer.notna().any()
                   else None,
                   "min_similarity": min_similarity, "max_wer": cfg.check.max_wer},
        "stage3_tasks": {t: int((stage3.task == t).sum()) for t in ("r2av", "rv2av", "ra2v")}
        if len(stage3) else {"r2av": 0, "rv2av": 0, "ra2v": 0},
    }


def _notes(d: dict[str, Any], skipped: int) -> list[str]:
    v, r = d["voices"], d["retrieval"]
    return [f"{len(d['runs'])} in-pair run(s), {d['inpair_samples']} in-pair samples: "
            + ", ".join(f"{k} {n}" for k, n in sorted(d["sources"].items())),
            f"retrieval: {r['verified']} verified matches of {r['queries']} subjects "
            f"({r['refused']} refused)",
            f"voices: {v['cloned']} cloned ({skipped} by an earlier run), {v['passed']} "
            f"passed; similarity pass {_pct(v['similarity_pass_rate'])}, WER pass "
            f"{_pct(v['wer_pass_rate'])}",
            "stage 3: " + ", ".join(f"{t} {n}" for t, n in d["stage3_tasks"].items())]
