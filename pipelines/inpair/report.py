"""The HTML report of an in-pair curation run: one self-contained page, ``OUT/report.html``.

:func:`write_report` reads what ``omni curate inpair`` left in its output folder (the Parquet
manifests, ``summary.json``, the reference PNGs and WAVs, the caption JSON files) and writes a
single page that needs nothing else: no network, no external script or style sheet. Images are
embedded as downsized JPEG data URIs, charts are inline SVG drawn here. A Content-Security-Policy
meta tag allows only data: images, inline styles and the one inline script (by its hash), so
nothing a manifest contains can load or run anything.

Sections, top to bottom (each a ``<section data-testid=...>``):

- ``header``: inputs, wall time, rows per table (and tables that are absent or unreadable);
- ``stages``: in / out / failed / seconds per DAG stage; ``errors``: errors grouped by stage
  and reason with their first items;
- ``filters``: clips per ``clips.status`` with example reasons, face-track rejects per kind
  (the word before the first space of each ``"; "``-joined ``reject_reason`` part);
- ``histograms``: clip durations, smallest face side, best sync confidence, speakers per clip;
- ``contact-sheet``: per identity with references, its image crop beside its voice waveform;
- ``captions``: the first few samples' caption text and flags.

A missing table or file never stops the report: its section says "none" or names the problem.
Every string that comes from the data is HTML-escaped. On load, a tiny script writes
``document.body.dataset.imagesLoaded = "<loaded>/<total>"`` so a headless browser can check
that every embedded image decodes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from omni_core.errors import ManifestError, OmniError
from omni_core.manifests import CLIP_STATUS, read_manifest
from omni_core.storage import RunFolder, as_run_folder, is_remote

from .faces import reject_kinds

TABLES = ("videos", "clips", "speech_segments", "face_tracks", "identities", "references",
          "samples", "errors")
SECTIONS = ("header", "stages", "errors", "filters", "histograms", "contact-sheet", "captions")
NONE = '<p class="none">none</p>'


@dataclass(frozen=True)
class ReportOptions:
    """What the page shows and how big it may get."""

    n_captions: int = 12  # samples whose caption is shown
    max_identities: int = 200  # identity cards on the contact sheet (keeps the page small)
    thumb_px: int = 128  # longest side of an embedded identity crop, never upscaled
    jpeg_quality: int = 85  # quality of the embedded crops
    wave_columns: int = 200  # columns of a waveform's min/max envelope
    max_wave_s: float = 60.0  # audio read per reference, from its start
    hist_bins: int = 12  # bins of a continuous histogram
    max_int_bins: int = 40  # an integer histogram with a wider range falls back to hist_bins
    examples: int = 3  # example reasons / items shown per group
    max_reason_groups: int = 20  # distinct (error type, reason) groups listed per stage


class Html(str):
    """A fragment that is already HTML and must not be escaped again."""


def missing(value: object) -> bool:
    """None or a float NaN (what pandas puts in a null string cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def esc(value: object) -> str:
    """HTML-escape any value (None and NaN become the empty string)."""
    if isinstance(value, Html):
        return value
    return "" if missing(value) else html.escape(str(value), quote=True)


def fmt_num(x: object) -> str:
    """A short human form of a number: integers as such, floats with 0-3 decimals."""
    if x is None:
        return "—"
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1 \
        else f"{v:.3f}"


def fmt_s(x: object) -> str:
    """A time in seconds with two decimals (a dash when absent)."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(v) else f"{v:.2f}"


# ----------------------------------------------------------------------------- loading


@dataclass
class RunData:
    """What the report is made of: the summary, the readable tables and what went wrong."""

    out: Path
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    state: dict[str, str]  # table -> "ok" | "absent" | "unreadable: ..."
    problems: list[str] = field(default_factory=list)
    #: the run's output when it is remote (``out`` is then this node's staging folder)
    folder: RunFolder | None = None

    @property
    def name(self) -> str:
        """Where the run is, as a person names it: the folder, or the URL when remote."""
        return self.folder.out if self.folder is not None else str(self.out)

    def path(self, rel: str) -> Path:
        """A local path of the run's file ``rel`` (fetched from a remote output when needed;
        it may not exist: the readers report a missing file)."""
        if self.folder is not None:
            try:
                return self.folder.local(rel)
            except OmniError:
                pass
        return self.out / rel

    def table(self, name: str) -> pd.DataFrame | None:
        df = self.tables.get(name)
        return df if df is not None and len(df) else None


def read_table(out: Path, name: str) -> tuple[pd.DataFrame | None, str]:
    """A manifest of the run (``<name>.parquet`` or a shard directory ``<name>/``) and its state."""
    for path in (out / f"{name}.parquet", out / name):
        if not path.exists():
            continue
        try:
            return read_manifest(path, name), "ok"
        except (ManifestError, OSError, ValueError, pa.ArrowException) as exc:
            return None, f"unreadable: {exc}"
    return None, "absent"


def read_summary(out: Path) -> tuple[dict[str, Any], str | None]:
    path = out / "summary.json"
    if not path.is_file():
        return {}, "summary.json is absent"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {}, f"summary.json is unreadable: {exc}"
    if not isinstance(data, dict):
        return {}, "summary.json is not a JSON object"
    return data, None


def load_run(out: RunFolder | str | os.PathLike[str], names: Sequence[str] = TABLES
             ) -> RunData:
    """The summary and the tables ``names`` of the run at a folder, a URL (``s3://...``,
    read through a local staging folder) or a :class:`RunFolder`."""
    if isinstance(out, RunFolder) or is_remote(out):
        folder = as_run_folder(out)
        root = folder.root
    else:
        folder, root = None, Path(out)
    remote = folder if folder is not None and folder.remote else None
    if remote is not None:  # stage what the page reads (the driver has it staged already)
        for rel in ["summary.json"] + [f"{name}.parquet" for name in names]:
            try:
                remote.local(rel)
            except OmniError:
                pass
    summary, problem = read_summary(root)
    tables: dict[str, pd.DataFrame] = {}
    state: dict[str, str] = {}
    for name in names:
        df, st = read_table(root, name)
        state[name] = st
        if df is not None:
            tables[name] = df
    problems = [problem] if problem else []
    problems += [f"{t}: {s}" for t, s in state.items() if s.startswith("unreadable")]
    return RunData(root, summary, tables, state, problems, folder=remote)


# ----------------------------------------------------------------------------- small builders


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *,
               row_attrs: Sequence[str] | None = None, cls: str = "") -> str:
    """A ``<table>``; cells are escaped unless they are :class:`Html`; numbers are formatted."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        attrs = f" {row_attrs[i]}" if row_attrs else ""
        cells = "".join(
            f'<td class="num">{fmt_num(c)}</td>' if isinstance(c, int | float | np.number)
            and not isinstance(c, bool) else f"<td>{esc(c)}</td>" for c in row)
        body.append(f"<tr{attrs}>{cells}</tr>")
    c = f' class="{esc(cls)}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def section(testid: str, title: str, body: str) -> str:
    return (f'<section data-testid="{esc(testid)}"><h2>{esc(title)}</h2>\n{body}\n</section>')


