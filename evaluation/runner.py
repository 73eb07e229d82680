"""Run metrics over a benchmark's instances and a folder of predictions.

For every instance the prediction ``<instance_id>.mp4`` (with its audio track, or a sibling
``<instance_id>.wav``) is probed; a missing or unreadable prediction is recorded as ``missing``
with the reason for every metric, counted in the summary and never averaged. Each instance's
media is decoded once (:class:`~evaluation.inputs.InstanceInputs`) and shared by the metrics.

Results are cached per metric and instance under ``OUT/cache/<metric>/<instance>.json``, keyed
by the prediction's and references' content hash, the metric's version, options and weights: a
killed run resumes where it stopped, a rerun recomputes nothing, and ``recompute=[name]``
invalidates one metric.

Outputs in ``OUT``: ``results.parquet`` (the ``eval_results`` manifest), ``summary.json`` (counts,
provenance), ``table.md``, ``table.csv``, ``table.tex``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from omni_core import __version__
from omni_core.doctor import git_commit
from omni_core.errors import MediaError, OmniError
from omni_core.manifests import EVAL_RESULTS, write_manifest
from omni_core.media import probe

from . import tables
from .inputs import InstanceInputs
from .registry import Metric, get


@dataclass
class EvalRun:
    out: Path
    results: pd.DataFrame
    summary: dict
    table_md: str


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
) -> EvalRun:
    """Score every instance with every metric; write results, summary and tables to ``out``."""
    pred_dir, out = Path(pred_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = options or {}
    metrics: list[Metric] = []
    for name in metric_names:
        cls = get(name)
        metrics.append(cls(weights=weights, device=device, options=options.get(name)))
    for m in metrics:
        if m.spec.name in recompute:
            _clear_cache(out, m.spec.name)
    t_setup = time.perf_counter()
    for m in metrics:
        m.setup()
    setup_s = time.perf_counter() - t_setup

    rows: list[dict] = []
    missing: dict[str, str] = {}
    seconds = {m.spec.name: 0.0 for m in metrics}
    decode_s = 0.0
    bars = {m.spec.name: tqdm(total=len(instances), desc=f"{m.spec.name:>9}", position=i,
                              leave=True, disable=not progress, unit="inst")
            for i, m in enumerate(metrics)}
    t0 = time.perf_counter()
    for inst in instances.itertuples(index=False):
        inputs, why = _inputs(inst, pred_dir)
        if why is not None:
            missing[inst.instance_id] = why
        for m in metrics:
            applicable = m.applies_to(inst.task, inst.split)
            if applicable:
                if inputs is None:
                    rows += _rows(inst, m, None, "missing", why)
                else:
                    t = time.perf_counter()
                    rows += _score(m, inputs, out)
                    seconds[m.spec.name] += time.perf_counter() - t
            bars[m.spec.name].update(1)
        if inputs is not None:
            decode_s += inputs.decode_seconds
    wall = time.perf_counter() - t0
    for bar in bars.values():
        bar.close()

    results = EVAL_RESULTS.validate_frame(pd.DataFrame(rows, columns=EVAL_RESULTS.column_names))
    write_manifest(results, EVAL_RESULTS, out / "results.parquet")
    outputs = [o for m in metrics for o in m.spec.outputs]
    agg = tables.aggregate(results, outputs)
    model = model_name or pred_dir.name
    md = tables.markdown(agg, outputs, model)
    (out / "table.md").write_text(md)
    (out / "table.csv").write_text(tables.to_csv(agg, outputs, model))
    (out / "table.tex").write_text(tables.latex(agg, outputs, model))
    summary = {
        "suite_version": __version__,
        "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "config": config or {},
        "weights": weights,
        "debug_weights": weights in ("debug", "random"),
        "note": (f"{weights} weights: scores are not meaningful"
                 if weights in ("debug", "random") else None),
        "metrics": {m.spec.name: m.describe() for m in metrics},
        "instances": int(len(instances)),
        "missing_predictions": missing,
        "counts": _counts(results),
        "table": {task: {k: c.text for k, c in row.items()} for task, row in agg.items()},
        "timing_s": {"wall": round(wall, 3), "setup": round(setup_s, 3),
                     "decode": round(decode_s, 3),
                     "per_metric": {k: round(v, 3) for k, v in seconds.items()}},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return EvalRun(out, results, summary, md)


def _inputs(inst, pred_dir: Path) -> tuple[InstanceInputs | None, str | None]:
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
        audio_refs=[Path(p) for p in inst.audio_refs]), None


def _score(m: Metric, inputs: InstanceInputs, out: Path) -> list[dict]:
    key = _cache_key(m, inputs)
    path = out / "cache" / m.spec.name / f"{inputs.instance_id}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return cached["rows"]
        except (json.JSONDecodeError, KeyError):
            pass  # a torn cache file: recompute
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
    except OmniError as exc:
        rows = _rows(inputs, m, None, "error", str(exc))
    except Exception as exc:  # a metric bug or an input it cannot take: a row, not a crash;
        # not cached, so a fixed metric recomputes it
        first = (str(exc).splitlines() or [""])[0]
        return _rows(inputs, m, None, "error", f"{type(exc).__name__}: {first}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"key": key, "rows": rows}))
    os.replace(tmp, path)
    return rows


def _rows(inst, m: Metric, value, status: str, reason, only: str | None = None) -> list[dict]:
    return [{"instance_id": inst.instance_id, "task": inst.task, "split": inst.split,
             "metric": o.name, "metric_version": m.spec.version, "value": value,
             "status": status, "reason": reason}
            for o in m.spec.outputs if only in (None, o.name)]


def _cache_key(m: Metric, inputs: InstanceInputs) -> str:
    desc = json.dumps({"metric": m.spec.name, **m.describe(), "device": m.device},
                      sort_keys=True, default=str)
    return hashlib.sha256(f"{desc}|{inputs.content_hash}".encode()).hexdigest()


def _clear_cache(out: Path, name: str) -> None:
    folder = out / "cache" / name
    if folder.is_dir():
        for f in folder.glob("*.json"):
            f.unlink()


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
