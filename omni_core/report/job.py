"""The sections every job report has, read from the common ``summary.json`` of a batch job.

Every batch job of the suite (curation in-pair and cross-pair, latents, generate, eval) ends by
writing ``OUT/summary.json`` in one shape, so that one piece of code shows for any of them
where the time went, what failed and exactly what produced the output:

- ``job``, ``out``, ``items`` (total / done / skipped / failed), ``timing`` (wall, compute and
  setup seconds) and ``result_key``;
- ``stages``: each scheduled unit of the job (a Ray actor group) with its in / out / failed
  counts, compute and setup seconds and actors, and under it its ``steps`` (timed parts of the
  per-item work) with in / out / failed / seconds;
- ``errors_by_stage``: errors per stage *or step* name (an ``errors`` row names where the item
  failed, which may be a step);
- ``counts`` (rows per table), ``details`` (the job's own figures) and ``provenance`` (suite
  version, git commit, date, argv, config, weights and their checkpoints, inputs).

:class:`SummaryView` reads that shape defensively: a report is written after a long run, often
to find out what went wrong, so a summary that is missing, unreadable, of an older shape or
with a field of the wrong type gives a note on the page (:attr:`SummaryView.problem`) and
"none" in place of the figure, never an exception.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .charts import Bar, svg_bars
from .page import (
    NONE,
    Fact,
    Figure,
    Html,
    ReportOptions,
    code_list,
    esc,
    examples_html,
    facts,
    fmt_bytes,
    fmt_num,
    fmt_s,
    html_table,
    json_details,
    more_line,
    note,
    section,
)

#: the top-level keys without which a summary is not of the common job shape
REQUIRED_KEYS = ("job", "items", "stages", "timing")


def _num(value: object) -> float | int | None:
    """A finite number, or None for anything else (a string, a bool, NaN, a list...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _map(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Step:
    """A timed part of a stage's per-item work."""

    name: str
    n_in: float | int | None
    n_out: float | int | None
    failed: float | int | None
    seconds: float | int | None


@dataclass(frozen=True)
class Stage:
    """A scheduled unit of the job (a Ray actor group) and its steps, in order."""

    name: str
    n_in: float | int | None
    n_out: float | int | None
    failed: float | int | None
    compute_s: float | int | None
    setup_s: float | int | None
    actors: float | int | None
    steps: tuple[Step, ...] = ()


def _stage(entry: Mapping[str, Any]) -> Stage:
    steps = tuple(
        Step(str(s.get("step", "?")), _num(s.get("in")), _num(s.get("out")),
             _num(s.get("failed")), _num(s.get("seconds")))
        for s in (entry.get("steps") if isinstance(entry.get("steps"), list) else [])
        if isinstance(s, Mapping))
    return Stage(str(entry.get("stage", "?")), _num(entry.get("in")), _num(entry.get("out")),
                 _num(entry.get("failed")), _num(entry.get("compute_s")),
                 _num(entry.get("setup_s")), _num(entry.get("actors")), steps)


@dataclass(frozen=True)
class SummaryView:
    """A job's ``summary.json`` as read: the raw object and typed, never-failing views of it.

    ``problem`` says why the summary cannot be shown (absent, unreadable, not an object, an
    older shape); the views are then empty, so a report renders around it.
    """

    data: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def _get(self, key: str) -> Any:
        return self.data.get(key) if self.ok else None

    @property
    def job(self) -> str | None:
        return _str(self._get("job"))

    @property
    def out(self) -> str | None:
        return _str(self._get("out"))

    @property
    def result_key(self) -> str | None:
        return _str(self._get("result_key"))

    @property
    def items(self) -> dict[str, float | int | None]:
        """total / done / skipped / failed (None where absent or not a number)."""
        raw = _map(self._get("items"))
        return {k: _num(raw.get(k)) for k in ("total", "done", "skipped", "failed")}

    @property
    def timing(self) -> dict[str, float | int | None]:
        """wall_s / compute_s / setup_s (None where absent or not a number)."""
        raw = _map(self._get("timing"))
        return {k: _num(raw.get(k)) for k in ("wall_s", "compute_s", "setup_s")}

    @property
    def stages(self) -> list[Stage]:
        raw = self._get("stages")
        return [_stage(s) for s in raw if isinstance(s, Mapping)] if isinstance(raw, list) \
            else []

    @property
    def errors_by_stage(self) -> dict[str, int]:
        """Errors per stage or step name (entries that are not counts are dropped)."""
        return {str(k): int(v) for k, v in _map(self._get("errors_by_stage")).items()
                if _num(v) is not None}

    @property
    def counts(self) -> dict[str, int]:
        """Rows per table (entries that are not counts are dropped)."""
        return {str(k): int(v) for k, v in _map(self._get("counts")).items()
                if _num(v) is not None}

    @property
    def details(self) -> dict[str, Any]:
        """The job's own figures (``{}`` when absent): each report knows its keys."""
        return _map(self._get("details"))

    @property
    def provenance(self) -> dict[str, Any]:
        return _map(self._get("provenance"))

    def detail(self, key: str, kind: type | tuple[type, ...] = object, default: Any = None
               ) -> Any:
        """``details[key]`` if it is of ``kind``, else ``default``: a report reads a figure
        without checking the type of every value itself."""
        value = self.details.get(key)
        return value if value is not None and isinstance(value, kind) else default

    def order(self) -> list[str]:
        """Stage and step names in job order (each stage followed by its steps)."""
        names: list[str] = []
        for st in self.stages:
            names += [st.name] + [s.name for s in st.steps]
        return list(dict.fromkeys(names))

    def parent(self, name: str) -> str | None:
        """The stage a step belongs to (None for a stage or an unknown name)."""
        for st in self.stages:
            if any(s.name == name for s in st.steps) and st.name != name:
                return st.name
        return None


def parse_summary_view(data: object) -> SummaryView:
    """A decoded ``summary.json`` as a :class:`SummaryView` (with a problem if it is not an
    object of the common job shape)."""
    if not isinstance(data, Mapping):
        return SummaryView({}, "summary.json is not a JSON object")
    absent = [k for k in REQUIRED_KEYS if k not in data]
    if absent:
        return SummaryView(dict(data), (
            "summary.json has an older or unknown shape (no " + ", ".join(absent)
            + "): rerun the job with this version to see its stages, timing and provenance"))
    return SummaryView(dict(data), None)


def read_summary_view(path: str | os.PathLike[str]) -> SummaryView:
    """``summary.json`` at ``path`` (a file; a folder means its ``summary.json``), never
    raising: an absent or unreadable file is a :class:`SummaryView` with a problem."""
    p = Path(path)
    if p.is_dir():
        p = p / "summary.json"
    if not p.is_file():
        return SummaryView({}, "summary.json is absent")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return SummaryView({}, f"summary.json is unreadable: {exc}")
    return parse_summary_view(data)


# ----------------------------------------------------------------------------- header facts


def job_facts(summary: SummaryView, *, items: str = "items") -> list[Fact]:
    """The header facts every job has: job, items total / done / skipped / failed and wall
    time (``items``: what the job's items are called, e.g. "inputs")."""
    n = summary.items
    wall = summary.timing["wall_s"]

    def count(v: float | int | None) -> str:
        return "none" if v is None else fmt_num(v)

    return [("job", "job", summary.job or "none"),
            ("items", items, count(n["total"])),
            ("done", "done", count(n["done"])),
            ("skipped", "finished by an earlier run", count(n["skipped"])),
            ("failed", "failed", count(n["failed"])),
            ("wall", "wall time", f"{fmt_num(wall)} s" if wall is not None else "none")]


# ----------------------------------------------------------------------------- stages


def _cell(v: float | int | None) -> object:
    return Figure("—") if v is None else v


def _seconds(v: float | int | None) -> Figure:
    return Figure(fmt_s(v) if v is not None else "—")


def _sum(values: Sequence[float | int | None]) -> float | None:
    got = [v for v in values if v is not None]
    return float(sum(got)) if got else None


def stages_section(summary: SummaryView, *, testid: str = "stages", title: str = "Stages"
                   ) -> str:
    """The stages table (steps indented under their stage), wall vs compute vs setup, and a
    bar chart of seconds per step (a stage without steps is one bar)."""
    if not summary.ok:
        return section(testid, title, note(str(summary.problem), "summary-note"))
    stages = summary.stages
    if not stages:
        return section(testid, title, NONE)
    rows: list[tuple[object, ...]] = []
    attrs: list[str] = []
    bars: list[Bar] = []
    for st in stages:
        rows.append((st.name, _cell(st.n_in), _cell(st.n_out), _cell(st.failed),
                     _seconds(st.compute_s), _seconds(st.setup_s), _cell(st.actors)))
        attrs.append(f'class="stage" data-testid="stage-row" data-stage="{esc(st.name)}"')
        for s in st.steps:
            rows.append((s.name, _cell(s.n_in), _cell(s.n_out), _cell(s.failed),
                         _seconds(s.seconds), "", ""))
            attrs.append(f'class="step" data-testid="step-row" data-stage="{esc(st.name)}" '
                         f'data-step="{esc(s.name)}"')
            bars.append(Bar(f"{st.name} › {s.name}", s.seconds if s.seconds is not None
                            else math.nan, st.name))
        if not st.steps:
            bars.append(Bar(st.name, st.compute_s if st.compute_s is not None else math.nan,
                            st.name))
    compute = _sum([st.compute_s for st in stages])
    setup = _sum([st.setup_s for st in stages])
    rows.append(("all stages", "", "", _cell(_sum([st.failed for st in stages])),
                 _seconds(compute), _seconds(setup), _cell(_sum([st.actors for st in stages]))))
    attrs.append('class="total" data-testid="stages-total"')
    table = html_table(("stage / step", "in", "out", "failed", "compute s", "setup s",
                        "actors"), rows, row_attrs=attrs, testid="stages-table")
    return section(testid, title, timing_facts(summary) + table
                   + "<h3>Seconds per step</h3>"
                   + svg_bars(bars, "step-seconds", unit="s", fmt=fmt_s))


def timing_facts(summary: SummaryView) -> str:
    """Wall vs compute vs setup: how parallel the job ran (compute / wall) and how much of
    the actors' time went to starting up (setup) rather than to items."""
    t = summary.timing
    wall, compute, setup = t["wall_s"], t["compute_s"], t["setup_s"]
    if compute is None:
        compute = _sum([st.compute_s for st in summary.stages])
    if setup is None:
        setup = _sum([st.setup_s for st in summary.stages])
    par = (f"{fmt_num(compute / wall)} × wall" if compute is not None and wall
           else "n/a")
    share = (f"{100 * setup / (setup + compute):.0f}% of actor time"
             if setup is not None and compute is not None and setup + compute > 0 else "n/a")
    return facts([
        ("timing-wall", "wall", f"{fmt_s(wall)} s" if wall is not None else "none"),
        ("timing-compute", "compute (summed over actors)",
         f"{fmt_s(compute)} s ({par})" if compute is not None else "none"),
        ("timing-setup", "setup (actor start, model loading)",
         f"{fmt_s(setup)} s ({share})" if setup is not None else "none")])


# ----------------------------------------------------------------------------- errors


def errors_section(summary: SummaryView, errors: pd.DataFrame | None,
                   opts: ReportOptions | None = None, *, state: str = "ok",
                   testid: str = "errors", title: str = "Errors") -> str:
    """Errors per stage / step (a step under its stage's name) grouped by error type and
    reason with example items, then the error rows themselves up to ``opts.max_error_rows``.

    ``errors`` is the job's ``errors`` table (columns item, stage, error_type, reason, and
    optionally time); ``state`` says why it is None ("absent", "unreadable: ..."). Without
    rows the counts come from ``summary.errors_by_stage``; with both, a disagreement is named.
    """
    o = opts or ReportOptions()
    by_summary = summary.errors_by_stage
    order = summary.order()
    if errors is None:
        if not any(by_summary.values()):
            return section(testid, title, NONE)
        return section(testid, title, note(
            f"the errors table is {state}: counts from summary.json only", "errors-note")
            + _error_counts(by_summary, summary, order))
    if not len(errors):
        if not any(by_summary.values()):
            return section(testid, title, NONE)
        return section(testid, title, note(
            "the errors table is empty but summary.json counts errors", "errors-mismatch")
            + _error_counts(by_summary, summary, order))
    df = errors.copy()
    for col in ("item", "stage", "error_type", "reason"):
        if col not in df.columns:
            df[col] = None
    df["stage"] = df["stage"].where(df["stage"].notna(), "?").astype(str)
    counts = df.groupby("stage", sort=False).size().to_dict()
    names = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    parts = [f"<p>{len(df)} error(s) in {len(names)} stage(s) or step(s)</p>",
             _error_counts({n: int(counts[n]) for n in names}, summary, order)]
    differ = {k for k in set(by_summary) | set(counts)
              if by_summary.get(k, 0) != counts.get(k, 0)}
    if by_summary and differ:
        parts.append(note("summary.json counts differ from the errors table for "
                          + ", ".join(sorted(differ)) + ": "
                          + ", ".join(f"{k} {by_summary.get(k, 0)} vs {counts.get(k, 0)}"
                                      for k in sorted(differ)), "errors-mismatch"))
    for name in names:
        sub = df[df["stage"] == name]
        groups = sorted(sub.groupby(["error_type", "reason"], sort=False, dropna=False),
                        key=lambda g: (-len(g[1]), str(g[0])))
        rows = []
        for (etype, reason), g in groups[:o.max_reason_groups]:
            items = g["item"].tolist()
            rows.append((etype, reason, len(g), examples_html(items[:o.examples], len(items))))
        more = ""
        if len(groups) > o.max_reason_groups:
            rest = sum(len(g) for _, g in groups[o.max_reason_groups:])
            more = (f'<p class="more">and {len(groups) - o.max_reason_groups} more '
                    f"reason(s), {rest} error(s)</p>")
        parent = summary.parent(name)
        where = f"{parent} › {name}" if parent else name
        parts.append(
            f'<div data-testid="error-group" data-stage="{esc(name)}" data-count="{len(sub)}">'
            f"<h3>{esc(where)}: {len(sub)}</h3>"
            + html_table(("error type", "reason", "count", "items"), rows) + more + "</div>")
    shown = df.head(o.max_error_rows)
    cols = [c for c in ("item", "stage", "error_type", "reason", "time") if c in df.columns]
    parts.append("<h3>Error rows</h3>" + html_table(
        [c.replace("_", " ") for c in cols],
        [tuple(_plain(r[c]) for c in cols) for r in shown.to_dict("records")],
        row_attrs=["data-testid=\"error-row\""] * len(shown), testid="error-rows")
        + more_line(len(shown), len(df), "error rows", "error-rows-more"))
    return section(testid, title, "\n".join(parts))


def _plain(value: object) -> object:
    """A cell as text a table shows (a timestamp in ISO form)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _error_counts(counts: Mapping[str, int], summary: SummaryView, order: Sequence[str]) -> str:
    names = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    rows, attrs = [], []
    for n in names:
        parent = summary.parent(n)
        rows.append((f"{parent} › {n}" if parent else n, int(counts[n])))
        kind = "step" if parent else "stage"
        attrs.append(f'class="{kind}" data-testid="error-count" data-stage="{esc(n)}"'
                     + (f' data-parent="{esc(parent)}"' if parent else ""))
    return html_table(("stage / step", "errors"), rows, row_attrs=attrs,
                      testid="error-counts")


# ----------------------------------------------------------------------------- provenance


def _mtime(value: object) -> str:
    v = _num(value)
    return "—" if v is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(v))


def provenance_section(summary: SummaryView, opts: ReportOptions | None = None, *,
                       testid: str = "provenance", title: str = "Provenance") -> str:
    """What produced the output: suite version, git commit, date, command, weights (mode,
    folder, each checkpoint's file, size, time and digest), inputs, and the full config in a
    collapsed block; enough to tell two runs apart or to rerun one."""
    o = opts or ReportOptions()
    if not summary.ok:
        return section(testid, title, note(str(summary.problem), "summary-note"))
    p = summary.provenance
    if not p:
        return section(testid, title, note("summary.json has no provenance",
                                           "provenance-note"))
    argv = p.get("argv")
    command = (shlex.join(str(a) for a in argv) if isinstance(argv, list) and argv
               else "none")
    weights = _map(p.get("weights"))
    parts = [facts([
        ("suite-version", "suite version", p.get("suite_version") or "none"),
        ("git-commit", "git commit", p.get("git_commit") or "none"),
        ("date", "date", p.get("date") or "none"),
        ("python", "python", p.get("python") or "none"),
        ("host", "host", p.get("host") or "none"),
        ("command", "command", command),
        ("recorded-output", "output (as the job wrote it)", summary.out or "none"),
        ("result-key", "result key", summary.result_key or "none"),
        ("weights-mode", "weights mode", weights.get("mode") or "none"),
        ("weights-folder", "weights folder", weights.get("folder") or "none")])]
    listed = weights.get("checkpoints")
    ckpts = [c for c in listed if isinstance(c, Mapping)] if isinstance(listed, list) else []
    parts.append("<h3>Checkpoints</h3>")
    if ckpts:
        rows, attrs = [], []
        for c in ckpts:
            sha = _str(c.get("sha256"))
            rows.append((c.get("entry") or "?", c.get("file") or "—", c.get("path") or "—",
                         fmt_bytes(_num(c.get("size"))), _mtime(c.get("mtime")),
                         Html(f'<code title="{esc(sha)}">{esc(sha[:16])}…</code>') if sha
                         else "not hashed"))
            attrs.append(f'data-testid="checkpoint-row" data-entry="{esc(c.get("entry"))}"')
        parts.append(html_table(("entry", "file", "path", "size", "modified", "sha256"),
                                rows, row_attrs=attrs, testid="checkpoints"))
    else:
        parts.append(NONE)
    inputs = p.get("inputs")
    inputs = [str(i) for i in inputs] if isinstance(inputs, list) else []
    parts.append(f"<h3>Inputs ({len(inputs)})</h3>" + code_list(inputs, o.max_list, "inputs"))
    if "config" in p:
        parts.append(json_details("config (JSON)", p.get("config"), "config"))
    else:
        parts.append(note("summary.json records no config", "config-note"))
    return section(testid, title, "\n".join(parts))
