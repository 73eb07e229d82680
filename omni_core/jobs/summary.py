"""One summary for every job: ``OUT/summary.json`` and the closing table on the console.

Every job of the suite (``inpair``, ``crosspair``, ``latents``, ``generate``, ``eval``) ends
with a :class:`JobSummary` of the same shape:

``job``, ``out``; ``items`` (``total`` given, ``done`` in this run, ``skipped`` because an
earlier run finished them with the same result key, ``failed``); ``stages`` (per stage: items
``in`` / ``out`` / ``failed``, ``compute_s`` = the sum of its items' step times, ``setup_s`` =
worker start-up and model loading, ``actors``; and the same per ``steps``);
``errors_by_stage`` (error rows per step); ``counts`` (rows per output table); ``timing``
(``wall_s``, ``compute_s``, ``setup_s``, each counted once); ``result_key``; ``details``
(what only this job has); ``provenance`` (:mod:`omni_core.jobs.provenance`). Credentials
in any URL of it are redacted when it is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from omni_core.storage import RunFolder
from omni_core.urls import redact

KEYS = ("job", "out", "items", "stages", "errors_by_stage", "counts", "timing",
        "result_key", "details", "provenance")


class StageTally:
    """The ``stages`` of a summary, added up one item record at a time (``{"steps": {step:
    seconds}, "failed": step or None}``, :meth:`WorkItem.stats`): a job's driver streams its
    records through it and holds none of them.

    An item reached a step when it has time booked there, and a stage when it reached one of
    its steps; it failed in the step its ``failed`` names.
    """

    def __init__(self, stages: Sequence[tuple[str, Sequence[str]]]) -> None:
        self.stages = [(st, tuple(steps)) for st, steps in stages]
        self.steps = {s: [0, 0, 0.0] for _, steps in self.stages for s in steps}
        self.reached = {st: [0, 0] for st, _ in self.stages}

    def add(self, rec: Mapping[str, Any]) -> None:
        steps, failed = rec["steps"], rec.get("failed")
        for step, seconds in steps.items():
            if step in self.steps:
                self.steps[step][0] += 1
                self.steps[step][2] += float(seconds)
        if failed in self.steps:
            self.steps[failed][1] += 1
        for st, names in self.stages:
            if any(s in steps for s in names):
                self.reached[st][0] += 1
            if failed in names:
                self.reached[st][1] += 1

    def rows(self, *, setup: Mapping[str, float] = {}, actors: Mapping[str, int] = {},
             override: Mapping[str, Mapping[str, int]] = {}) -> list[dict[str, Any]]:
        """The stage rows; ``override`` sets ``in``/``out`` of a stage whose items change
        (one video in, its clips out)."""
        rows = []
        for stage, names in self.stages:
            step_rows = []
            for step in names:
                reached, failed, seconds = self.steps[step]
                step_rows.append({"step": step, "in": reached, "out": reached - failed,
                                  "failed": failed, "seconds": round(seconds, 3)})
            reached, failed = self.reached[stage]
            row = {"stage": stage, "in": reached, "out": reached - failed, "failed": failed,
                   "compute_s": round(sum(s["seconds"] for s in step_rows), 3),
                   "setup_s": round(float(setup.get(stage, 0.0)), 3),
                   "actors": int(actors.get(stage, 0)), "steps": step_rows}
            row.update(override.get(stage, {}))
            rows.append(row)
        return rows


def stage_rows(stages: Sequence[tuple[str, Sequence[str]]],
               records: Iterable[Mapping[str, Any]], *, setup: Mapping[str, float] = {},
               actors: Mapping[str, int] = {},
               override: Mapping[str, Mapping[str, int]] = {}) -> list[dict[str, Any]]:
    """The ``stages`` of a summary from the items' records, each item counted once
    (:class:`StageTally` over ``records``)."""
    tally = StageTally(stages)
    for r in records:
        tally.add(r)
    return tally.rows(setup=setup, actors=actors, override=override)


def driver_stage(name: str, n_in: int, n_out: int, seconds: float,
                 failed: int = 0) -> dict[str, Any]:
    """The row of a stage the driver runs itself in one go (e.g. retrieval over every
    identity): no actors, no setup, one step of the same name."""
    step = {"step": name, "in": int(n_in), "out": int(n_out), "failed": int(failed),
            "seconds": round(float(seconds), 3)}
    return {"stage": name, "in": int(n_in), "out": int(n_out), "failed": int(failed),
            "compute_s": step["seconds"], "setup_s": 0.0, "actors": 0, "steps": [step]}


@dataclass
class JobSummary:
    job: str
    out: str
    items: dict[str, int]
    stages: list[dict[str, Any]]
    errors_by_stage: dict[str, int]
    counts: dict[str, int]
    timing: dict[str, float]
    result_key: str
    details: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: job-specific lines for the console (not written; the details hold the figures)
    notes: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def build(cls, job: str, out: str, *, total: int, skipped: int,
              stages: list[dict[str, Any]], errors: Any, counts: Mapping[str, int],
              wall_s: float, result_key: str, details: Mapping[str, Any] | None = None,
              provenance: Mapping[str, Any] | None = None, failed: int | None = None,
              notes: Sequence[str] = ()) -> JobSummary:
        """Fill the derived fields: errors per step from the errors table (a DataFrame with
        ``item`` and ``stage``), failed items (distinct items with an error row unless
        given), timing from the stages."""
        by_stage = ({str(k): int(v) for k, v in errors.groupby("stage").size().items()}
                    if len(errors) else {})
        n_failed = failed if failed is not None else (int(errors["item"].nunique())
                                                      if len(errors) else 0)
        compute = sum(float(s["compute_s"]) for s in stages)
        setup = sum(float(s["setup_s"]) for s in stages)
        return cls(job=job, out=out,
                   items={"total": int(total), "done": int(total - skipped),
                          "skipped": int(skipped), "failed": n_failed},
                   stages=stages, errors_by_stage=dict(sorted(by_stage.items())),
                   counts={k: int(v) for k, v in counts.items()},
                   timing={"wall_s": round(wall_s, 3), "compute_s": round(compute, 3),
                           "setup_s": round(setup, 3)},
                   result_key=result_key, details=dict(details or {}),
                   provenance=dict(provenance or {}), notes=list(notes))

    # -- shapes

    def to_json(self) -> dict[str, Any]:
        """The summary.json document; every URL in it redacted (an endpoint's password, a
        signed query: :func:`omni_core.urls.redact`)."""
        d = asdict(self)
        d.pop("notes")
        return redact({k: d[k] for k in KEYS})

    def write(self, folder: RunFolder) -> str:
        """``summary.json`` in the output (published when the output is remote)."""
        return folder.write_text("summary.json", json.dumps(self.to_json(), indent=2,
                                                            default=str) + "\n")

    def step_rows(self) -> dict[str, dict[str, Any]]:
        """Every step of every stage, in order: in / out / failed / seconds, the stage it
        belongs to, and items per compute second (benchmarks report these)."""
        return {st["step"]: {**st, "stage": s["stage"],
                             "items_per_s": round(st["in"] / st["seconds"], 3)
                             if st["seconds"] else None}
                for s in self.stages for st in s["steps"]}

    @property
    def setup_by_stage(self) -> dict[str, float]:
        """Setup seconds of the stages that started actors (or models) in this run."""
        return {s["stage"]: s["setup_s"] for s in self.stages if s["setup_s"]}

    # -- the console

    @property
    def wall_over_compute(self) -> float | None:
        busy = self.timing["compute_s"] + self.timing["setup_s"]
        return self.timing["wall_s"] / busy if busy > 0 else None

    def lines(self) -> list[str]:
        """The closing table every job prints (URLs redacted)."""
        it, t = self.items, self.timing
        out = [f"{self.job}: {it['total']} items ({it['done']} this run, {it['skipped']} "
               f"finished by an earlier run, {it['failed']} failed), wall {t['wall_s']:.1f} s, "
               f"compute {t['compute_s']:.1f} s, setup {t['setup_s']:.1f} s"]
        if self.stages:
            out.append(f"  {'stage':<14}{'in':>7}{'out':>7}{'failed':>8}{'compute s':>11}"
                       f"{'setup s':>9}{'actors':>8}")
            for s in self.stages:
                out.append(f"  {s['stage']:<14}{s['in']:>7}{s['out']:>7}{s['failed']:>8}"
                           f"{s['compute_s']:>11.1f}{s['setup_s']:>9.1f}{s['actors']:>8}")
                if len(s["steps"]) > 1:
                    for st in s["steps"]:
                        out.append(f"    {st['step']:<12}{st['in']:>7}{st['out']:>7}"
                                   f"{st['failed']:>8}{st['seconds']:>11.1f}")
        if self.errors_by_stage:
            out.append("  errors by step: " + ", ".join(
                f"{k} {v}" for k, v in self.errors_by_stage.items()))
        if self.counts:
            out.append("  rows: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        out += [f"  {n}" for n in self.notes]
        ratio = self.wall_over_compute
        if ratio is not None and it["done"]:
            out.append(f"  wall / (compute + setup) = {ratio:.2f}")
        out.append(f"  summary: {self.out.rstrip('/')}/summary.json")
        return [redact(line) for line in out]


def summarize_items(job: Any, items: Sequence[Any], stages: Sequence[Any], setup: Any, *,
                    total: int, skipped: int, counts: Mapping[str, int], wall_s: float,
                    details: Mapping[str, Any], config: Mapping[str, Any], weights: Any,
                    inputs: Sequence[str], checkpoints: Sequence[Mapping[str, Any]] = (),
                    notes: Sequence[str] = ()) -> JobSummary:
    """The summary of a job whose items came back from the runner (:class:`WorkItem` s that
    carry their error rows and step times): ``OUT/errors.parquet`` and ``OUT/summary.json``
    are written; the stage table comes from ``stages`` (Stage classes) and ``setup``
    (:class:`SetupRecord`)."""
    from omni_core.manifests import errors_frame, write_manifest

    from .provenance import provenance

    errors = errors_frame([e for i in items for e in i.tables.get("errors", [])])
    write_manifest(errors, "errors", job.out.local("errors.parquet", fetch=False))
    job.out.publish("errors.parquet")
    summary = JobSummary.build(
        job.job, job.out.out, total=total, skipped=skipped,
        stages=stage_rows([(s.name, s.step_names()) for s in stages],
                          [i.stats() for i in items], setup=setup.seconds,
                          actors=setup.actors),
        errors=errors, counts={**counts, "errors": len(errors)}, wall_s=wall_s,
        result_key=job.key, details=details,
        provenance=provenance(config, weights=weights, inputs=inputs,
                              checkpoints=[*setup.checkpoints, *checkpoints]),
        notes=[*notes, *(f"error {e.item}: {e.reason}" for e in errors.head(20).itertuples())])
    summary.write(job.out)
    return summary


def read_summary(folder: RunFolder | str) -> dict[str, Any]:
    """A job's summary.json as a dict (``OmniError`` when absent or not a job summary)."""
    from omni_core.errors import OmniError
    from omni_core.storage import as_run_folder

    f = as_run_folder(folder)
    try:
        data = json.loads(f.read_text("summary.json"))
    except FileNotFoundError:
        raise OmniError(f"{f.out} has no summary.json: not a finished run") from None
    except json.JSONDecodeError as exc:
        raise OmniError(f"{f.out}/summary.json is unreadable: {exc}") from None
    if not isinstance(data, dict) or "job" not in data:
        raise OmniError(f"{f.out}/summary.json is not a job summary (no 'job' key)")
    return data
