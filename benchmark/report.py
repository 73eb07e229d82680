"""The HTML report of a benchmark comparison: one folder, ``O/report/``, that opens from disk.

:func:`write_report` reads a comparison folder (what ``omni benchmark run`` writes:
``instances.parquet``, ``results.parquet``, ``turns.parquet``, ``cells.parquet``,
``tables/``, ``summary.json``) and writes, with the report kit (:mod:`omni_core.report`)::

    O/report/index.html                 tables, worst instances per metric, gallery, the job
    O/report/instances/<id>.html        one page per instance
    O/report/media/refs/<id>/...        reference photos (JPEG thumbnails), voices, source
                                        video / driving audio
    O/report/media/pred/<model>/<id>.mp4   each model's video (hard links when possible)
    O/report/tables/<view>.md|csv|tex   the paper-style tables as the comparison wrote them

Everything is linked relatively and the pages' Content-Security-Policy admits only their own
folder's files, inline styles and the kit's scripts (by hash): the folder can be moved, zipped
or mailed, and nothing is fetched from the network. Videos are files, not data URIs (a page of
three models' videos would otherwise weigh as much as the videos, every time it is opened).

The index page:

- ``header``: the models (kind, predictions found, the reference), instances per task and
  split, the comparison's caveat (``details.note``), what could not be read;
- ``tables``: one table per view (Tables 2-6) from ``cells.parquet``: each measured cell is
  the figure the Markdown table prints (``text``) over its 95% bootstrap interval (``low``,
  ``high`` in the units of the results, times the output's scale as the figure is, unless
  the figure shows the mean unscaled), ``n`` and the p-value on hover, a star where the
  paired test against the reference model is significant, the best measured value in bold;
  published rows (numbers copied from the paper) come after the measured ones, hatched and
  badged "published", without interval; a lite backend's column carries a dagger and its
  caveat;
- ``filters``: task and single/multi-person drop-downs (the kit's filter script; the choice is
  in the address, ``index.html#task=r2av&split=M``), applied to the two sections below;
- ``worst``: per metric, the instances worst first: ordered by the mean over the models that
  scored the instance (the lowest first for a higher-is-better metric), instances nobody
  scored last;
- ``gallery``: a card per instance (reference photos, task, split, missing predictions)
  linking to its page;
- ``stages``, ``errors``, ``provenance``: the kit's job sections from ``summary.json``.

An instance page: its reference photos and voices (players and waveforms), the source video
or driving audio of an editing / animation instance, the caption with each ``<S>...<E>``
span highlighted in its speaker's colour (and a table of who says what when), every model's
video side by side with sound, each showing its first frame until played (a missing
prediction is a box saying so, never a broken player), the metric values per model with the
instance's rank in each worst-first list, and per-speaker-turn values.

A table that is missing or unreadable never stops the report: its section says so.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from omni_core.captions import SPEECH_RE, SUBJECT_RE, CaptionError, StructuredCaption, parse_caption
from omni_core.errors import ManifestError
from omni_core.manifests import read_manifest
from omni_core.report import (
    FILTER_SCRIPT,
    MEDIA_SCRIPT,
    NONE,
    Figure,
    Filter,
    Html,
    ReportOptions,
    SummaryView,
    errors_section,
    esc,
    facts,
    filter_attrs,
    filter_bar,
    fmt_num,
    fmt_s,
    href,
    html_table,
    job_facts,
    json_details,
    linked_media,
    missing,
    missing_box,
    more_line,
    note,
    page,
    place_file,
    problems_list,
    provenance_section,
    read_summary_view,
    read_table,
    section,
    stages_section,
    waveform,
    write_html,
    write_poster,
    write_thumbnail,
)

__all__ = ["REPORT_DIR", "BenchReportOptions", "load_comparison", "write_report"]

REPORT_DIR = "report"
TASKS = {"r2av": "R2AV", "rv2av": "RV2AV", "ra2v": "RA2V"}
SPLITS = {"S": "single-person", "M": "multi-person"}
STATUS_TEXT = {"missing": "missing", "not_computed": "not computed", "error": "error"}
ARROW = {"higher": "↑", "lower": "↓"}
DAGGER = "†"
#: columns each table must have (cells' ``text`` may be absent: the mean is shown then)
COLUMNS = {
    "results": ("model", "instance_id", "metric", "value", "status"),
    "turns": ("model", "instance_id", "metric", "speaker", "turn", "start_s", "end_s",
              "value"),
    "cells": ("view", "model", "published", "metric", "split", "mean"),
}
#: the folders of the report this module writes; stale files in them are removed on a rerun
OWNED = ("instances", "media", "tables")


@dataclass(frozen=True)
class BenchReportOptions(ReportOptions):
    """The kit's limits and the benchmark report's own."""

    photo_px: int = 256  # longest side of a reference photo's thumbnail file
    video_px: int = 360  # width of a model's player on an instance page
    max_worst: int = 100  # instances listed per metric in the worst-first lists


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Model:
    """A compared model as ``details.models`` names it."""

    name: str
    kind: str
    predictions: Path | None  # the folder of <instance_id>.mp4
    reference: bool
    folder: str  # its folder under media/pred/

    def prediction(self, instance_id: str) -> Path | None:
        return None if self.predictions is None else self.predictions / f"{instance_id}.mp4"


@dataclass(frozen=True)
class Output:
    """A metric output as ``details.outputs`` describes it."""

    name: str
    label: str
    direction: str = "higher"
    scale: float = 1.0
    split: bool = False
    caveat: str = ""

    @property
    def header(self) -> str:
        """The column's label: a dagger for a lite backend, the arrow of its direction."""
        return f"{self.label}{DAGGER if self.caveat else ''} {ARROW.get(self.direction, '')}"

    def shown(self, value: object) -> float:
        """A per-instance value as the tables print it (times the output's scale)."""
        v = _float(value)
        return v * self.scale if math.isfinite(v) else math.nan


