"""A comparison of several models on one benchmark: ``omni benchmark run``.

``omni benchmark run --bench B --models models.yaml --out O``. Each entry of ``models.yaml``
is one row of the tables::

    reference: ours            # the model every other one is tested against (default: first)
    models:
      - name: ours             # a checkpoint our sampler runs (omni generate)
        checkpoint: runs/stage3/checkpoints/step-0040000   # or dreamid-omni / ovi (weights)
        generate: {flavor: dreamid-omni, steps: 50, weights: /data/weights, dtype: bfloat16}
      - name: Ovi (ours, run)  # any other system's videos, already made
        predictions: /data/ovi_idbench
        pattern: "{set}/{case}.mp4"      # how its files are named (default {instance_id}.mp4)
      - name: copy-paste       # a baseline built here (benchmark/baselines.py)
        baseline: copy_paste

Paths are relative to the YAML file. ``pattern`` is the **rename rule** for a folder made by
another tool: ``{instance_id}`` is ours (``<set>_<case>``, what the released inference writes
too), ``{set}`` and ``{case}`` its two halves (``oneip``, ``12``); the comparison links each
instance's file to ``O/predictions/<name>/<instance_id>.mp4`` (a sibling ``.wav`` is taken
along). A missing file is a missing prediction: counted, never averaged.

What is missing is made: a checkpoint entry is sampled with :func:`omni_model.generate.generate`
into ``O/predictions/<name>/`` (a rerun keeps videos made with the same checkpoint and
settings; a changed checkpoint regenerates), a baseline is built. Then every model is scored in
one evaluation job (:func:`evaluation.runner.score_models`: each metric set up once, results
cached by content in ``O/eval`` or the folder ``cache`` names, e.g. an ``omni eval`` output of
the same predictions), and the comparison writes:

- ``results.parquet`` (``eval_results``, every model), ``turns.parquet`` (``eval_turns``: WER
  and T-Sim per speaker turn of multi-person instances), ``errors.parquet``;
- ``cells.parquet`` (every table cell: mean, 95% bootstrap interval, n, the paired test's
  p-value against the reference model) and ``pairs.csv`` (every pair of models, every cell);
- ``tables/<view>.md|.csv|.tex`` for Tables 2-4 (per task), the multi-person view (Table 5's
  columns) and the ablation view (Table 6's columns), ``tables/speakers.md`` (per speaker);
  ``tables.md`` all of them; the paper's published rows below the measured ones with
  ``--published``, always marked;
- ``summary.json`` (the job summary: models, generation, scoring, timing) and
  ``report/index.html`` (:mod:`benchmark.report`).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation import tables
from evaluation.runner import Scores, run_note, score_models
from evaluation.uncertainty import bootstrap_mean
from omni_core.errors import ConfigError, OmniError
from omni_core.jobs import JobSummary, provenance
from omni_core.manifests import BENCH_INSTANCES, EVAL_RESULTS, EVAL_TURNS, write_manifest

__all__ = ["Comparison", "ModelEntry", "load_models", "run_comparison"]

JOB = "benchmark"
KINDS = ("predictions", "checkpoint", "baseline")
#: ``checkpoint: random-init``: the flavor's seeded random weights (an untrained model)
RANDOM_INIT = "random-init"
DEFAULT_PATTERN = "{instance_id}.mp4"


@dataclass
class ModelEntry:
    name: str
    predictions: str | None = None  # a folder of another system's videos
    pattern: str = DEFAULT_PATTERN  # the rename rule of that folder
    checkpoint: str | None = None  # sampled by omni generate
    generate: dict[str, Any] = field(default_factory=dict)  # GenerateConfig values
    baseline: str | None = None  # built here: copy_paste

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)


def load_models(path: str | os.PathLike[str]) -> tuple[list[ModelEntry], str | None]:
    """The entries of a ``models.yaml`` (paths made absolute against its folder) and the
    reference model's name (None: the first)."""
    from omni_core.config import from_dict, read_yaml

    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) \
            or not data["models"]:
        raise ConfigError(f"{path}: expected 'models:' with a list of entries")
    unknown = set(data) - {"models", "reference"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (models, "
                          f"reference)")
    entries = []
    for k, raw in enumerate(data["models"]):
        where = f"{path.name}: models[{k}]"
        e = from_dict(ModelEntry, raw, where=where)
        if not str(e.name).strip() or "/" in e.name:
            raise ConfigError(f"{where}: a name is needed, without '/'")
        kinds = [kind for kind in KINDS if getattr(e, kind) is not None]
        if len(kinds) != 1:
            raise ConfigError(f"{where} ({e.name}): give exactly one of predictions, "
                              f"checkpoint, baseline (got {', '.join(kinds) or 'none'})")
        if e.generate and e.kind != "checkpoint":
            raise ConfigError(f"{where} ({e.name}): 'generate' goes with a checkpoint")
        if e.predictions is not None:
            e.predictions = str((path.parent / e.predictions).resolve())
            _check_pattern(e.pattern, where)
        if e.checkpoint is not None and e.checkpoint != RANDOM_INIT \
                and _looks_like_path(e.checkpoint):
            e.checkpoint = str((path.parent / e.checkpoint).resolve())
        if e.baseline is not None:
            from .baselines import BASELINES

            if e.baseline not in BASELINES:
                raise ConfigError(f"{where} ({e.name}): unknown baseline {e.baseline!r}; "
                                  f"one of {', '.join(BASELINES)}")
        entries.append(e)
    names = [e.name for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: model name(s) used twice: {', '.join(dup)}")
    reference = data.get("reference")
    if reference is not None and reference not in names:
        raise ConfigError(f"{path}: reference {reference!r} is not one of the models "
                          f"({', '.join(names)})")
    return entries, reference


def _looks_like_path(s: str) -> bool:
    return "/" in s or s.endswith(".safetensors") or s.startswith(".")


def _check_pattern(pattern: str, where: str) -> None:
    fields = set(re.findall(r"{(\w*)}", pattern))
    if not fields or fields - {"instance_id", "set", "case"} or not pattern.endswith(".mp4"):
        raise ConfigError(f"{where}: pattern {pattern!r}: use {{instance_id}} or {{set}} and "
                          f"{{case}}, ending in .mp4")


def source_name(pattern: str, instance_id: str) -> str:
    """The file an instance's prediction has in a folder named by ``pattern``."""
    set_name, _, case = instance_id.partition("_")
    return pattern.format(instance_id=instance_id, set=set_name, case=case)


@dataclass
class Comparison:
    out: Path
    scores: Scores
    tables: list[tables.Table]
    summary: dict
    markdown: str


def run_comparison(
    bench: str | os.PathLike[str],
    models: list[ModelEntry],
    out: str | os.PathLike[str],
    *,
    reference: str | None = None,
    metrics: list[str] | None = None,
    lite: bool = False,
    weights: str = "debug",
    device: str = "cpu",
    with_published: bool = False,
    n_boot: int = tables.N_BOOT,
    seed: int = 0,
    correction: str = "none",
    cache: str | os.PathLike[str] | None = None,
    report: bool = True,
    progress: bool = True,
    config: dict | None = None,
) -> Comparison:
    """Make what is missing, score every model, write the tables and the report to ``out``."""
    from evaluation.registry import load_builtin, paper_metrics, with_lite

    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    instances, import_errors = bench_instances(bench)
    if instances.empty:
        raise OmniError(f"{bench}: no instance could be imported")
    write_manifest(instances, BENCH_INSTANCES, out / "instances.parquet")
    load_builtin()
    names = list(metrics) if metrics else paper_metrics()
    if lite:
        names = with_lite(names)

    made: dict[str, dict] = {}
    preds: dict[str, Path] = {}
    for e in models:
        folder = out / "predictions" / e.name
        preds[e.name] = folder
        if e.kind == "predictions":
            made[e.name] = link_predictions(instances, Path(e.predictions), e.pattern, folder)
        elif e.kind == "checkpoint":
            made[e.name] = _generate(e, out / "instances.parquet", folder, device, progress)
        else:
            from .baselines import build_baseline

            made[e.name] = build_baseline(e.baseline, instances, folder)
        if progress:
            print(f"{e.name}: {_made_line(e, made[e.name])}", flush=True)

    # the scores' cache: results are keyed by the content of prediction and references, so
    # an omni eval folder or another comparison can lend theirs
    sc = score_models(instances, preds, Path(cache) if cache else out / "eval", names,
                      weights=weights, device=device, progress=progress)
    order = [e.name for e in models]
    reference = reference or order[0]
    outputs = sc.outputs
    views = [v for v in tables.VIEWS.values() if v.task in set(instances.task)]
    pub = None
    if with_published:
        from .published import published

        pub = published()
    built = tables.build_views(sc.results, outputs, order, views=views, reference=reference,
                               published=pub, n_boot=n_boot, seed=seed,
                               correction=correction)
    write_manifest(sc.results, EVAL_RESULTS, out / "results.parquet")
    write_manifest(sc.turns, EVAL_TURNS, out / "turns.parquet")
    errors = pd.concat([import_errors, sc.errors], ignore_index=True) if len(import_errors) \
        else sc.errors
    write_manifest(errors, "errors", out / "errors.parquet")
    cells_frame(built).to_parquet(out / "cells.parquet", index=False)
    tables.pairwise(sc.results, outputs, order, views=views, n_boot=n_boot, seed=seed) \
        .to_csv(out / "pairs.csv", index=False)
    tdir = out / "tables"
    tdir.mkdir(exist_ok=True)
    for t in built:
        (tdir / f"{t.view.name}.md").write_text(tables.markdown([t], outputs))
        (tdir / f"{t.view.name}.csv").write_text(tables.to_csv([t], outputs))
        (tdir / f"{t.view.name}.tex").write_text(tables.latex([t], outputs))
    speakers = speaker_table(sc.turns, outputs, order, n_boot=n_boot, seed=seed)
    (tdir / "speakers.md").write_text(speakers)
    md = tables.markdown(built, outputs) + ("\n### Per speaker (multi-person instances)\n\n"
                                            + speakers if speakers.strip() else "")
    (out / "tables.md").write_text(md)

    debug = weights in ("debug", "random") and any(m.spec.is_paper for m in sc.metrics)
    lite_names = {m.spec.name: m.spec.lite_for for m in sc.metrics if not m.spec.is_paper}
    summary = JobSummary.build(
        JOB, str(out), total=len(instances) * len(models), skipped=0, stages=sc.stages,
        errors=errors, counts={"results": len(sc.results), "models": len(models),
                               "instances": len(instances)},
        wall_s=time.perf_counter() - t0, result_key=sc.key,
        details={
            "models": [{"name": e.name, "kind": e.kind, "predictions": str(preds[e.name]),
                        "reference": e.name == reference, "source": _source(e),
                        "made": made[e.name],
                        "missing_predictions": len(sc.missing[e.name])} for e in models],
            "reference_model": reference,
            "instances": int(len(instances)),
            "import_errors": int(len(import_errors)),
            "views": {t.view.name: t.view.title for t in built},
            "outputs": {o.name: {"label": o.label, "direction": o.direction,
                                 "scale": o.scale, "split": o.split, "caveat": o.caveat}
                        for o in outputs},
            "metrics": {m.spec.name: {**m.describe(), **m.spec.protocol} for m in sc.metrics},
            "published": with_published,
            "debug_weights": debug,
            "note": run_note(weights if debug else None, lite_names),
            "missing_predictions": sc.missing,
            "unexpected_predictions": {k: v[:20] for k, v in sc.unexpected.items() if v},
            "uncertainty": {"n_boot": n_boot, "seed": seed, "level": tables.LEVEL,
                            "alpha": tables.ALPHA, "correction": correction,
                            "test": "paired sign-flip permutation vs the reference model "
                            "(exact up to 13 instances)", "interval": "percentile bootstrap "
                            "over instances, resampled within the S/M split"},
            "decode_s": round(sc.decode_s, 3)},
        provenance=provenance(config or {}, weights=weights, inputs=[str(bench)],
                              checkpoints=sc.checkpoints))
    from omni_core.storage import RunFolder

    summary.write(RunFolder(out))
    result = Comparison(out, sc, built, summary.to_json(), md)
    if report:
        from .report import write_report

        write_report(out)
    return result


def bench_instances(bench: str | os.PathLike[str]) -> tuple[pd.DataFrame, list]:
    """A benchmark's instances (a released-layout folder or a ``bench_instances`` manifest)
    with every reference path absolute, and the import's errors
    (:func:`benchmark.released.load_bench`)."""
    from .released import load_bench

    instances, errors = load_bench(bench)
    return absolute_refs(instances, Path(bench)), errors


def absolute_refs(instances: pd.DataFrame, bench: Path) -> pd.DataFrame:
    """Reference paths made absolute: a manifest's relative paths are relative to its folder,
    an imported layout's to the working directory (the import joins them to ``bench``)."""
    root = (bench.parent if bench.is_file() else Path.cwd()).resolve()

    def fix(p):
        return None if p is None or (isinstance(p, float) and math.isnan(p)) \
            else str((root / p).resolve())
    df = instances.copy()
    df["image_refs"] = [[fix(p) for p in ps] for ps in df.image_refs]
    df["audio_refs"] = [[fix(p) for p in ps] for ps in df.audio_refs]
    df["source_video"] = [fix(p) for p in df.source_video]
    df["driving_audio"] = [fix(p) for p in df.driving_audio]
    return df


def link_predictions(instances: pd.DataFrame, source: Path, pattern: str,
                     folder: Path) -> dict:
    """``folder/<instance_id>.mp4`` (and ``.wav``) linked to the files ``pattern`` names in
    ``source``; stale links of earlier runs removed. {found, missing}."""
    if not source.is_dir():
        raise OmniError(f"{source}: predictions folder not found")
    folder.mkdir(parents=True, exist_ok=True)
    found = 0
    for iid in instances.instance_id:
        src = source / source_name(pattern, iid)
        for ext, s in ((".mp4", src), (".wav", src.with_suffix(".wav"))):
            dest = folder / f"{iid}{ext}"
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            if s.is_file():
                dest.symlink_to(s.resolve())
                found += ext == ".mp4"
    return {"found": found, "missing": int(len(instances) - found), "source": str(source),
            "pattern": pattern}


def _generate(e: ModelEntry, instances: Path, folder: Path, device: str,
              progress: bool) -> dict:
    from omni_core.config import from_dict
    from omni_model.generate import GenerateConfig, generate

    values = {"device": device, **e.generate,
              "checkpoint": None if e.checkpoint == RANDOM_INIT else e.checkpoint}
    cfg = from_dict(GenerateConfig, values, where=f"{e.name}: generate")
    s = generate(instances, folder, cfg, progress=progress)
    return {"written": int(s.counts.get("videos", 0)), "kept": int(s.items["skipped"]),
            "failed": int(s.items["failed"]), "checkpoint": e.checkpoint}


def _made_line(e: ModelEntry, made: dict) -> str:
    if e.kind == "predictions":
        return (f"{made['found']} predictions linked from {made['source']} "
                f"({made['missing']} missing)")
    if e.kind == "checkpoint":
        return (f"{made['written']} videos generated, {made['kept']} kept from an earlier "
                f"run, {made['failed']} failed (checkpoint {e.checkpoint})")
    return f"baseline {e.baseline}: {made['written']} built, {made['kept']} kept"


def _source(e: ModelEntry) -> str:
    return {"predictions": lambda: f"{e.predictions} ({e.pattern})",
            "checkpoint": lambda: str(e.checkpoint),
            "baseline": lambda: f"baseline {e.baseline}"}[e.kind]()


def cells_frame(built: list[tables.Table]) -> pd.DataFrame:
    """Every table cell, one row each (unscaled values; ``text`` as the tables print it)."""
    rows = []
    for t in built:
        for r in t.rows:
            for o in t.outputs:
                for part, c in r.cells.get(o.name, {}).items():
                    rows.append({"view": t.view.name, "title": t.view.title, "model": r.model,
                                 "published": r.published, "metric": o.name,
                                 "split": part or t.view.split, "mean": c.mean,
                                 "low": c.low, "high": c.high, "n": c.n,
                                 "p_value": c.p_value, "significant": bool(c.mark),
                                 "mark": c.mark,
                                 "text": c.text(o.scale, interval=False) + c.mark})
    return pd.DataFrame(rows, columns=["view", "title", "model", "published", "metric", "split",
                                       "mean", "low", "high", "n", "p_value", "significant",
                                       "mark", "text"])


def speaker_table(turns: pd.DataFrame, outputs: list, models: list[str], *,
                  n_boot: int = tables.N_BOOT, seed: int = 0) -> str:
    """Markdown: per metric scored per turn, one row per model, a column per speaker slot
    (``<sub1>``, ...): the mean over that speaker's turns with its bootstrap interval (turns
    resampled) and n turns. Empty without multi-person turns."""
    if turns.empty:
        return ""
    labels = {o.name: o for o in outputs}
    blocks = []
    for metric in [o.name for o in tables.ordered(outputs) if o.name in set(turns.metric)]:
        sel = turns[(turns.metric == metric) & turns.value.notna()]
        speakers = sorted(set(sel.speaker), key=_speaker_rank)
        o = labels[metric]
        head = " | ".join(speakers)
        lines = [f"#### {o.label}{tables.DAGGER if o.caveat else ''} per speaker turn "
                 f"{tables.ARROW[o.direction]}", "", f"| method | {head} | all turns |",
                 f"|---|{'---|' * (len(speakers) + 1)}"]
        for m in models:
            mine = sel[sel.model == m]
            cells = []
            for spk in [*speakers, None]:
                v = mine.value if spk is None else mine[mine.speaker == spk].value
                iv = bootstrap_mean(v.to_numpy(dtype=np.float64), n_boot=n_boot, seed=seed)
                cells.append(tables.Cell(iv.mean, iv.low, iv.high, iv.n).text(o.scale)
                             + (f" n={iv.n}" if iv.n else ""))
            lines.append(f"| {m} | {' | '.join(cells)} |")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _speaker_rank(s: str) -> tuple:
    m = re.fullmatch(r"<sub(\d+)>", s)
    return (0, int(m.group(1))) if m else (1, s)