def examples_html(values: Sequence[object], total: int) -> Html:
    parts = [f"<code>{esc(v)}</code>" for v in values]
    more = total - len(values)
    if more > 0:
        parts.append(f'<span class="more">+{more} more</span>')
    return Html(" ".join(parts))


# ----------------------------------------------------------------------------- header and stages


def header_section(run: RunData) -> str:
    s = run.summary
    counts = s.get("counts") if isinstance(s.get("counts"), dict) else {}
    names = list(TABLES) + [t for t in counts if t not in TABLES]
    rows = []
    for t in names:
        df = run.tables.get(t)
        n = counts.get(t, len(df) if df is not None else None)
        rows.append((t, n if n is not None else "none", run.state.get(t, "not a manifest")))
    inputs = s.get("inputs")
    skipped = s.get("skipped_inputs")
    wall = s.get("wall_s")
    facts = [
        ("output folder", run.name),
        ("inputs", fmt_num(inputs) if inputs is not None else "none"),
        ("finished by an earlier run", fmt_num(skipped) if skipped is not None else "none"),
        ("wall time", f"{fmt_num(wall)} s" if isinstance(wall, int | float) else "none"),
    ]
    dl = "".join(f'<dt>{esc(k)}</dt><dd data-testid="fact-{esc(k.split()[0])}">{esc(v)}</dd>'
                 for k, v in facts)
    problems = ""
    if run.problems:
        problems = '<ul class="problems">' + "".join(
            f"<li>{esc(p)}</li>" for p in run.problems) + "</ul>"
    body = (f'<dl class="facts">{dl}</dl>{problems}<h3>Rows per table</h3>'
            + html_table(("table", "rows", "manifest"), rows,
                         row_attrs=[f'data-table="{esc(r[0])}"' for r in rows]))
    return (f'<section data-testid="header"><h1>In-pair curation report</h1>\n{body}\n'
            "</section>")


