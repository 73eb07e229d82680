"""Run metrics over a benchmark's instances and a folder of predictions: the ``eval`` job.

The job's stages (:mod:`omni_core.jobs`, run in this process: one device, one model of each
metric): ``inputs`` probes each instance's prediction ``<instance_id>.mp4`` (with its audio
track, or a sibling ``<instance_id>.wav``); then one stage per metric (its models loaded once,
timed as setup). A missing or unreadable prediction fails the instance at ``inputs``: it is
recorded as ``missing`` with the reason for every metric, counted in the summary and never
averaged. Files of the prediction folder that are no instance's prediction are ignored and
listed in the summary (``unexpected_predictions``). Each instance's media is decoded once
(:class:`~evaluation.inputs.InstanceInputs`, lazily, by the first metric that needs it) and
shared by the metrics.

Results are kept per metric and instance in the job's result store
(:class:`omni_core.jobs.ResultStore`), keyed by the prediction's and references' content
hash, the metric's version, options and weights: a killed run resumes where it stopped, a
rerun recomputes nothing, and ``recompute=[name]`` invalidates one metric.

Outputs in ``OUT``: ``results.parquet`` (the ``eval_results`` manifest), ``errors.parquet``,
``summary.json`` (the job summary: stages, timing, provenance; the table, per-metric status
counts and each metric's backend under ``details``), ``table.md``, ``table.csv``,
``table.tex``. A lite backend (:mod:`.registry`) is its own metric: own results rows, cache
entries and table column, marked as not the paper's protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from omni_core.errors import MediaError, OmniError
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
    run_in_process,
    stage_rows,
)
from omni_core.jobs.store import RESULTS_DIR
from omni_core.manifests import EVAL_RESULTS, EVAL_TURNS, errors_frame, write_manifest
from omni_core.media import probe
from omni_core.storage import RunFolder

from . import tables
from .inputs import InstanceInputs
from .registry import Metric, Output, get

JOB = "eval"


@dataclass
class EvalRun:
    out: Path
    results: pd.DataFrame
    summary: dict
    table_md: str


class InputsStage(Stage):
    """Finds and probes each instance's prediction; a missing or unreadable one fails the
    instance here (every metric then records it as ``missing``). The models' items of one
    instance share its decoded references."""

    name = "inputs"

    def process(self, item: WorkItem) -> None:
        inputs, why = _inputs(item.data["instance"], item.data["pred_dir"],
                              item.data["references"])
        if why is not None:
            raise OmniError(why)
        try:  # every file the metrics will read exists and is readable
            inputs.content_hash  # noqa: B018 - reads them all once
        except OSError as exc:
            raise OmniError(f"unreadable input: {exc}") from None
        item.data["inputs"] = inputs


class MetricStage(Stage):
    """One metric over every instance it applies to (a subclass per metric, named after it)."""

    metric: ClassVar[str] = ""

    def setup(self, metric: Metric, last: bool = False) -> None:
        self.m = metric
        self.m.setup()
        self.store = ResultStore(self.out, JOB)
        self.last = last

    def process(self, item: WorkItem) -> None:
        inst = item.data["instance"]
        inputs = item.data["inputs"]
        if self.m.applies_to(inst.task, inst.split):
            before = inputs.decode_seconds
            rows, turns = _score(self.m, inputs, self.store)
            model = item.data["model"]
            item.tables.setdefault("eval_results", []).extend(
                {"model": model, **r} for r in rows)
            item.tables.setdefault("eval_turns", []).extend(
                {"model": model, "instance_id": inst.instance_id, "task": inst.task,
                 "split": inst.split, **t} for t in turns)
            item.data["decode_s"] = item.data.get("decode_s", 0.0) + \
                inputs.decode_seconds - before
        if self.last:  # the decoded media are not needed any more
            del item.data["inputs"]


def _metric_stage(name: str) -> type[MetricStage]:
    return type(f"MetricStage_{name}", (MetricStage,), {"name": name, "metric": name})


@dataclass
class Scores:
    """Every model's per-instance scores (:func:`score_models`)."""

    results: pd.DataFrame  # eval_results
    turns: pd.DataFrame  # eval_turns: per speaker turn of multi-person instances
    errors: pd.DataFrame
    metrics: list[Metric]
    missing: dict[str, dict[str, str]]  # model -> {instance id: why}
    unexpected: dict[str, list[str]]  # model -> files matching no instance
    key: str
    stages: list[dict]
    checkpoints: list
    decode_s: float

    @property
    def outputs(self) -> list[Output]:
        return [o for m in self.metrics for o in m.spec.outputs]

    def counts(self) -> dict:
        return _counts(self.results)