@dataclass
class Comparison:
    """A comparison folder as read: tables (None when absent or unreadable) and the summary's
    details, with what went wrong reading it."""

    out: Path
    summary: SummaryView
    instances: pd.DataFrame | None
    results: pd.DataFrame | None
    speakers: pd.DataFrame | None
    cells: pd.DataFrame | None
    errors: pd.DataFrame | None
    models: list[Model]
    reference: str | None
    outputs: dict[str, Output]
    note: str | None
    state: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _float(value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return v


def _read(path: Path, columns: Sequence[str]) -> tuple[pd.DataFrame | None, str]:
    """A Parquet table (a file or a folder of parts, stamped by the manifest writer or not)
    and its state; only the columns this report reads are checked."""
    if not path.exists():
        return None, "absent"
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        return None, f"unreadable: {exc}"
    lacking = [c for c in columns if c not in df.columns]
    if lacking:
        return None, f"unreadable: no column {', '.join(lacking)}"
    return df, "ok"


def _folders(names: Sequence[str]) -> dict[str, str]:
    """A folder name per model: its slug, with a digest of the name where two slugs meet."""
    base = {n: re.sub(r"[^a-z0-9]+", "-", n.lower()).strip("-") or "model" for n in names}
    clash = {b for b in base.values() if list(base.values()).count(b) > 1}
    return {n: f"{b}-{_digest(n)}" if b in clash else b for n, b in base.items()}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def file_name(instance_id: str) -> str:
    """An instance's file name stem in the report: the id itself when it is a plain name,
    else its letters and digits with a digest (stable, and distinct for distinct ids)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", instance_id):
        return instance_id
    return (re.sub(r"[^A-Za-z0-9._-]+", "-", instance_id).strip("-.")[:60] or "instance") \
        + "-" + _digest(instance_id)


def _models(summary: SummaryView, results: pd.DataFrame | None,
            problems: list[str]) -> tuple[list[Model], str | None]:
    raw = summary.detail("models", list, [])
    entries = [m for m in raw if isinstance(m, Mapping) and isinstance(m.get("name"), str)]
    if len(entries) < len(raw):
        problems.append("summary.json: details.models has entries without a name")
    reference = summary.detail("reference_model", str)
    if not entries and results is not None:
        entries = [{"name": str(n)} for n in dict.fromkeys(results["model"].astype(str))]
        if entries:
            problems.append("summary.json lists no models (details.models): models taken from "
                            "results.parquet, without their videos")
    names = [str(m["name"]) for m in entries]
    folders = _folders(names)
    models = []
    for m in entries:
        name = str(m["name"])
        pred = m.get("predictions")
        models.append(Model(name, str(m.get("kind") or "?"),
                            Path(pred) if isinstance(pred, str) and pred else None,
                            bool(m.get("reference")) or name == reference, folders[name]))
    if reference is None:
        reference = next((m.name for m in models if m.reference), None)
    return models, reference


def _outputs(summary: SummaryView, names: Sequence[str], problems: list[str]
             ) -> dict[str, Output]:
    raw = summary.detail("outputs", Mapping, {})
    out: dict[str, Output] = {}
    for name, spec in raw.items():
        if not isinstance(spec, Mapping):
            continue
        direction = spec.get("direction") if spec.get("direction") in ARROW else "higher"
        scale = _float(spec.get("scale", 1.0))
        out[str(name)] = Output(str(name), str(spec.get("label") or name), str(direction),
                                scale if math.isfinite(scale) else 1.0, bool(spec.get("split")),
                                str(spec.get("caveat") or ""))
    unknown = [n for n in dict.fromkeys(names) if n not in out]
    if unknown:
        problems.append("summary.json does not describe " + ", ".join(unknown)
                        + " (details.outputs): shown unscaled, as higher-is-better")
        out.update({n: Output(n, n) for n in unknown})
    return out


def load_comparison(out: str | os.PathLike[str]) -> Comparison:
    """The comparison folder ``out`` as a :class:`Comparison` (never raising for a missing or
    broken table: its state says why)."""
    root = Path(out)
    summary = read_summary_view(root / "summary.json")
    problems = [summary.problem] if summary.problem else []
    state: dict[str, str] = {}
    path = root / "instances.parquet"
    instances: pd.DataFrame | None = None
    if not path.exists():
        state["instances"] = "absent"
    else:
        try:
            instances = read_manifest(path, "bench_instances")
            state["instances"] = "ok"
        except (ManifestError, OSError, ValueError, pa.ArrowException) as exc:
            state["instances"] = f"unreadable: {exc}"
    tables: dict[str, pd.DataFrame | None] = {}
    for name, cols in COLUMNS.items():
        tables[name], state[name] = _read(root / f"{name}.parquet", cols)
    errors, state["errors"] = read_table(root, "errors")
    problems += [f"{t}.parquet: {s}" for t, s in state.items() if s.startswith("unreadable")]
    for t in ("instances", "results", "cells"):
        if state[t] == "absent":
            problems.append(f"{t}.parquet is absent")
    results = tables["results"]
    if results is not None:
        results = results.copy()
        for col in ("task", "split", "reason", "metric_version"):
            if col not in results.columns:
                results[col] = None
        results["instance_id"] = results["instance_id"].astype(str)
        results["model"] = results["model"].astype(str)
        results = results.drop_duplicates(["model", "instance_id", "metric"], keep="last")
    models, reference = _models(summary, results, problems)
    names: list[str] = []
    for df in (results, tables["cells"], tables["turns"]):
        if df is not None:
            names += [str(m) for m in df["metric"].dropna()]
    note_text = summary.detail("note", str)
    return Comparison(root, summary, instances, results, tables["turns"], tables["cells"],
                      errors, models, reference, _outputs(summary, names, problems), note_text,
                      state, problems)


# ----------------------------------------------------------------------------- the folder


class _Folder:
    """The report folder being written: every file put in it is remembered, so a rerun removes
    what the comparison no longer has."""

    def __init__(self, root: Path, opts: BenchReportOptions) -> None:
        self.root = root
        self.opts = opts
        self.kept: set[Path] = set()

    def place(self, src: str | os.PathLike[str] | None, rel: str) -> Path | None:
        """``src`` at ``rel`` (hard link or copy, the original suffix kept); None when ``src``
        is absent or cannot be read."""
        if src is None or missing(src) or not str(src):
            return None
        s = Path(src)
        dest = self.root / f"{rel}{s.suffix.lower()}"
        try:
            if not s.is_file():
                return None
            place_file(s, dest)
        except OSError:
            return None
        self.kept.add(dest)
        return dest

    def thumbnail(self, src: object, rel: str) -> Path | None:
        if src is None or missing(src) or not str(src):
            return None
        dest = self.root / f"{rel}.jpg"
        if not write_thumbnail(str(src), dest, self.opts.photo_px, self.opts.jpeg_quality):
            return None
        self.kept.add(dest)
        return dest

    def poster(self, video: Path | None, rel: str) -> Path | None:
        """The first frame of a video placed in the report, as ``rel.jpg``."""
        if video is None:
            return None
        dest = self.root / f"{rel}.jpg"
        if not write_poster(video, dest, self.opts.video_px, self.opts.jpeg_quality):
            return None
        self.kept.add(dest)
        return dest

    def write(self, rel: str, text: str) -> Path:
        path = write_html(self.root / rel, text)
        self.kept.add(path)
        return path

    def prune(self) -> None:
        """Remove files of the owned folders that this run did not write (and empty folders)."""
        for top in OWNED:
            base = self.root / top
            if not base.is_dir():
                continue
            for p in sorted(base.rglob("*"), key=lambda q: len(q.parts), reverse=True):
                if p.is_dir() and not p.is_symlink():
                    if not any(p.iterdir()):
                        p.rmdir()
                elif p not in self.kept:
                    p.unlink()


# ----------------------------------------------------------------------------- small pieces

STYLE = """
.badge{display:inline-block;font-size:11px;font-style:normal;padding:0 5px;margin-left:4px;
border-radius:3px;vertical-align:middle}.badge.pub{background:#fff0c8;color:#6b4a00;
border:1px dashed #b8901c}.badge.ref{background:#e3ecfb;color:#234;border:1px solid #9ab}
table.cmp td.cell .ci{display:block;font-size:11px;color:#777}table.cmp th.grp{text-align:center}
table.cmp td.best .v{font-weight:700}.sig{color:#b00000;font-weight:700;margin-left:2px}
tr.published td,tr.published th{font-style:italic;color:#6b5a2b;
background:repeating-linear-gradient(135deg,#fffaf0 0 6px,#fbf1d9 6px 12px)}
tr.sep td{background:#fbf1d9;color:#6b4a00;font-size:12px}
th.row{text-align:left;background:#fafafa;font-weight:600}
.status-missing,.status-error{color:#a00000}.status-not_computed{color:#888}
.gallery{display:flex;flex-wrap:wrap;gap:10px}a.inst{display:block;border:1px solid #ddd;
padding:6px;width:230px;color:inherit;text-decoration:none;font-size:12px;
overflow-wrap:anywhere}
a.inst:hover{border-color:#4a78b5}a.inst img{max-width:96px;max-height:96px;margin-right:4px}
a.inst .missing{font-size:11px}.videos{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.videos figure,.refs figure{margin:0;border:1px solid #ddd;padding:6px;font-size:12px}
.videos figure{width:372px;overflow-wrap:anywhere}.videos figure.reference{border-color:#4a78b5}
.refs{display:flex;flex-wrap:wrap;gap:12px}
.refs img{max-width:256px;max-height:256px;display:block}nav.pages a{margin-right:1.2em}
.caption{font-size:15px;line-height:1.8;background:#fcfcfc;border:1px solid #eee;padding:8px}
code.sub{padding:0 3px;border-radius:3px}mark.say{padding:1px 3px;border-radius:3px;color:#111}
.s0{background:#cfe0fa}.s1{background:#fcd9b6}.s2{background:#cdeed6}.s3{background:#e6d3f5}
.s4{background:#f7cfcf}.s5{background:#cbecf0}
"""


def _subject_index(subject: str | None) -> int:
    m = SUBJECT_RE.fullmatch(subject or "")
    return (int(m.group(1)) - 1) % 6 if m else 0


def _subject(subject: str) -> str:
    """A ``<subK>`` anchor as a coloured chip."""
    return (f'<code class="sub s{_subject_index(subject)}" data-subject="{esc(subject)}">'
            f"{esc(subject)}</code>")


def _with_subjects(text: str) -> str:
    """Escaped text with its ``<subK>`` anchors as chips."""
    out, pos = [], 0
    for m in SUBJECT_RE.finditer(text):
        out.append(esc(text[pos:m.start()]))
        out.append(_subject(m.group(0)))
        pos = m.end()
    return "".join(out) + esc(text[pos:])


def _span(start: float | None, end: float | None) -> str:
    if start is None or end is None or missing(start) or missing(end):
        return "—"
    return f"{fmt_s(start)}–{fmt_s(end)} s"


def _badges(model: Model | None = None, *, published: bool = False, reference: bool = False
            ) -> str:
    out = ""
    if published:
        out += '<span class="badge pub" data-testid="badge-published">published</span>'
    if reference or (model is not None and model.reference):
        out += '<span class="badge ref" data-testid="badge-reference">reference</span>'
    return out


def _status_cell(out: Output, row: Mapping[str, Any] | None) -> tuple[str, str]:
    """(cell HTML content, attributes) of one model's value of one instance and metric."""
    if row is None:
        return "—", 'data-status="absent"'
    status = str(row.get("status") or "?")
    reason = row.get("reason")
    title = f' title="{esc(reason)}"' if not missing(reason) and reason else ""
    attrs = f'data-status="{esc(status)}" class="num status-{esc(status)}"{title}'
    if status == "ok":
        v = out.shown(row.get("value"))
        return esc(fmt_num(v)), attrs + f' data-value="{"" if math.isnan(v) else v}"'
    return esc(STATUS_TEXT.get(status, status)), attrs


def _table(headers: Sequence[str], rows: Sequence[str], *, cls: str = "", testid: str = ""
           ) -> str:
    """A table of rows already built as ``<tr>`` HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    c = f' class="{esc(cls)}"' if cls else ""
    t = f' data-testid="{esc(testid)}"' if testid else ""
    return f"<table{c}{t}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _task_filters(instances: pd.DataFrame | None) -> list[Filter]:
    tasks = [t for t in TASKS if instances is not None and t in set(instances["task"])]
    splits = [s for s in SPLITS if instances is not None and s in set(instances["split"])]
    count = (lambda col, v: int((instances[col] == v).sum())) if instances is not None \
        else (lambda col, v: 0)
    return [Filter("task", "task", [(t, f"{TASKS[t]} ({count('task', t)})") for t in tasks]),
            Filter("split", "people", [(s, f"{SPLITS[s]} ({count('split', s)})")
                                       for s in splits])]


# ----------------------------------------------------------------------------- the tables


def _figure(row: Mapping[str, Any], out: Output) -> str:
    text = row.get("text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    return fmt_num(_float(row.get("mean")) * out.scale)


def _decimals(figure: str) -> int | None:
    """Decimals of the printed figure's first number (None when it has no number)."""
    m = re.search(r"-?\d+(?:\.(\d+))?", figure)
    return None if m is None else len(m.group(1) or "")


def _interval_factor(row: Mapping[str, Any], out: Output) -> float:
    """What ``low`` / ``high`` are multiplied by to be in the units of the printed figure:
    the output's scale, unless the printed figure shows the mean unscaled."""
    mean = _float(row.get("mean"))
    m = re.search(r"-?\d+(?:\.\d+)?", str(row.get("text") or ""))
    if out.scale == 1.0 or m is None or not math.isfinite(mean):
        return out.scale
    shown = float(m.group(0))
    return 1.0 if abs(shown - mean) < abs(shown - mean * out.scale) else out.scale


def _cell(row: Mapping[str, Any] | None, out: Output, reference: str | None, best: bool) -> str:
    if row is None:
        return '<td class="num none">—</td>'
    split = row.get("split")
    base = (f'data-testid="cell" data-metric="{esc(out.name)}" '
            f'data-split="{esc(split if isinstance(split, str) else "")}"')
    figure = esc(_figure(row, out))
    if bool(row.get("published")):
        return (f'<td class="num cell published" {base} data-published="true" '
                f'title="published in the paper, not measured here"><span class="v">{figure}'
                "</span></td>")
    lo, hi, n = _float(row.get("low")), _float(row.get("high")), _float(row.get("n"))
    p, sig = _float(row.get("p_value")), bool(row.get("significant"))
    k, places = _interval_factor(row, out), _decimals(_figure(row, out))

    def bound(x: float) -> str:  # as many decimals as the printed figure
        return fmt_num(x) if places is None else f"{x:.{places}f}"

    interval = (f'<span class="ci" data-testid="interval">[{esc(bound(lo * k))}, '
                f"{esc(bound(hi * k))}]</span>" if math.isfinite(lo) and math.isfinite(hi)
                else "")
    title = ["95% bootstrap interval over instances" if interval else "no interval",
             f"n = {fmt_num(n)} instance(s)" if math.isfinite(n) else "n unknown"]
    if math.isfinite(p):
        title.append(f"p = {p:.3g} against {reference or 'the reference'}")
    star = (f'<sup class="sig" data-testid="significant" title="differs significantly from '
            f'{esc(reference or "the reference")} (p = {p:.3g})">*</sup>' if sig else "")
    cls = "num cell" + (" best" if best else "")
    mean = _float(row.get("mean"))
    return (f'<td class="{cls}" {base} data-published="false" data-mean="{mean}" '
            f'data-low="{lo}" data-high="{hi}" data-n="{"" if math.isnan(n) else int(n)}" '
            f'data-p="{"" if math.isnan(p) else p}" data-significant="{str(sig).lower()}" '
            f'title="{esc("; ".join(title))}"><span class="v">{figure}</span>{star}{interval}'
            "</td>")


def _columns(cells: pd.DataFrame, outputs: Mapping[str, Output]) -> list[tuple[str, str | None]]:
    """(metric, split) columns: metrics in the paper's order (a lite column beside the paper
    one it stands in for), then any others; S before M."""
    order = _paper_rank(outputs)
    seen = list(dict.fromkeys((str(r.metric), r.split if isinstance(r.split, str) else None)
                              for r in cells.itertuples()))
    return sorted(seen, key=lambda c: (order.get(c[0], len(order)), c[0],
                                       {"S": 0, "M": 1}.get(c[1] or "", -1)))


def _paper_rank(outputs) -> dict[str, int]:
    """Output name -> its place in the tables (:func:`evaluation.tables.ordered`)."""
    from evaluation.tables import BESIDE, PAPER_ORDER

    names = sorted(outputs, key=lambda n: (
        PAPER_ORDER.index(BESIDE.get(n, n)) if BESIDE.get(n, n) in PAPER_ORDER
        else len(PAPER_ORDER), n in BESIDE))
    return {n: i for i, n in enumerate(names)}


def view_table(view: str, cells: pd.DataFrame, comp: Comparison) -> str:
    """One view (a paper table) as HTML: measured rows, then published ones."""
    cols = _columns(cells, comp.outputs)
    lookup: dict[tuple[bool, str], dict[tuple[str, str | None], dict[str, Any]]] = {}
    for r in cells.to_dict("records"):
        split = r["split"] if isinstance(r["split"], str) else None
        lookup.setdefault((bool(r["published"]), str(r["model"])), {})[
            (str(r["metric"]), split)] = r
    rows_keys = sorted(lookup, key=lambda k: k[0])  # measured first, in their order (stable)
    best: dict[tuple[str, str | None], str] = {}
    for col in cols:
        out = comp.outputs[col[0]]
        means = {m: _float(v[col]["mean"]) for (pub, m), v in lookup.items()
                 if not pub and col in v}
        means = {m: v for m, v in means.items() if math.isfinite(v)}
        if len(means) > 1:
            pick = min if out.direction == "lower" else max
            best[col] = pick(means, key=lambda m: means[m])
    metrics = list(dict.fromkeys(c[0] for c in cols))
    split_view = any(c[1] for c in cols)
    head1, head2 = ['<th rowspan="2">model</th>' if split_view else "<th>model</th>"], []
    for m in metrics:
        sub = [c for c in cols if c[0] == m]
        label = esc(comp.outputs[m].header)
        if not split_view:
            head1.append(f'<th data-metric="{esc(m)}">{label}</th>')
        elif len(sub) == 1 and sub[0][1] is None:
            head1.append(f'<th rowspan="2" data-metric="{esc(m)}">{label}</th>')
        else:
            head1.append(f'<th class="grp" colspan="{len(sub)}" data-metric="{esc(m)}">{label}'
                         "</th>")
            head2 += [f"<th>{esc(c[1] or '')}</th>" for c in sub]
    head = "<tr>" + "".join(head1) + "</tr>" + (f"<tr>{''.join(head2)}</tr>" if head2 else "")
    body = []
    published_started = False
    for pub, name in rows_keys:
        if pub and not published_started:
            published_started = True
            body.append(f'<tr class="sep"><td colspan="{len(cols) + 1}">published in the paper '
                        "(copied, not measured here)</td></tr>")
        model = next((m for m in comp.models if m.name == name), None)
        is_ref = not pub and name == comp.reference
        tds = "".join(_cell(lookup[(pub, name)].get(c), comp.outputs[c[0]], comp.reference,
                            not pub and best.get(c) == name) for c in cols)
        cls = "published" if pub else "measured"
        body.append(f'<tr class="{cls}" data-testid="cell-row" data-model="{esc(name)}" '
                    f'data-published="{str(pub).lower()}" data-reference="{str(is_ref).lower()}">'
                    f'<th class="row">{esc(name)}'
                    f"{_badges(model if not pub else None, published=pub, reference=is_ref)}"
                    f"</th>{tds}</tr>")
    return (f'<table class="cmp" data-testid="view-table" data-view="{esc(view)}">'
            f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>")


def tables_section(comp: Comparison, folder: _Folder) -> str:
    cells = comp.cells
    if cells is None or not len(cells):
        why = comp.state.get("cells", "absent")
        return section("tables", "Tables", NONE if why == "ok" else
                       note(f"cells.parquet is {why}", "tables-note"))
    parts = []
    views = sorted(dict.fromkeys(cells["view"].astype(str)),
                   key=lambda v: (int(m.group(1)) if (m := re.search(r"(\d+)$", v)) else 99, v))
    for view in views:
        sub = cells[cells["view"].astype(str) == view]
        title = next((t for t in sub.get("title", pd.Series(dtype=object)).dropna()), view)
        links = []
        for ext, what in (("md", "Markdown"), ("csv", "CSV"), ("tex", "LaTeX")):
            placed = folder.place(comp.out / "tables" / f"{view}.{ext}", f"tables/{view}")
            if placed is not None:
                links.append(f'<a href="{esc(href(placed, folder.root))}" '
                             f'data-testid="table-file">{what}</a>')
        lite = [comp.outputs[m] for m in dict.fromkeys(sub["metric"].astype(str))
                if comp.outputs[m].caveat]
        foot = "".join(f'<p class="note" data-testid="caveat">{DAGGER} {esc(o.label)}: '
                       f"{esc(o.caveat)}</p>" for o in lite)
        parts.append(f'<div data-testid="view" data-view="{esc(view)}"><h3>{esc(title)}</h3>'
                     + view_table(view, sub, comp) + foot
                     + (f"<p>as written by the comparison: {' · '.join(links)}</p>" if links
                        else "") + "</div>")
    ref = esc(comp.reference or "the reference model")
    legend = ('<p data-testid="legend">Each measured cell: the mean as the paper prints it, '
              "below it the 95% bootstrap interval over instances (resampled within "
              "single- and multi-person), hover for <i>n</i> and the p-value; "
              f'<span class="sig">*</span> differs significantly from {ref} (paired '
              "permutation test on the instances both have); <b>bold</b>: the best measured "
              'value of the column. Rows marked <span class="badge pub">published</span> are '
              "numbers copied from the paper, not measured here; they have no interval and "
              "are never compared.</p>")
    return section("tables", "Tables", legend + "\n".join(parts))


# ----------------------------------------------------------------------------- worst first


def worst_order(comp: Comparison, metric: str) -> list[tuple[str, float]]:
    """Instances scored on ``metric`` worst first, with the key: the mean over the models that
    scored the instance (missing ones left out); instances nobody scored come last (NaN)."""
    res = comp.results
    if res is None:
        return []
    out = comp.outputs[metric]
    sel = res[res["metric"] == metric]
    ok = sel[sel["status"] == "ok"].copy()
    ok["v"] = pd.to_numeric(ok["value"], errors="coerce")
    means = ok.groupby("instance_id", sort=False)["v"].mean().dropna()
    ids = list(dict.fromkeys(sel["instance_id"]))
    sign = -1.0 if out.direction == "lower" else 1.0
    scored = sorted((i for i in ids if i in means.index),
                    key=lambda i: (sign * float(means[i]), i))
    return [(i, float(means[i])) for i in scored] + [(i, math.nan) for i in ids
                                                     if i not in means.index]


def _instance_info(comp: Comparison) -> dict[str, dict[str, Any]]:
    if comp.instances is None:
        return {}
    return {str(r["instance_id"]): r for r in comp.instances.to_dict("records")}


def worst_section(comp: Comparison, opts: BenchReportOptions) -> tuple[str, dict]:
    """The section and {instance: {metric: (rank, of)}} for the instance pages."""
    res = comp.results
    ranks: dict[str, dict[str, tuple[int, int]]] = {}
    if res is None or not len(res):
        return section("worst", "Worst instances per metric", NONE), ranks
    info = _instance_info(comp)
    by_key = {(r["model"], r["instance_id"], r["metric"]): r for r in res.to_dict("records")}
    metrics = [m for m in comp.outputs if m in set(res["metric"])]
    parts = []
    for metric in metrics:
        out = comp.outputs[metric]
        order = worst_order(comp, metric)
        scored = sum(1 for _, k in order if math.isfinite(k))
        for rank, (iid, key) in enumerate(order, start=1):
            if math.isfinite(key):
                ranks.setdefault(iid, {})[metric] = (rank, scored)
        rows = []
        for rank, (iid, key) in enumerate(order[:opts.max_worst], start=1):
            inst = info.get(iid, {})
            task, split = inst.get("task", _first(res, iid, "task")), \
                inst.get("split", _first(res, iid, "split"))
            link = (f'<a href="instances/{esc(file_name(iid))}.html">{esc(iid)}</a>'
                    if iid in info else esc(iid))
            tds = []
            for m in comp.models:
                content, attrs = _status_cell(out, by_key.get((m.name, iid, metric)))
                tds.append(f'<td {attrs} data-model="{esc(m.name)}">{content}</td>')
            shown = out.shown(key)
            rows.append(
                f'<tr data-testid="worst-row" data-instance="{esc(iid)}" data-rank="{rank}" '
                f'data-key="{"" if math.isnan(key) else key}" '
                f"{filter_attrs({'task': task, 'split': split})}><td class=\"num\">{rank}</td>"
                f"<td>{link}</td><td>{esc(TASKS.get(str(task), task))}</td><td>{esc(split)}</td>"
                + "".join(tds) + f'<td class="num">{esc(fmt_num(shown))}</td></tr>')
        headers = ["#", "instance", "task", "S/M", *[m.name for m in comp.models], "mean"]
        worst_word = "lowest" if out.direction == "higher" else "highest"
        parts.append(
            f'<details open data-testid="worst-metric" data-metric="{esc(metric)}" '
            f'data-filter-group><summary><b>{esc(out.header)}</b>: <span data-filter-count>'
            f"{min(len(order), opts.max_worst)}</span> instance(s) shown, {worst_word} mean "
            f"first</summary>"
            + _table(headers, rows, testid="worst-table")
            + more_line(min(len(order), opts.max_worst), len(order), "instances",
                        "worst-more") + "</details>")
    intro = ("<p>Per metric, the instances ordered worst first by the mean over the models "
             "that scored them (values as the tables print them; a status in place of a value "
             "where a model has none); instances no model scored come last.</p>")
    return section("worst", "Worst instances per metric", intro + "\n".join(parts)), ranks


def _first(df: pd.DataFrame, iid: str, col: str) -> Any:
    if col not in df.columns:
        return None
    vals = df.loc[df["instance_id"] == iid, col].dropna()
    return vals.iloc[0] if len(vals) else None


# ----------------------------------------------------------------------------- instances


@dataclass
class _Media:
    """One instance's files in the report folder."""

    photos: list[Path | None]
    voices: list[Path | None]
    source: Path | None
    driving: Path | None
    videos: dict[str, Path | None]  # model name -> placed prediction
    posters: dict[str, Path | None]  # model name, or "source" -> its first frame


def _as_list(value: object) -> list[Any]:
    if value is None or isinstance(value, str | bytes) or missing(value):
        return []
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return []


def place_instance(comp: Comparison, folder: _Folder, inst: Mapping[str, Any]) -> _Media:
    iid = str(inst["instance_id"])
    stem = file_name(iid)
    refs = f"media/refs/{stem}"
    photos = [folder.thumbnail(p, f"{refs}/photo-{k}")
              for k, p in enumerate(_as_list(inst.get("image_refs")), start=1)]
    voices = [folder.place(p, f"{refs}/voice-{k}")
              for k, p in enumerate(_as_list(inst.get("audio_refs")), start=1)]
    videos = {m.name: folder.place(m.prediction(iid), f"media/pred/{m.folder}/{stem}")
              for m in comp.models}
    posters = {m.name: folder.poster(videos[m.name], f"media/pred/{m.folder}/{stem}")
               for m in comp.models}
    source = folder.place(inst.get("source_video"), f"{refs}/source")
    posters["source"] = folder.poster(source, f"{refs}/source")
    return _Media(photos, voices, source, folder.place(inst.get("driving_audio"),
                                                       f"{refs}/driving"), videos, posters)


def gallery_section(comp: Comparison, media: Mapping[str, _Media], folder: _Folder) -> str:
    if comp.instances is None or not len(comp.instances):
        return section("gallery", "Instances", NONE)
    cards = []
    for inst in comp.instances.to_dict("records"):
        iid = str(inst["instance_id"])
        med = media[iid]
        pics = "".join(
            f'<img src="{esc(href(p, folder.root))}" alt="reference photo {k}" '
            f'data-testid="card-photo">' if p is not None
            else missing_box(f"photo {k} missing", "card-photo-missing")
            for k, p in enumerate(med.photos, start=1))
        lacking = [m.name for m in comp.models if med.videos.get(m.name) is None]
        have = len(comp.models) - len(lacking)
        pred = (f'<span data-testid="card-predictions">{have} of {len(comp.models)} model(s) '
                "have a video</span>")
        if lacking:
            pred += (f'<br><span class="status-missing" data-testid="card-lacking">no video: '
                     f"{esc(', '.join(lacking))}</span>")
        cards.append(
            f'<a class="inst" href="instances/{esc(file_name(iid))}.html" '
            f'data-testid="instance-card" data-instance="{esc(iid)}" '
            f"{filter_attrs({'task': inst['task'], 'split': inst['split']})}>"
            f"<div>{pics}</div><b>{esc(iid)}</b><br>{esc(TASKS.get(inst['task'], inst['task']))}"
            f", {esc(SPLITS.get(inst['split'], inst['split']))}<br>{pred}</a>")
    return section("gallery", "Instances", f'<div data-filter-group><p><span data-filter-count>'
                   f"{len(cards)}</span> instance(s); open one for its media and values</p>"
                   f'<div class="gallery">{"".join(cards)}</div></div>')


def caption_html(text: str) -> tuple[str, StructuredCaption | None]:
    """The caption's speech with each ``<S>...<E>`` span in its speaker's colour, a table of
    who says what when, the other fields, and the raw text (collapsed)."""
    raw = json_details("caption as given (structured text)", text, "caption-raw")
    try:
        cap = parse_caption(text)
    except CaptionError as exc:
        return note(f"the caption does not parse: {exc}", "caption-note") + raw, None
    try:
        utterances = cap.speech()
    except CaptionError as exc:
        utterances = []
        raw = note(f"speakers not attributed: {exc}", "caption-note") + raw
    joint, out, pos = cap.joint, [], 0
    for i, m in enumerate(SPEECH_RE.finditer(joint)):
        out.append(_with_subjects(joint[pos:m.start()]))
        u = utterances[i] if i < len(utterances) else None
        who = u.subject if u else ""
        start = "" if u is None or u.start_s is None else u.start_s
        end = "" if u is None or u.end_s is None else u.end_s
        title = f"{who} {_span(u.start_s, u.end_s)}" if u else "speaker unknown"
        out.append(f'<mark class="say s{_subject_index(who)}" data-testid="speech-span" '
                   f'data-speaker="{esc(who)}" data-start="{start}" data-end="{end}" '
                   f'title="{esc(title)}">{esc(m.group(1))}</mark>')
        pos = m.end()
    out.append(_with_subjects(joint[pos:]))
    speech = (f'<div class="caption" data-testid="caption-speech">{"".join(out)}</div>'
              if joint else NONE)
    rows = [f'<tr data-testid="utterance" data-speaker="{esc(u.subject)}"><td>'
            f'{_subject(u.subject)}</td><td class="num">{esc(_span(u.start_s, u.end_s))}</td>'
            f"<td>{esc(u.text)}</td></tr>" for u in utterances]
    table = _table(("speaker", "when", "says"), rows, testid="utterances") if rows else ""
    fields = facts([("scene", "scene", cap.scene or "—"),
                    ("appearance", "appearance", cap.appearance or "—"),
                    ("actions", "actions", cap.actions or "—"),
                    ("audio", "audio", cap.audio_description or "—")])
    return speech + table + fields + raw, cap


def _prev_next(ids: Sequence[str], i: int) -> str:
    links = ['<a href="../index.html" data-testid="nav-index">← all instances</a>']
    if i > 0:
        links.append(f'<a href="{esc(file_name(ids[i - 1]))}.html" data-testid="nav-prev">'
                     f"‹ {esc(ids[i - 1])}</a>")
    if i + 1 < len(ids):
        links.append(f'<a href="{esc(file_name(ids[i + 1]))}.html" data-testid="nav-next">'
                     f"{esc(ids[i + 1])} ›</a>")
    return f'<nav class="pages">{"".join(links)}</nav>'


def instance_page(comp: Comparison, folder: _Folder, inst: Mapping[str, Any], med: _Media,
                  ids: Sequence[str], ranks: Mapping[str, tuple[int, int]],
                  opts: BenchReportOptions) -> str:
    iid = str(inst["instance_id"])
    page_dir = folder.root / "instances"
    text = str(inst.get("caption") or "")
    caption, cap = caption_html(text)
    subjects = cap.subjects if cap is not None else []
    n = max(len(med.photos), len(med.voices), len(subjects))
    header = ('<section data-testid="header">' + _prev_next(ids, ids.index(iid))
              + f"<h1>{esc(iid)}</h1>" + facts([
                  ("task", "task", TASKS.get(inst.get("task"), inst.get("task"))),
                  ("split", "people", SPLITS.get(inst.get("split"), inst.get("split"))),
                  ("subjects", "subjects", n)])
              + (note(comp.note, "comparison-note") if comp.note else "") + "</section>")

    # references: photo, voice and its waveform per subject
    image_caps = list(cap.image_captions.values()) if cap is not None else []
    figs = []
    photos, voices = _as_list(inst.get("image_refs")), _as_list(inst.get("audio_refs"))
    for k in range(n):
        sub = subjects[k] if k < len(subjects) else f"<sub{k + 1}>"
        photo = med.photos[k] if k < len(med.photos) else None
        voice = med.voices[k] if k < len(med.voices) else None
        pic = (f'<img src="{esc(href(photo, page_dir))}" alt="reference photo of {esc(sub)}" '
               'data-testid="ref-photo">' if photo is not None else missing_box(
                   f"photo of {sub} missing: {photos[k] if k < len(photos) else 'not given'}",
                   "ref-photo-missing"))
        if voice is not None:
            wave = waveform(voice, columns=opts.wave_columns, max_s=opts.max_wave_s,
                            label=f"voice of {sub}") or ""
            player = linked_media(voice, page_dir, testid="ref-voice",
                                  shown_as=f"voice of {sub}") + wave
        else:
            player = missing_box(f"voice of {sub} missing: "
                                 f"{voices[k] if k < len(voices) else 'not given'}",
                                 "ref-voice-missing")
        desc = esc(image_caps[k]) if k < len(image_caps) else ""
        figs.append(f'<figure data-testid="subject" data-subject="{esc(sub)}">'
                    f"<figcaption>{_subject(sub)} {desc}</figcaption>{pic}{player}</figure>")
    inputs = []
    if med.source is not None or not missing(inst.get("source_video")):
        inputs.append("<h3>Source video (to edit)</h3>" + (
            linked_media(med.source, page_dir, testid="source-video", width=opts.video_px,
                         poster=med.posters.get("source"))
            if med.source is not None else
            missing_box(f"source video missing: {inst.get('source_video')}",
                        "source-video-missing")))
    if med.driving is not None or not missing(inst.get("driving_audio")):
        inputs.append("<h3>Driving audio</h3>" + (
            linked_media(med.driving, page_dir, testid="driving-audio")
            if med.driving is not None else
            missing_box(f"driving audio missing: {inst.get('driving_audio')}",
                        "driving-audio-missing")))
    refs = section("references", "References",
                   f'<div class="refs">{"".join(figs) or NONE}</div>' + "".join(inputs))

    # the models' videos side by side
    vids = []
    for m in comp.models:
        placed = med.videos.get(m.name)
        if placed is not None:
            player = linked_media(placed, page_dir, testid="model-video", width=opts.video_px,
                                  shown_as=f"{m.name}: {iid}.mp4",
                                  poster=med.posters.get(m.name))
        else:
            where = m.prediction(iid)
            player = missing_box(
                f"no prediction: {where} is missing" if where is not None else
                "no prediction: the comparison names no predictions folder for this model",
                "model-video-missing")
        cls = ' class="reference"' if m.reference else ""
        vids.append(f'<figure{cls} data-testid="model" data-model="{esc(m.name)}">'
                    f"<figcaption><b>{esc(m.name)}</b>{_badges(m)} "
                    f'<span class="more">{esc(m.kind)}</span></figcaption>{player}</figure>')
    videos = section("videos", "Generated videos",
                     f'<div class="videos">{"".join(vids)}</div>' if vids else NONE)

    return page(f"{iid}: benchmark instance", [
        header, refs, section("caption", "Caption", caption), videos,
        metrics_section(comp, iid, ranks), speakers_section(comp, iid)],
        style=STYLE, scripts=(MEDIA_SCRIPT,), local_files=True)


def metrics_section(comp: Comparison, iid: str, ranks: Mapping[str, tuple[int, int]]) -> str:
    res = comp.results
    if res is None:
        return section("metrics", "Metric values", NONE)
    mine = res[res["instance_id"] == iid]
    if not len(mine):
        return section("metrics", "Metric values", NONE)
    by = {(r["model"], r["metric"]): r for r in mine.to_dict("records")}
    rows = []
    for metric in [m for m in comp.outputs if m in set(mine["metric"])]:
        out = comp.outputs[metric]
        tds = []
        for m in comp.models:
            content, attrs = _status_cell(out, by.get((m.name, metric)))
            reason = by.get((m.name, metric), {}).get("reason")
            if content in STATUS_TEXT.values() and isinstance(reason, str) and reason:
                content += f'<br><span class="more">{esc(reason)}</span>'
            tds.append(f'<td {attrs} data-model="{esc(m.name)}">{content}</td>')
        rank = ranks.get(metric)
        rank_s = f"{rank[0]} of {rank[1]}" if rank else "—"
        rows.append(f'<tr data-testid="metric-row" data-metric="{esc(metric)}"><th class="row">'
                    f"{esc(out.header)}</th>{''.join(tds)}<td class=\"num\" "
                    f'data-testid="rank">{esc(rank_s)}</td></tr>')
    table = _table(["metric", *[m.name for m in comp.models], "rank, worst first"], rows,
                   testid="metric-values")
    return section("metrics", "Metric values", table)


def speakers_section(comp: Comparison, iid: str) -> str:
    sp = comp.speakers
    if sp is None:
        return section("speakers", "Per speaker turn", NONE)
    mine = sp[sp["instance_id"].astype(str) == iid]
    if not len(mine):
        return section("speakers", "Per speaker turn", NONE)
    models = [m.name for m in comp.models] or list(dict.fromkeys(mine["model"].astype(str)))
    keys = list(dict.fromkeys((str(r["metric"]), str(r["speaker"]), int(r["turn"]))
                              for r in mine.to_dict("records")))
    by = {(str(r["metric"]), str(r["speaker"]), int(r["turn"]), str(r["model"])): r
          for r in mine.to_dict("records")}
    order = _paper_rank(comp.outputs)
    keys.sort(key=lambda k: (order.get(k[0], len(order)), k[0], k[1], k[2]))
    rows = []
    for metric, speaker, turn in keys:
        out = comp.outputs.get(metric, Output(metric, metric))
        any_row = next(by[(metric, speaker, turn, m)] for m in models
                       if (metric, speaker, turn, m) in by) if any(
            (metric, speaker, turn, m) in by for m in models) else {}
        tds = []
        for m in models:
            r = by.get((metric, speaker, turn, m))
            v = out.shown(r["value"]) if r is not None else math.nan
            tds.append(f'<td class="num" data-model="{esc(m)}">{esc(fmt_num(v))}</td>')
        rows.append(f'<tr data-testid="speaker-row" data-metric="{esc(metric)}" '
                    f'data-speaker="{esc(speaker)}" data-turn="{turn}"><td>{esc(out.header)}</td>'
                    f"<td>{_subject(speaker)}</td><td class=\"num\">{turn + 1}</td>"
                    f'<td class="num">{esc(_span(any_row.get("start_s"), any_row.get("end_s")))}'
                    f"</td>{''.join(tds)}</tr>")
    return section("speakers", "Per speaker turn",
                   _table(["metric", "speaker", "turn", "when", *models], rows,
                          testid="speaker-values"))


# ----------------------------------------------------------------------------- the index


def header_section(comp: Comparison, media: Mapping[str, _Media]) -> str:
    inst = comp.instances
    mix = "none"
    if inst is not None and len(inst):
        counts = inst.groupby(["task", "split"]).size().to_dict()
        rank = {k: i for i, k in enumerate([*TASKS, *SPLITS])}
        mix = ", ".join(f"{TASKS.get(t, t)} {SPLITS.get(s, s)}: {n}" for (t, s), n in sorted(
            counts.items(), key=lambda kv: (rank.get(kv[0][0], 9), rank.get(kv[0][1], 9), kv[0])))
    items = [("comparison", "comparison folder", str(comp.out)),
             ("n-instances", "instances", 0 if inst is None else len(inst)),
             ("mix", "per task and people", mix),
             ("reference", "reference model", comp.reference or "none"),
             *job_facts(comp.summary, items="items of the job")]
    rows, attrs = [], []
    for m in comp.models:
        found = sum(1 for med in media.values() if med.videos.get(m.name) is not None)
        rows.append((Html(f"{esc(m.name)}{_badges(m)}"), m.kind,
                     str(m.predictions) if m.predictions is not None else "—",
                     Figure(f"{found} of {len(media)}")))
        attrs.append(f'data-testid="model-row" data-model="{esc(m.name)}" '
                     f'data-found="{found}"')
    models = html_table(("model", "kind", "predictions", "videos found"), rows,
                        row_attrs=attrs, testid="models") if rows else NONE
    lite = [o for o in comp.outputs.values() if o.caveat]
    lite_note = note(f"{DAGGER} marks a lite backend's column ("
                     + ", ".join(o.label for o in lite)
                     + "): not the paper's protocol, not comparable with published numbers",
                     "lite-note") if lite else ""
    return ('<section data-testid="header"><h1>Benchmark comparison report</h1>\n'
            + facts(items) + problems_list(comp.problems)
            + (note(comp.note, "comparison-note") if comp.note else "") + lite_note
            + "<h3>Models</h3>" + models + "\n</section>")


HUMAN_JSON = "human_eval/human_eval.json"


def human_section(comp: Comparison) -> str:
    """The user study's table (``omni study aggregate`` of a study made from this comparison
    writes ``human_eval/``): per model (or pair) and dimension the mean score or the
    good/same/bad shares with the 95% interval, Krippendorff's alpha, the raters counted and
    excluded. No section when there is no study."""
    import json

    path = comp.out / HUMAN_JSON
    if not path.is_file():
        return ""
    try:
        data = json.loads(path.read_text())
        dims = [(str(d["key"]), str(d["label"])) for d in data["dimensions"]]
        protocol = str(data["protocol"])
        rows = list(data["rows"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return section("human", "Human evaluation", note(f"{HUMAN_JSON}: unreadable ({exc})"))

    def cell(c: Mapping[str, Any]) -> str:
        if c.get("mean") is None:
            return '<td class="num">—</td>'
        ci = "" if c.get("low") is None else \
            f'<div class="ci">[{c["low"]:.2f}, {c["high"]:.2f}]</div>'
        if protocol == "absolute":
            main = f"{c['mean']:.2f}"
        else:
            main = (f"{100 * c['good']:.0f} / {100 * c['same']:.0f} / {100 * c['bad']:.0f}"
                    f"<div>net {c['mean']:+.2f}</div>")
        return f'<td class="num" title="n = {int(c.get("n", 0))} ratings">{main}{ci}</td>'

    body = []
    for r in rows:
        cells = "".join(cell(r["cells"].get(k, {})) for k, _ in dims)
        body.append(f'<tr data-testid="human-row"><th>{esc(r["name"])}</th>{cells}</tr>')
    alpha = data.get("alpha", {})
    body.append("<tr><th>Krippendorff's α (ordinal)</th>" + "".join(
        f'<td class="num">{"—" if alpha.get(k) is None else f"{alpha[k]:.2f}"}</td>'
        for k, _ in dims) + "</tr>")
    head = ["model" if protocol == "absolute" else "A vs B", *(label for _, label in dims)]
    counts = data.get("raters", {})
    what = ("Mean score 1-5 with its 95% bootstrap interval over raters and instances."
            if protocol == "absolute" else
            "Good / same / bad (% of ratings where A is better, the same, worse than B) and "
            "the net preference with its 95% bootstrap interval over raters and instances.")
    excluded = "".join(f"<li>{esc(e['rater'])}: {esc(e['reason'])}</li>"
                       for e in data.get("excluded", []))
    text = (f"<p>{esc(what)} {int(counts.get('raters', 0))} raters, "
            f"{int(counts.get('answered_any', 0))} answered, "
            f"{int(counts.get('complete', 0))} complete, "
            f"{int(counts.get('excluded', 0))} excluded by attention checks.</p>"
            + (f"<ul data-testid='human-excluded'>{excluded}</ul>" if excluded else ""))
    return section("human", "Human evaluation (user study)",
                   text + _table(head, body, cls="human", testid="human-table"))


def render_index(comp: Comparison, folder: _Folder, media: Mapping[str, _Media],
                 worst: str, opts: BenchReportOptions) -> str:
    return page(f"Benchmark comparison: {comp.out.name}", [
        header_section(comp, media), tables_section(comp, folder), human_section(comp),
        section("filters", "Filters", filter_bar(_task_filters(comp.instances))
                + "<p>apply to the two sections below; the choice is kept in the address "
                "(link or bookmark a filtered view)</p>"),
        worst, gallery_section(comp, media, folder), stages_section(comp.summary),
        errors_section(comp.summary, comp.errors, opts,
                       state=comp.state.get("errors", "absent")),
        provenance_section(comp.summary, opts)],
        style=STYLE, scripts=(FILTER_SCRIPT, MEDIA_SCRIPT), local_files=True)


def write_report(out: str | os.PathLike[str], options: BenchReportOptions | None = None
                 ) -> Path:
    """Write the report folder ``out/report/`` of the comparison folder ``out`` (pages,
    media placed beside them, the tables' files); returns the path of its ``index.html``.

    A rerun rewrites the pages and keeps media that did not change (same file, or same size
    and time); files of instances or models no longer compared are removed."""
    opts = options or BenchReportOptions()
    comp = load_comparison(out)
    folder = _Folder(comp.out / REPORT_DIR, opts)
    instances = [] if comp.instances is None else comp.instances.to_dict("records")
    media = {str(i["instance_id"]): place_instance(comp, folder, i) for i in instances}
    worst, ranks = worst_section(comp, opts)
    ids = list(media)
    for inst in instances:
        iid = str(inst["instance_id"])
        folder.write(f"instances/{file_name(iid)}.html",
                     instance_page(comp, folder, inst, media[iid], ids, ranks.get(iid, {}),
                                   opts))
    index = folder.write("index.html", render_index(comp, folder, media, worst, opts))
    folder.prune()
    return index
