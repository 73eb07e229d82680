"""The page frame of every HTML report, and the small builders every section is made of.

A report is one self-contained file: no network, no external script or style sheet, so it can
be mailed, attached to a ticket or opened from a bucket years later and look the same. The
frame (:func:`page`) therefore inlines its style, and a Content-Security-Policy meta tag allows
only ``data:`` images and media, inline styles and the one inline script (by its hash): even a
string that escaped escaping could not load or run anything.

A report too big for one file (one with videos) is a *folder* of pages instead: ``page(...,
local_files=True)`` also admits images and media from the page's own origin (the files beside
it when opened from disk; never another host), and ``scripts`` adds inline scripts of the
report's own (filters, media checks), each admitted by its hash like the kit's.

Everything that comes from data (manifests, file names, error messages, configs) goes through
:func:`esc`; a fragment that is already HTML is marked :class:`Html` so it is not escaped twice.
The builders format numbers one way (:func:`fmt_num`) so tables of different jobs read alike.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NONE = '<p class="none">none</p>'

#: (key, label, value) of a fact list: ``key`` names the ``data-testid="fact-<key>"`` hook
Fact = tuple[str, str, object]


@dataclass(frozen=True)
class ReportOptions:
    """How much a page shows: the limits that keep a report of a big run small enough to open.

    A report embeds its media and lists rows inline, so every list a run can make long has a cap
    here; what is cut is always counted on the page ("+12 more").
    """

    thumb_px: int = 128  # longest side of an embedded image, never upscaled
    jpeg_quality: int = 85  # quality of the embedded images
    wave_columns: int = 200  # columns of a waveform's min/max envelope
    max_wave_s: float = 60.0  # audio read per waveform, from its start
    hist_bins: int = 12  # bins of a continuous histogram
    max_int_bins: int = 40  # an integer histogram with a wider range falls back to hist_bins
    examples: int = 3  # example values (reasons, items) shown per group
    max_reason_groups: int = 20  # distinct (error type, reason) groups listed per stage
    max_error_rows: int = 50  # error rows listed one by one
    max_list: int = 20  # entries of any other list (inputs, ...)
    max_media_bytes: int = 2_000_000  # a larger audio/video file is linked by name, not embedded


class Html(str):
    """A fragment that is already HTML and must not be escaped again."""


class Figure(str):
    """A number already formatted (``"4.75"``, ``"12 s"``): a table escapes it like text but
    right-aligns it like a number, so a column of formatted seconds lines up."""


def missing(value: object) -> bool:
    """None or a float NaN (what pandas puts in a null string cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def esc(value: object) -> str:
    """HTML-escape any value, quotes included so it is safe in attributes too (None and NaN
    become the empty string; :class:`Html` passes through)."""
    if isinstance(value, Html):
        return value
    return "" if missing(value) else html.escape(str(value), quote=True)


def fmt_num(x: object) -> str:
    """A short human form of a number: integers as such, floats with 0-3 decimals by size; a
    dash when absent; a non-number as its text."""
    if x is None or isinstance(x, bool):
        return "—" if x is None else str(x)
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
    """A time in seconds with two decimals (a dash when absent): timings line up in columns."""
    if isinstance(x, bool):
        return "—"
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(v) else f"{v:.2f}"


def fmt_bytes(n: object) -> str:
    """A size in bytes as a person reads it (``1.5 GiB``); a dash when absent."""
    if isinstance(n, bool) or not isinstance(n, int | float | np.number) or missing(n):
        return "—"
    v = float(n)
    if abs(v) < 1024:
        return f"{int(v)} B"
    k = min(4, int(math.log(abs(v), 1024)))
    return f"{v / 1024 ** k:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[k - 1]}"


def is_number(value: object) -> bool:
    """A real number a table should right-align (bools are flags, not numbers)."""
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *,
               row_attrs: Sequence[str] | None = None, cls: str = "", testid: str = "") -> str:
    """A ``<table>``; cells are escaped unless they are :class:`Html`; numbers are formatted
    and right-aligned. ``row_attrs[i]`` is raw attribute text of row ``i`` (escape its values)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        attrs = f" {row_attrs[i]}" if row_attrs and row_attrs[i] else ""
        cells = "".join(f'<td class="num">{fmt_num(c)}</td>' if is_number(c)
                        else f'<td class="num">{esc(c)}</td>' if isinstance(c, Figure)
                        else f"<td>{esc(c)}</td>" for c in row)
        body.append(f"<tr{attrs}>{cells}</tr>")
    c = f' class="{esc(cls)}"' if cls else ""
    t = f' data-testid="{esc(testid)}"' if testid else ""
    return f"<table{c}{t}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def section(testid: str, title: str, body: str) -> str:
    """A ``<section data-testid=...>`` with its heading: the unit a test (or a reader) finds."""
    return f'<section data-testid="{esc(testid)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def note(text: str, testid: str = "note") -> str:
    """A paragraph saying why something is not shown (a missing file, an older format)."""
    return f'<p class="note" data-testid="{esc(testid)}">{esc(text)}</p>'


def missing_box(text: str, testid: str) -> str:
    """A placeholder where a picture or a waveform would be, saying why it is not."""
    return f'<div class="missing" data-testid="{esc(testid)}">{esc(text)}</div>'


def examples_html(values: Sequence[object], total: int) -> Html:
    """The first few values as code, and how many more there are (``total`` counts all)."""
    parts = [f"<code>{esc(v)}</code>" for v in values]
    more = total - len(values)
    if more > 0:
        parts.append(f'<span class="more">+{more} more</span>')
    return Html(" ".join(parts))


def slug(text: str) -> str:
    """``text`` as a lowercase test-id word (letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def facts(items: Iterable[Fact]) -> str:
    """A two-column list of facts, each value at ``data-testid="fact-<key>"``."""
    dl = "".join(f'<dt>{esc(label)}</dt><dd data-testid="fact-{esc(slug(key))}">{esc(value)}'
                 "</dd>" for key, label, value in items)
    return f'<dl class="facts">{dl}</dl>'


def problems_list(problems: Sequence[str]) -> str:
    """What went wrong reading the run, in red at the top (empty when nothing did)."""
    if not problems:
        return ""
    items = "".join(f"<li>{esc(p)}</li>" for p in problems)
    return f'<ul class="problems" data-testid="problems">{items}</ul>'


def more_line(shown: int, total: int, what: str, testid: str = "more") -> str:
    """``showing 50 of 1234 <what>`` when a list was cut, else nothing."""
    if total <= shown:
        return ""
    return (f'<p class="more" data-testid="{esc(testid)}">showing {shown} of {total} {esc(what)}'
            f" ({total - shown} more not shown)</p>")


def code_list(values: Sequence[object], limit: int, testid: str = "list") -> str:
    """A bulleted list of the first ``limit`` values as code, and how many were left out."""
    if not values:
        return NONE
    items = "".join(f"<li><code>{esc(v)}</code></li>" for v in values[:limit])
    return (f'<ul class="codes" data-testid="{esc(testid)}">{items}</ul>'
            + more_line(min(limit, len(values)), len(values), "entries", f"{testid}-more"))


def json_details(summary: str, value: object, testid: str = "json") -> str:
    """A collapsed ``<details>`` holding ``value`` as indented JSON: all of it is on the page
    for whoever needs it, without pushing the figures off screen."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    return (f'<details data-testid="{esc(testid)}"><summary>{esc(summary)}</summary>'
            f"<pre>{esc(text)}</pre></details>")


# ----------------------------------------------------------------------------- the frame

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222}
h1{margin:.2em 0}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f4f4f4}code{background:#f4f4f4;padding:0 3px;margin-right:3px}
tr.step td:first-child{padding-left:2em;color:#555}tr.step{font-size:13px}
tr.total td{font-weight:600;border-top:2px solid #bbb}
.facts{display:grid;grid-template-columns:max-content auto;gap:2px 12px}.facts dt{color:#666}
.facts dd{margin:0}.problems{color:#a00}.note{color:#8a5a00;background:#fff7e0;padding:4px 8px}
.none,.more,.missing{color:#888}.codes{margin:.3em 0;padding-left:1.4em}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart h3{margin:.3em 0}
.hist .bar{fill:#4a78b5}.hist .axis,.bars .axis{stroke:#444}.hist text,.bars text{font-size:10px;
fill:#333}.hist .label{font-size:11px}.bars .g0{fill:#4a78b5}.bars .g1{fill:#d08a2e}
.bars .g2{fill:#3a8a5c}.bars .g3{fill:#9a5ab5}.bars .g4{fill:#b54a4a}.bars .g5{fill:#4aa5b5}
.sheet{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;margin:0;padding:6px;width:380px;font-size:12px}
.card .media{display:flex;gap:6px;align-items:center}.card img{max-width:128px}
.wave polygon{fill:#3a8a5c}.wave .mid{stroke:#bbb}
pre{background:#f8f8f8;border:1px solid #eee;padding:6px;white-space:pre-wrap;max-height:360px;
overflow:auto}article{border-top:1px dashed #ccc;margin-top:.8em}details{margin:.5em 0}
details summary{cursor:pointer;color:#345}
[hidden]{display:none!important}.filters{display:flex;flex-wrap:wrap;gap:14px;align-items:center;
background:#f4f6fa;border:1px solid #dde;padding:6px 10px;position:sticky;top:0;z-index:2}
"""

#: writes ``document.body.dataset.imagesLoaded = "<decoded>/<total>"`` once the page loaded, so a
#: headless browser can check that every embedded image decodes
SCRIPT = ("window.addEventListener('load',function(){var im=document.images,ok=0;"
          "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}"
          "document.body.dataset.imagesLoaded=ok+'/'+im.length;});")


def script_hash(script: str) -> str:
    """The CSP source admitting exactly this inline script (``'sha256-...'``)."""
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return f"'sha256-{digest}'"


def content_security_policy(scripts: Sequence[str] = (), *, local_files: bool = False) -> str:
    """Nothing but data: images and media, inline styles, :data:`SCRIPT` and ``scripts`` (by
    their hashes); with ``local_files``, images and media from the page's own origin too (files
    of the report's folder opened from disk)."""
    media = "data: 'self'" if local_files else "data:"
    hashes = " ".join(script_hash(s) for s in dict.fromkeys((SCRIPT, *scripts)))
    return (f"default-src 'none'; img-src {media}; media-src {media}; "
            f"style-src 'unsafe-inline'; script-src {hashes}")


def page(title: str, sections: Sequence[str], *, style: str = "", scripts: Sequence[str] = (),
         local_files: bool = False) -> str:
    """A self-contained HTML page of ``sections`` (``style``: extra CSS of one report;
    ``scripts``: inline scripts run after the kit's, in order; ``local_files``: the page shows
    images and media from files beside it, see :func:`content_security_policy`)."""
    extra = "".join(f"\n<script>{s}</script>" for s in dict.fromkeys(scripts) if s != SCRIPT)
    csp = content_security_policy(scripts, local_files=local_files)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f"<title>{esc(title)}</title>"
            f"<style>{STYLE}{style}</style></head>\n<body>\n" + "\n".join(sections)
            + f"\n<script>{SCRIPT}</script>{extra}\n</body></html>\n")


def write_html(path: str | os.PathLike[str], text: str) -> Path:
    """Write a page atomically (a reader never sees half a report); returns its path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)
    return p