def stage_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the stage table: summary["stages"], else what stage_seconds/errors_by_stage say."""
    stages = summary.get("stages")
    if isinstance(stages, list) and stages:
        return [dict(st) for st in stages if isinstance(st, Mapping)]
    seconds = summary.get("stage_seconds")
    errors = summary.get("errors_by_stage")
    seconds = seconds if isinstance(seconds, dict) else {}
    errors = errors if isinstance(errors, dict) else {}
    names = list(seconds) + [k for k in errors if k not in seconds]
    return [{"stage": n, "in": None, "out": None, "failed": errors.get(n),
             "seconds": seconds.get(n)} for n in names]


def stages_section(run: RunData) -> str:
    rows = stage_rows(run.summary)
    if not rows:
        return section("stages", "Stages", NONE)
    cells = [(str(r.get("stage", "?")),) + tuple(
        r.get(k) if isinstance(r.get(k), int | float) else "—"
        for k in ("in", "out", "failed")) + (fmt_s(r.get("seconds")),) for r in rows]
    attrs = [f'data-testid="stage-row" data-stage="{esc(r.get("stage", ""))}"' for r in rows]
    total = sum(float(r.get("seconds") or 0) for r in rows)
    wall = run.summary.get("wall_s")
    note = f"<p>summed stage seconds {fmt_num(total)}"
    if isinstance(wall, int | float) and wall > 0:
        note += f", wall {fmt_num(wall)} s (summed / wall = {fmt_num(total / wall)})"
    note += "</p>"
    return section("stages", "Stages", html_table(
        ("stage", "in", "out", "failed", "seconds"), cells, row_attrs=attrs) + note)


def errors_section(run: RunData, opts: ReportOptions) -> str:
    df = run.table("errors")
    if df is None:
        return section("errors", "Errors", NONE)
    order = [str(r.get("stage")) for r in stage_rows(run.summary)]
    stages = sorted(df["stage"].unique(), key=lambda s: (order.index(s) if s in order
                                                          else len(order), s))
    parts = [f"<p>{len(df)} error(s) in {len(stages)} stage(s)</p>"]
    for stage in stages:
        sub = df[df["stage"] == stage]
        groups = sorted(sub.groupby(["error_type", "reason"], sort=False),
                        key=lambda g: (-len(g[1]), str(g[0])))
        rows = []
        for (etype, reason), g in groups[:opts.max_reason_groups]:
            items = g["item"].tolist()
            rows.append((etype, reason, len(g), examples_html(items[:opts.examples], len(items))))
        more = ""
        if len(groups) > opts.max_reason_groups:
            rest = sum(len(g) for _, g in groups[opts.max_reason_groups:])
            more = (f"<p class=\"more\">and {len(groups) - opts.max_reason_groups} more "
                    f"reason(s), {rest} error(s)</p>")
        parts.append(
            f'<div data-testid="error-group" data-stage="{esc(stage)}" data-count="{len(sub)}">'
            f"<h3>{esc(stage)}: {len(sub)}</h3>"
            + html_table(("error type", "reason", "count", "items"), rows) + more + "</div>")
    return section("errors", "Errors", "\n".join(parts))


# ----------------------------------------------------------------------------- filters


def filters_section(run: RunData, opts: ReportOptions) -> str:
    parts = ["<h3>Clips per status</h3>"]
    clips = run.table("clips")
    if clips is None:
        parts.append(NONE)
    else:
        counts = clips["status"].value_counts()
        statuses = list(CLIP_STATUS) + sorted(s for s in counts.index if s not in CLIP_STATUS)
        rows, attrs = [], []
        for st in statuses:
            n = int(counts.get(st, 0))
            reasons = clips.loc[clips["status"] == st, "status_reason"].dropna()
            uniq = list(dict.fromkeys(reasons.tolist()))
            rows.append((st, n, f"{100 * n / len(clips):.1f}%",
                         examples_html(uniq[:opts.examples], len(uniq))))
            attrs.append(f'data-testid="status-row" data-status="{esc(st)}" data-count="{n}"')
        parts.append(html_table(("status", "clips", "share", "example reasons"), rows,
                                row_attrs=attrs))
    parts.append("<h3>Face-track rejects per reason</h3>")
    tracks = run.table("face_tracks")
    if tracks is None:
        parts.append(NONE)
    else:
        n_pass = int(tracks["passed"].sum())
        parts.append(f'<p data-testid="tracks-passed">{n_pass} of {len(tracks)} track(s) passed, '
                     f"{len(tracks) - n_pass} rejected</p>")
        per_kind: dict[str, list[str]] = {}
        for reason in tracks["reject_reason"].dropna():
            for part in str(reason).split(";"):
                part = part.strip()
                if part:
                    per_kind.setdefault(part.split(" ", 1)[0], []).append(part)
        kind_tracks = Counter(k for r in tracks["reject_reason"] for k in reject_kinds(r))
        if not kind_tracks:
            parts.append(NONE)
        else:
            rows, attrs = [], []
            for kind, n in kind_tracks.most_common():
                uniq = list(dict.fromkeys(per_kind.get(kind, [])))
                rows.append((kind, n, examples_html(uniq[:opts.examples], len(uniq))))
                attrs.append(f'data-testid="reject-row" data-kind="{esc(kind)}" data-count="{n}"')
            parts.append(html_table(("reason", "tracks", "examples"), rows, row_attrs=attrs))
    return section("filters", "Filters", "\n".join(parts))


# ----------------------------------------------------------------------------- histograms


@dataclass(frozen=True)
class Bin:
    lo: float
    hi: float
    count: int


def histogram_bins(values: Iterable[object], bins: int = 12, *, integer: bool = False,
                   max_int_bins: int = 40) -> list[Bin]:
    """Bins over the finite values: one per integer from min to max when ``integer`` (and the
    range is at most ``max_int_bins``), else ``bins`` equal-width bins; [] without values."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return []
    lo, hi = float(v.min()), float(v.max())
    if integer:
        ints = np.rint(v).astype(np.int64)
        a, b = int(ints.min()), int(ints.max())
        if b - a + 1 <= max_int_bins:
            counts = np.bincount(ints - a, minlength=b - a + 1)
            return [Bin(a + i, a + i, int(c)) for i, c in enumerate(counts)]
    if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):  # equal up to float rounding
        return [Bin(lo, hi, len(v))]
    counts, edges = np.histogram(v, bins=max(1, bins), range=(lo, hi))
    return [Bin(float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts)]