def score_models(
    instances: pd.DataFrame,
    predictions: Mapping[str, str | Path],
    out: str | Path,
    metric_names: Sequence[str],
    *,
    weights: str = "debug",
    device: str = "cpu",
    options: dict[str, object] | None = None,
    recompute: Sequence[str] = (),
    progress: bool = True,
) -> Scores:
    """Score every model's predictions (model name -> folder of ``<instance_id>.mp4``) on
    every instance with every metric, in one job: each metric is set up once for all models,
    the models' items of one instance follow each other and share its decoded references, and
    results are cached in ``out`` by the content of prediction and references (a model whose
    prediction is byte-identical to another's reuses its result)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(out.resolve())
    options = options or {}
    metrics: list[Metric] = []
    for name in metric_names:
        cls = get(name)
        metrics.append(cls(weights=weights, device=device, options=options.get(name)))
    store = ResultStore(folder, JOB)
    for m in metrics:
        if m.spec.name in recompute:
            store.clear(m.spec.name)
    # the run's key (each value is also kept under its own key: the metric as set up, and
    # the content of its inputs)
    key = result_key({m.spec.name: m.describe() for m in metrics})
    job = JobContext(JOB, folder, key)
    plans = [StagePlan(InputsStage, unit="instances")]
    plans += [StagePlan(_metric_stage(m.spec.name), unit="instances",
                        params={"metric": m, "last": i == len(metrics) - 1})
              for i, m in enumerate(metrics)]
    preds = {name: Path(p) for name, p in predictions.items()}
    items = []
    for inst in instances.itertuples(index=False):
        shared: dict = {}  # this instance's decoded references, for every model
        for name, pred_dir in preds.items():
            items.append(WorkItem(inst.instance_id if len(preds) == 1
                                  else f"{name}/{inst.instance_id}",
                                  {"instance": inst, "model": name, "pred_dir": pred_dir,
                                   "references": shared}))
    items = run_in_process(job, items, plans, progress=progress)
    setup = collect_setup(job)

    rows: list[dict] = []
    turns: list[dict] = []
    missing: dict[str, dict[str, str]] = {name: {} for name in preds}
    errors: list[dict] = []
    decode_s = 0.0
    for item in items:
        inst, model = item.data["instance"], item.data["model"]
        if item.failed == "inputs":
            why = item.tables["errors"][0]["reason"]
            missing[model][inst.instance_id] = why
            for m in metrics:
                if m.applies_to(inst.task, inst.split):
                    rows += [{"model": model, **r} for r in _rows(inst, m, None, "missing", why)]
        rows += item.tables.get("eval_results", [])
        turns += item.tables.get("eval_turns", [])
        errors += item.tables.get("errors", [])
        decode_s += item.data.get("decode_s", 0.0)
    results = EVAL_RESULTS.validate_frame(pd.DataFrame(rows, columns=EVAL_RESULTS.column_names))
    turns_df = EVAL_TURNS.validate_frame(pd.DataFrame(turns, columns=EVAL_TURNS.column_names))
    return Scores(
        results=results, turns=turns_df, errors=errors_frame(errors), metrics=metrics,
        missing=missing,
        unexpected={name: unexpected_predictions(instances, p, out) for name, p in preds.items()},
        key=key,
        stages=stage_rows([(p.stage.name, p.stage.step_names()) for p in plans],
                          [i.stats() for i in items], setup=setup.seconds,
                          actors=setup.actors),
        checkpoints=setup.checkpoints, decode_s=decode_s)


def evaluate(
    instances: pd.DataFrame,
    pred_dir: str | Path,
    out: str | Path,
    metric_names: Sequence[str],
    *,
    weights: str = "debug",
    device: str = "cpu",
    options: dict[str, object] | None = None,
    recompute: Sequence[str] = (),
    model_name: str | None = None,
    progress: bool = True,
    config: dict | None = None,
    n_boot: int = tables.N_BOOT,
    seed: int = 0,
) -> EvalRun:
    """Score every instance with every metric; write results, summary and tables to ``out``."""
    t0 = time.perf_counter()
    pred_dir, out = Path(pred_dir), Path(out)
    model = model_name or pred_dir.name
    sc = score_models(instances, {model: pred_dir}, out, metric_names, weights=weights,
                      device=device, options=options, recompute=recompute, progress=progress)
    results, metrics = sc.results, sc.metrics
    write_manifest(results, EVAL_RESULTS, out / "results.parquet")
    write_manifest(sc.turns, EVAL_TURNS, out / "turns.parquet")
    write_manifest(sc.errors, "errors", out / "errors.parquet")
    outputs = sc.outputs
    views = tables.build_views(results, outputs, [model], n_boot=n_boot, seed=seed,
                               views=tables.task_views(results))
    md = tables.markdown(views, outputs)
    (out / "table.md").write_text(md)
    (out / "table.csv").write_text(tables.to_csv(views, outputs))
    (out / "table.tex").write_text(tables.latex(views, outputs))
    debug = weights in ("debug", "random") and any(m.spec.is_paper for m in metrics)
    lite = {m.spec.name: m.spec.lite_for for m in metrics if not m.spec.is_paper}
    missing, unexpected = sc.missing[model], sc.unexpected[model]
    summary = JobSummary.build(
        JOB, str(out.resolve()), total=len(instances), skipped=0, stages=sc.stages,
        errors=sc.errors, counts={"results": len(results), "missing_predictions":
                                  len(missing)},
        wall_s=time.perf_counter() - t0, result_key=sc.key,
        details={
            "model": model, "debug_weights": debug,
            "note": run_note(weights if debug else None, lite),
            "lite_backends": lite,
            # as set up, with the backend ("paper" or the lite model's name)
            "metrics": {m.spec.name: {**m.describe(), **m.spec.protocol} for m in metrics},
            "instances": int(len(instances)),
            "missing_predictions": missing,
            "unexpected_predictions": {"count": len(unexpected),
                                       "names": unexpected[:UNEXPECTED_LISTED]},
            "counts": sc.counts(),
            "table": tables.summary_cells(views),
            "decode_s": round(sc.decode_s, 3)},
        provenance=provenance(config or {}, weights=weights, inputs=[str(pred_dir)],
                              checkpoints=sc.checkpoints))
    summary.write(RunFolder(out.resolve()))
    return EvalRun(out, results, summary.to_json(), md)


def run_note(debug_weights: str | None, lite: dict[str, str]) -> str | None:
    """What a reader must know before reading the numbers: debug weights (``"debug"`` or
    ``"random"``: the paper metrics' scores mean nothing) and lite backends (metric -> the
    paper metric it stands in for: real scores, not the paper's protocol)."""
    parts = []
    if debug_weights:
        parts.append(f"{debug_weights} weights: scores are not meaningful"
                     + (" (except the lite backends)" if lite else ""))
    if lite:
        names = ", ".join(f"{name} for {paper}" for name, paper in lite.items())
        parts.append(f"lite backends {names}: real models, not the paper's protocol, not "
                     f"comparable with published numbers (marked {tables.DAGGER})")
    return "; ".join(parts) or None


#: what ``omni generate`` keeps beside its videos, and an eval's own outputs
_NOT_PREDICTIONS = {"summary.json", "errors.parquet", RESULTS_DIR, "results.parquet",
                    "turns.parquet", "table.md", "table.csv", "table.tex"}
#: names of unexpected files listed in the summary (all are counted)
UNEXPECTED_LISTED = 20


def unexpected_predictions(instances: pd.DataFrame, pred_dir: Path, out: Path) -> list[str]:
    """Sorted names in ``pred_dir`` that are no instance's prediction (``<id>.mp4``,
    ``<id>.wav``), folders with a trailing ``/``: hidden files, job bookkeeping and the
    eval's output folder excepted. They are ignored; the summary lists them."""
    if not pred_dir.is_dir():
        return []
    expected = {f"{i}{ext}" for i in instances.instance_id for ext in (".mp4", ".wav")}
    out = out.resolve()
    return sorted(p.name + ("/" if p.is_dir() else "") for p in pred_dir.iterdir()
                  if not p.name.startswith(".") and p.name not in expected
                  and p.name not in _NOT_PREDICTIONS and p.resolve() != out)


def _inputs(inst, pred_dir: Path, references: dict | None = None
            ) -> tuple[InstanceInputs | None, str | None]:
    video = pred_dir / f"{inst.instance_id}.mp4"
    if not video.is_file():
        return None, f"no prediction {video.name} in {pred_dir}"
    try:
        info = probe(video)
    except MediaError as exc:
        return None, f"unreadable prediction: {exc}"
    if not info.has_video:
        return None, f"{video.name} has no video stream"
    wav = pred_dir / f"{inst.instance_id}.wav"
    audio = wav if wav.is_file() else video
    if audio is video and not info.has_audio:
        return None, f"{video.name} has no audio track and there is no {wav.name}"
    return InstanceInputs(
        instance_id=inst.instance_id, task=inst.task, split=inst.split,
        caption_text=inst.caption, video_path=video, audio_path=audio,
        image_refs=[Path(p) for p in inst.image_refs],
        audio_refs=[Path(p) for p in inst.audio_refs],
        _refs=references if references is not None else {}), None


def _score(m: Metric, inputs: InstanceInputs, store: ResultStore
           ) -> tuple[list[dict], list[dict]]:
    """(eval_results rows without the model, per-turn rows) of one metric on one prediction,
    cached by the content of the prediction and references."""
    key = _cache_key(m, inputs)
    # one record per content: models whose predictions are byte-identical share it, and a
    # model's record never replaces another's
    entry = f"{inputs.instance_id}.{inputs.content_hash[:16]}"
    cached = store.get(m.spec.name, entry, key)
    if cached is not None:
        return cached["rows"], cached.get("turns", [])
    turns: list[dict] = []
    try:
        values = m.compute(inputs)
        rows = []
        for o in m.spec.outputs:
            v = values.get(o.name)
            if v is None:
                rows += _rows(inputs, m, None, "not_computed", values.get(f"{o.name}_reason")
                              or "metric returned no value", only=o.name)
            else:
                rows += _rows(inputs, m, float(v), "ok", None, only=o.name)
                turns += [{"metric": o.name, "speaker": str(t["speaker"]),
                           "turn": int(t["turn"]), "start_s": float(t["start_s"]),
                           "end_s": float(t["end_s"]),
                           "value": _finite(t["value"])}
                          for t in values.get(f"{o.name}_turns") or ()]
    except OmniError as exc:
        rows, turns = _rows(inputs, m, None, "error", str(exc)), []
    except Exception as exc:  # a metric bug or an input it cannot take: a row, not a crash;
        # not cached, so a fixed metric recomputes it
        first = (str(exc).splitlines() or [""])[0]
        return _rows(inputs, m, None, "error", f"{type(exc).__name__}: {first}"), []
    store.put(m.spec.name, entry, key, {"rows": rows, "turns": turns})
    return rows, turns


def _finite(v) -> float | None:
    """A turn's value, None when it could not be scored (None or NaN)."""
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _rows(inst, m: Metric, value, status: str, reason, only: str | None = None) -> list[dict]:
    return [{"instance_id": inst.instance_id, "task": inst.task, "split": inst.split,
             "metric": o.name, "metric_version": m.spec.version, "value": value,
             "status": status, "reason": reason}
            for o in m.spec.outputs if only in (None, o.name)]


def _cache_key(m: Metric, inputs: InstanceInputs) -> str:
    desc = json.dumps({"metric": m.spec.name, **m.describe(), "device": m.device},
                      sort_keys=True, default=str)
    return hashlib.sha256(f"{desc}|{inputs.content_hash}".encode()).hexdigest()


def _counts(results: pd.DataFrame) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for (metric, status), n in results.groupby(["metric", "status"]).size().items():
        counts.setdefault(metric, {})[status] = int(n)
    return counts


def options_from(metric: str, overrides: dict) -> object:
    """Build a metric's options dataclass from plain values (CLI/YAML)."""
    from omni_core.config import from_dict

    cls = get(metric).Options
    if not dataclasses.is_dataclass(cls):
        raise OmniError(f"metric {metric!r} has no options")
    return from_dict(cls, overrides, where=metric)
