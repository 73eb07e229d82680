"""Charts as inline SVG: histograms of a column and horizontal bars of named figures.

Drawn here rather than with a plotting library because a report must be one file that any
browser shows without a script or a network (a plotting library would add megabytes of
JavaScript or a PNG per chart), and because SVG keeps the numbers in the DOM: every bar carries
``data-count`` / ``data-value`` so a test reads a chart the way it reads a table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .page import NONE, esc, fmt_num


@dataclass(frozen=True)
class Bin:
    """One histogram bar: values in [lo, hi) (the last bin includes hi), and how many."""

    lo: float
    hi: float
    count: int


def histogram_bins(values: Iterable[object], bins: int = 12, *, integer: bool = False,
                   max_int_bins: int = 40) -> list[Bin]:
    """Bins over the finite values: one per integer from min to max when ``integer`` (and the
    range is at most ``max_int_bins``), else ``bins`` equal-width bins; [] without values.

    Values equal up to float rounding make one bin: a column like ``frames / fps`` would
    otherwise spread one true value over a dozen empty-looking bins.
    """
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
    if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):
        return [Bin(lo, hi, len(v))]
    counts, edges = np.histogram(v, bins=max(1, bins), range=(lo, hi))
    return [Bin(float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts)]


def svg_histogram(bins: Sequence[Bin], x_label: str, y_label: str, testid: str, *,
                  integer: bool = False, width: int = 420, height: int = 220) -> str:
    """Vertical bars with their counts, x ticks at bin edges (or integer centres), axis labels."""
    ml, mr, mt, mb = 46, 22, 18, 46  # room for the last tick's label on the right
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


def histogram_block(values: pd.Series | Sequence[object] | None, title: str, x_label: str,
                    y_label: str, testid: str, *, bins: int = 12, max_int_bins: int = 40,
                    integer: bool = False) -> str:
    """A titled histogram of a column with its count, min, median and max (and how many
    values were missing); "none" without a finite value, so an empty run still has the block."""
    head = f"<h3>{esc(title)}</h3>"
    if values is None:
        return f'<div class="chart">{head}{NONE}</div>'
    v = pd.to_numeric(pd.Series(values), errors="coerce").astype(float)
    finite = v[np.isfinite(v)]
    hist = histogram_bins(finite, bins, integer=integer, max_int_bins=max_int_bins)
    if not hist:
        return f'<div class="chart">{head}{NONE}</div>'
    stats = (f"<p>{len(finite)} value(s); min {fmt_num(finite.min())}, median "
             f"{fmt_num(finite.median())}, max {fmt_num(finite.max())}"
             + (f"; {len(v) - len(finite)} without a value" if len(v) > len(finite) else "")
             + "</p>")
    return (f'<div class="chart">{head}'
            + svg_histogram(hist, x_label, y_label, testid, integer=integer) + stats + "</div>")


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a label, its value, and a group (bars of a group share a colour)."""

    label: str
    value: float
    group: str = ""


def svg_bars(bars: Sequence[Bar], testid: str, *, unit: str = "", width: int = 640,
             label_px: int = 190, row_px: int = 18,
             fmt: Callable[[float], str] = fmt_num) -> str:
    """Horizontal bars on one scale, each labelled with its value: which of many named
    figures (seconds per step) dominates is read at a glance. A bar with no finite value is
    drawn empty and labelled with a dash. Groups take colours in order of first appearance
    (six, then they repeat); ``fmt`` formats the value labels."""
    if not bars:
        return NONE
    vals = [b.value if isinstance(b.value, int | float) and math.isfinite(b.value) else None
            for b in bars]
    top = max((v for v in vals if v is not None), default=0.0) or 1.0
    top = max(top, 1e-12)
    value_px = 64
    pw = max(40, width - label_px - value_px)
    mt, mb = 6, 6
    height = mt + mb + row_px * len(bars)
    colours: dict[str, int] = {}
    out = [f'<svg data-testid="{esc(testid)}" class="bars" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    suffix = f" {unit}" if unit else ""
    for i, (b, v) in enumerate(zip(bars, vals, strict=True)):
        g = colours.setdefault(b.group, len(colours) % 6)
        y = mt + i * row_px
        w = 0.0 if v is None or v <= 0 else pw * v / top
        shown = "—" if v is None else fmt(v) + suffix
        out.append(f'<text x="{label_px - 6}" y="{y + row_px * 0.7:.1f}" text-anchor="end">'
                   f"{esc(b.label)}</text>")
        out.append(f'<rect class="bar g{g}" data-label="{esc(b.label)}" '
                   f'data-value="{"" if v is None else v}" x="{label_px}" y="{y + 2}" '
                   f'width="{w:.2f}" height="{row_px - 4}"><title>{esc(b.label)}: {esc(shown)}'
                   "</title></rect>")
        out.append(f'<text x="{label_px + w + 4:.2f}" y="{y + row_px * 0.7:.1f}">{esc(shown)}'
                   "</text>")
    out.append(f'<line class="axis" x1="{label_px}" y1="{mt}" x2="{label_px}" '
               f'y2="{height - mb}"/>')
    out.append("</svg>")
    return "".join(out)