def svg_histogram(bins: Sequence[Bin], x_label: str, y_label: str, testid: str, *,
                  integer: bool = False, width: int = 420, height: int = 220) -> str:
    """Vertical bars with their counts, x ticks at bin edges (or integer centres), axis labels."""
    ml, mr, mt, mb = 46, 12, 18, 46
    pw, ph = width - ml - mr, height - mt - mb
    top = max(b.count for b in bins) or 1
    n = len(bins)
    bw = pw / n
    out = [f'<svg data-testid="{esc(testid)}" class="hist" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{esc(x_label)}">']
    for i, b in enumerate(bins):
        h = ph * b.count / top
        x, y = ml + i * bw, mt + ph - h
        span = fmt_num(b.lo) if integer or b.lo == b.hi else f"{fmt_num(b.lo)}–{fmt_num(b.hi)}"
        out.append(f'<rect class="bar" data-count="{b.count}" x="{x + 0.5:.2f}" y="{y:.2f}" '
                   f'width="{max(bw - 1, 0.5):.2f}" height="{h:.2f}">'
                   f"<title>{esc(span)}: {b.count}</title></rect>")
        if b.count:
            out.append(f'<text class="count" x="{x + bw / 2:.2f}" y="{y - 3:.2f}" '
                       f'text-anchor="middle">{b.count}</text>')
    base = mt + ph
    out.append(f'<line class="axis" x1="{ml}" y1="{base}" x2="{ml + pw}" y2="{base}"/>')
    out.append(f'<line class="axis" x1="{ml}" y1="{mt}" x2="{ml}" y2="{base}"/>')
    for val in sorted({0, top // 2, top}):
        y = base - ph * val / top
        out.append(f'<text class="tick" x="{ml - 4}" y="{y + 4:.2f}" text-anchor="end">{val}'
                   "</text>")
    if integer or (n == 1 and bins[0].lo == bins[0].hi):
        ticks = [(ml + (i + 0.5) * bw, b.lo) for i, b in enumerate(bins)]
    else:
        ticks = [(ml + i * bw, b.lo) for i, b in enumerate(bins)] + [(ml + pw, bins[-1].hi)]
    step = max(1, math.ceil(len(ticks) / 7))
    for k, (x, val) in enumerate(ticks):
        if k % step == 0 or k == len(ticks) - 1 and not integer:
            out.append(f'<text class="tick" x="{x:.2f}" y="{base + 14}" '
                       f'text-anchor="middle">{esc(fmt_num(val))}</text>')
    out.append(f'<text class="label" x="{ml + pw / 2:.2f}" y="{height - 6}" '
               f'text-anchor="middle">{esc(x_label)}</text>')
    out.append(f'<text class="label" transform="translate(12 {mt + ph / 2:.2f}) rotate(-90)" '
               f'text-anchor="middle">{esc(y_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def histogram_block(values: pd.Series | None, title: str, x_label: str, y_label: str,
                    testid: str, opts: ReportOptions, *, integer: bool = False) -> str:
    head = f"<h3>{esc(title)}</h3>"
    if values is None:
        return f'<div class="chart">{head}{NONE}</div>'
    v = pd.to_numeric(values, errors="coerce").astype(float)
    finite = v[np.isfinite(v)]
    bins = histogram_bins(finite, opts.hist_bins, integer=integer,
                          max_int_bins=opts.max_int_bins)
    if not bins:
        return f'<div class="chart">{head}{NONE}</div>'
    stats = (f"<p>{len(finite)} value(s); min {fmt_num(finite.min())}, median "
             f"{fmt_num(finite.median())}, max {fmt_num(finite.max())}"
             + (f"; {len(v) - len(finite)} without a value" if len(v) > len(finite) else "")
             + "</p>")
    return (f'<div class="chart">{head}'
            + svg_histogram(bins, x_label, y_label, testid, integer=integer) + stats + "</div>")


def histograms_section(run: RunData, opts: ReportOptions) -> str:
    clips, tracks = run.table("clips"), run.table("face_tracks")
    blocks = [
        histogram_block(None if clips is None else clips["end_s"] - clips["start_s"],
                        "Clip durations", "clip duration (s)", "clips", "hist-duration", opts),
        histogram_block(None if tracks is None else tracks["min_face_px"],
                        "Face sizes", "smallest face side over the track (px)", "tracks",
                        "hist-face-px", opts),
        histogram_block(None if clips is None else clips["best_sync"],
                        "Best sync confidence", "best speaker/face sync confidence", "clips",
                        "hist-sync", opts),
        histogram_block(None if clips is None else clips["n_speakers"],
                        "Speakers per clip", "speakers per clip", "clips", "hist-speakers",
                        opts, integer=True),
    ]
    return section("histograms", "Distributions", '<div class="charts">' + "".join(blocks)
                   + "</div>")


# ----------------------------------------------------------------------------- contact sheet


def thumbnail_data_uri(path: Path, max_px: int, quality: int = 85) -> str | None:
    """A JPEG data URI of the image, longest side at most ``max_px``; None if unreadable."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None
    h, w = img.shape[:2]
    scale = min(1.0, max_px / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def waveform_envelope(samples: np.ndarray, columns: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Per-column minimum and maximum of a mono signal (at most ``columns`` columns)."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if not len(x):
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    chunks = np.array_split(x, min(columns, len(x)))
    return (np.array([c.min() for c in chunks], np.float32),
            np.array([c.max() for c in chunks], np.float32))


def read_mono(path: Path, max_s: float) -> tuple[np.ndarray, int] | None:
    """The first ``max_s`` seconds of an audio file mixed to mono; None if unreadable."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            frames = f.frames if f.frames > 0 else -1
            if max_s > 0 and frames > 0:
                frames = min(frames, int(max_s * f.samplerate))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
            return data.mean(axis=1), int(f.samplerate)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError):
        return None


def svg_waveform(mins: np.ndarray, maxs: np.ndarray, *, width: int = 240,
                 height: int = 64) -> str:
    """The min/max envelope as one filled polygon around a centre line."""
    n = len(mins)
    mid = height / 2
    peak = float(max(np.abs(mins).max(initial=0), np.abs(maxs).max(initial=0))) or 1.0
    amp = (height / 2 - 2) / peak  # normalised to the peak: the shape matters, not the level
    xs = (np.arange(n) + 0.5) * width / max(n, 1)
    top = [f"{x:.1f},{mid - min(max(v, 0), peak) * amp - 0.5:.1f}" for x, v in zip(xs, maxs,
                                                                                   strict=True)]
    bot = [f"{x:.1f},{mid - max(min(v, 0), -peak) * amp + 0.5:.1f}"
           for x, v in zip(xs[::-1], mins[::-1], strict=True)]
    return (f'<svg data-testid="waveform" class="wave" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'data-columns="{n}" role="img" aria-label="voice reference waveform">'
            f'<line x1="0" y1="{mid}" x2="{width}" y2="{mid}" class="mid"/>'
            f'<polygon points="{" ".join(top + bot)}"/></svg>')


def identity_card(run: RunData, identity_id: str, refs: pd.DataFrame,
                  opts: ReportOptions) -> str:
    images = refs[refs["kind"] == "image"]
    audios = refs[refs["kind"] == "audio"]
    lines = [f"<b>{esc(identity_id)}</b>"]
    idents = run.table("identities")
    if idents is not None:
        row = idents[idents["identity_id"] == identity_id]
        if len(row):
            r = row.iloc[0]
            speaker = "—" if missing(r["speaker"]) else r["speaker"]
            lines.append(f"speaker {esc(speaker)}, sync "
                         f"{esc(fmt_num(r['sync_confidence']))}")
    if len(images):
        im = images.iloc[0]
        uri = thumbnail_data_uri(run.path(str(im["path"])), opts.thumb_px, opts.jpeg_quality)
        if uri is None:
            picture = (f'<div class="missing" data-testid="identity-crop-missing">image '
                       f"{esc(im['path'])} is missing or unreadable</div>")
        else:
            picture = (f'<img data-testid="identity-crop" src="{uri}" '
                       f'alt="identity crop of {esc(identity_id)}">')
        box = im["box"]
        box_s = ("—" if box is None or isinstance(box, float)
                 else "[" + ", ".join(fmt_num(b) for b in box) + "]")
        lines.append(f"image: clip {esc(im['source_clip_id'])}, frame "
                     f"{esc(fmt_num(im['frame_index']))}, box {esc(box_s)}")
    else:
        picture = ('<div class="missing" data-testid="identity-crop-missing">'
                   "no image reference</div>")
    if len(audios):
        au = audios.iloc[0]
        mono = read_mono(run.path(str(au["path"])), opts.max_wave_s)
        if mono is None:
            wave = (f'<div class="missing" data-testid="waveform-missing">audio '
                    f"{esc(au['path'])} is missing or unreadable</div>")
        else:
            wave = svg_waveform(*waveform_envelope(mono[0], opts.wave_columns))
        s, e = au["start_s"], au["end_s"]
        dur = "" if missing(s) or missing(e) else f" ({fmt_s(e - s)} s)"
        lines.append(f'voice: clip {esc(au["source_clip_id"])}, <span data-testid="span">'
                     f"{esc(fmt_s(s))}–{esc(fmt_s(e))} s{esc(dur)}</span>")
    else:
        wave = '<div class="missing" data-testid="waveform-missing">no audio reference</div>'
    return (f'<figure class="card" data-testid="identity-card" data-identity="{esc(identity_id)}">'
            f'<div class="media">{picture}{wave}</div>'
            f"<figcaption>{'<br>'.join(lines)}</figcaption></figure>")


def contact_sheet_section(run: RunData, opts: ReportOptions) -> str:
    refs = run.table("references")
    if refs is None:
        return section("contact-sheet", "Contact sheet", NONE)
    ids = list(dict.fromkeys(refs["identity_id"].tolist()))
    shown = ids[:opts.max_identities]
    note = f"<p>{len(ids)} identit{'y' if len(ids) == 1 else 'ies'} with references"
    note += (f", showing the first {len(shown)}</p>" if len(shown) < len(ids) else "</p>")
    groups = dict(tuple(refs.groupby("identity_id", sort=False)))
    cards = [identity_card(run, i, groups[i], opts) for i in shown]
    return section("contact-sheet", "Contact sheet",
                   note + '<div class="sheet">' + "".join(cards) + "</div>")


# ----------------------------------------------------------------------------- captions


def as_list(value: object) -> list[Any]:
    """A list column value (None, list or numpy array) or JSON value as a plain list."""
    if value is None or isinstance(value, str | bytes | Mapping):
        return []
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return []


def read_caption(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, "caption file is missing"
    except (OSError, ValueError) as exc:
        return None, f"caption file is unreadable: {exc}"
    if not isinstance(data, dict):
        return None, "caption file is not a JSON object"
    return data, None


def caption_block(run: RunData, sample: Mapping[str, Any]) -> str:
    data, problem = read_caption(run.path(str(sample["caption_path"])))
    head = (f"<h3>{esc(sample['sample_id'])}</h3><p>{esc(sample['kind'])} / "
            f"{esc(sample['task'])}, clip {esc(sample['clip_id'])}, "
            f"{esc(fmt_num(sample['n_speakers']))} speaker(s)</p>")
    flags = as_list(sample.get("caption_flags"))
    if data is None:
        body = f'<p class="missing" data-testid="caption-missing">{esc(problem)}</p>'
    else:
        flags = as_list(data.get("flags")) or flags
        subjects = as_list(data.get("subjects"))
        subj = "".join(
            f"<li><code>{esc(s.get('anchor'))}</code> = {esc(s.get('speaker'))} "
            f"({esc(s.get('identity_id'))})</li>"
            for s in subjects if isinstance(s, Mapping))
        vlm = data.get("vlm")
        vlm_s = "none" if vlm is None else json.dumps(vlm, default=str)[:300]
        body = ((f"<ul class=\"subjects\">{subj}</ul>" if subj else "")
                + f'<pre data-testid="caption-text">{esc(data.get("caption", ""))}</pre>'
                + f"<p>vlm: <code>{esc(vlm_s)}</code></p>")
    flag_html = " ".join(f'<code class="flag">{esc(f)}</code>' for f in flags) or "none"
    return (f'<article data-testid="caption" data-sample="{esc(sample["sample_id"])}">{head}'
            f'{body}<p data-testid="caption-flags">flags: {flag_html}</p></article>')


def captions_section(run: RunData, opts: ReportOptions) -> str:
    samples = run.table("samples")
    if samples is None or opts.n_captions <= 0:
        return section("captions", "Sample captions", NONE)
    shown = samples.head(opts.n_captions)
    note = f"<p>showing {len(shown)} of {len(samples)} sample(s)</p>"
    return section("captions", "Sample captions",
                   note + "".join(caption_block(run, r) for r in shown.to_dict("records")))


# ----------------------------------------------------------------------------- the page

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222}
h1{margin:.2em 0}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f4f4f4}code{background:#f4f4f4;padding:0 3px;margin-right:3px}
.facts{display:grid;grid-template-columns:max-content auto;gap:2px 12px}.facts dt{color:#666}
.facts dd{margin:0}.problems{color:#a00}.none,.more,.missing{color:#888}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart h3{margin:.3em 0}
.hist .bar{fill:#4a78b5}.hist .axis{stroke:#444}.hist text{font-size:10px;fill:#333}
.hist .label{font-size:11px}.sheet{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;margin:0;padding:6px;width:380px;font-size:12px}
.card .media{display:flex;gap:6px;align-items:center}.card img{max-width:128px}
.wave polygon{fill:#3a8a5c}.wave .mid{stroke:#bbb}
pre{background:#f8f8f8;border:1px solid #eee;padding:6px;white-space:pre-wrap;max-height:360px;
overflow:auto}article{border-top:1px dashed #ccc;margin-top:.8em}
"""

SCRIPT = ("window.addEventListener('load',function(){var im=document.images,ok=0;"
          "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}"
          "document.body.dataset.imagesLoaded=ok+'/'+im.length;});")


def page(title: str, sections: Sequence[str]) -> str:
    """A self-contained HTML page of ``sections`` (the frame every curation report uses)."""
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src 'sha256-{digest}'")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f"<title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(sections)
            + f"\n<script>{SCRIPT}</script>\n</body></html>\n")


def write_page(run: RunData, html_page: str) -> Path:
    """``report.html`` of ``run``, written atomically (and uploaded when the run is remote);
    returns its local path."""
    path = run.out / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html_page, encoding="utf-8")
    os.replace(tmp, path)
    if run.folder is not None:
        run.folder.publish("report.html")
    return path


def render_report(run: RunData, opts: ReportOptions | None = None) -> str:
    """The whole page as a string."""
    o = opts or ReportOptions()
    return page(f"In-pair curation report: {run.name.rstrip('/').rsplit('/', 1)[-1]}",
                [header_section(run), stages_section(run), errors_section(run, o),
                 filters_section(run, o), histograms_section(run, o),
                 contact_sheet_section(run, o), captions_section(run, o)])


def write_report(out: RunFolder | str | os.PathLike[str],
                 options: ReportOptions | None = None) -> Path:
    """Write ``OUT/report.html`` for the curation output ``out`` (a folder, a URL or a
    :class:`RunFolder`; a remote output gets it uploaded); returns its local path."""
    run = load_run(out)
    return write_page(run, render_report(run, options))
