"""The HTML report of a cross-pair curation run: one self-contained page, ``OUT/report.html``.

Built like the in-pair report (:mod:`pipelines.inpair.report`: same page frame, escaping,
Content-Security-Policy, embedded media, a missing table never stops it). Sections:

- ``header``: the in-pair runs, wall time, rows per table;
- ``stages``: in / out / failed / seconds of retrieval, the voice steps and samples;
  ``errors``: grouped by stage and reason;
- ``retrieval``: verified matches and refusals by reason, cosine histogram, and precision /
  recall when the run was scored against a sample corpus (``OUT/score.json``);
- ``voices``: clones made and passed, the speaker-similarity and WER pass rates, their
  histograms, and the first clones (text, Whisper's transcript, waveform);
- ``samples``: what became of each in-pair sample, and the stage-3 table's tasks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from omni_core.storage import RunFolder

from ..inpair import report as inpair_report
from ..inpair.report import (
    NONE,
    Html,
    ReportOptions,
    RunData,
    errors_section,
    esc,
    fmt_num,
    histogram_block,
    html_table,
    page,
    read_mono,
    read_table,
    section,
    stages_section,
    svg_waveform,
    waveform_envelope,
    write_page,
)

TABLES = ("identity_matches", "voices", "crosspair_sources", "samples", "references",
          "errors")


def load_run(out: RunFolder | str | os.PathLike[str]) -> RunData:
    """The run at a folder, a URL or a :class:`RunFolder` (remote tables are staged)."""
    run = inpair_report.load_run(out, TABLES)
    run.path("stage3/samples.parquet")  # staged when remote
    run.path("score.json")
    stage3, st = read_table(run.out / "stage3", "samples")
    run.state["stage3/samples"] = st
    if stage3 is not None:
        run.tables["stage3/samples"] = stage3
    elif st.startswith("unreadable"):
        run.problems.append(f"stage3/samples: {st}")
    return run


def _score(run: RunData) -> dict[str, Any]:
    path = run.out / "score.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def header_section(run: RunData) -> str:
    s = run.summary
    runs = s.get("runs") if isinstance(s.get("runs"), list) else []
    wall = s.get("wall_s")
    facts = [("output folder", str(run.out)),
             ("in-pair runs", ", ".join(map(str, runs)) or "none"),
             ("in-pair samples", fmt_num(s.get("inpair_samples"))
              if s.get("inpair_samples") is not None else "none"),
             ("wall time", f"{fmt_num(wall)} s" if isinstance(wall, int | float) else "none")]
    dl = "".join(f'<dt>{esc(k)}</dt><dd data-testid="fact-{esc(k.split()[-1])}">{esc(v)}</dd>'
                 for k, v in facts)
    rows = [(t, len(run.tables[t]) if t in run.tables else "none", run.state.get(t, "?"))
            for t in (*TABLES, "stage3/samples")]
    problems = ("<ul class=\"problems\">" + "".join(f"<li>{esc(p)}</li>" for p in run.problems)
                + "</ul>") if run.problems else ""
    return ('<section data-testid="header"><h1>Cross-pair curation report</h1>\n'
            f'<dl class="facts">{dl}</dl>{problems}<h3>Rows per table</h3>'
            + html_table(("table", "rows", "manifest"), rows,
                         row_attrs=[f'data-table="{esc(r[0])}"' for r in rows])
            + "\n</section>")


def retrieval_section(run: RunData, opts: ReportOptions) -> str:
    m = run.table("identity_matches")
    score = _score(run).get("retrieval")
    parts = []
    if isinstance(score, dict):
        parts.append(
            '<p data-testid="retrieval-score">against the sample corpus truth: precision '
            f"{fmt_num(score.get('precision'))} ({score.get('correct')}/{score.get('matches')}"
            f" verified matches the same person), recall {fmt_num(score.get('recall'))} "
            f"({score.get('found')}/{score.get('positives')} same-person pairs found)</p>")
    if m is None:
        return section("retrieval", "Identity retrieval", "".join(parts) + NONE)
    ok = m[m.verified]
    parts.append(f"<p>{m.query_identity_id.nunique()} subject(s) with candidates above the "
                 f"threshold; {len(ok)} verified match(es) for {ok.query_identity_id.nunique()}"
                 f" of them; {len(m) - len(ok)} refused</p>")
    refused = m[~m.verified].reason.fillna("?").str.replace(r"\s*[\d.]+.*$", "", regex=True)
    if len(refused):
        parts.append(html_table(("refused because", "candidates"),
                                sorted(refused.value_counts().items())))
    parts.append(histogram_block(m.cosine, "Cosine of the candidates", "cosine",
                                 "candidates", "cosine-hist", opts))
    return section("retrieval", "Identity retrieval", "\n".join(parts))


def voices_section(run: RunData, opts: ReportOptions, n_cards: int = 8) -> str:
    v = run.table("voices")
    if v is None:
        return section("voices", "Cloned voices", NONE)
    s = run.summary.get("voices") if isinstance(run.summary.get("voices"), dict) else {}

    def rate(key: str) -> str:
        x = s.get(key)
        return "n/a" if x is None else f"{100 * float(x):.0f}%"

    wer_gate = (f"WER at most {fmt_num(s['max_wer'])}: pass rate {rate('wer_pass_rate')}"
                if s.get("max_wer") is not None else "words not checked (check.max_wer null)")
    parts = [f'<p data-testid="voice-rates">{len(v)} voice(s) cloned, {int(v.passed.sum())} '
             f"passed (of {s.get('checked', '?')} checked); speaker similarity at least "
             f"{fmt_num(s.get('min_similarity'))}: pass rate {rate('similarity_pass_rate')}; "
             f"{esc(wer_gate)}; backend {esc(', '.join(sorted(set(v.backend))))}</p>"]
    parts.append(histogram_block(v.similarity, "Speaker similarity with the prompt",
                                 "WavLM-ECAPA cosine", "voices", "similarity-hist", opts))
    parts.append(histogram_block(v.wer, "WER of the clone", "WER", "voices", "wer-hist", opts))
    rows = []
    for r in v.head(n_cards).itertuples():
        wave: Any = "—"
        if isinstance(r.path, str):
            got = read_mono(run.path(r.path), opts.max_wave_s)
            if got is not None:
                wave = Html(svg_waveform(*waveform_envelope(got[0], opts.wave_columns)))
        rows.append((r.voice_id, "passed" if r.passed else (r.reason or "failed"), r.text,
                     r.transcript or "—",
                     r.similarity if pd.notna(r.similarity) else "—",
                     r.wer if pd.notna(r.wer) else "—", wave))
    parts.append(html_table(("voice", "verdict", "text", "transcript", "similarity", "WER",
                             "waveform"), rows))
    return section("voices", "Cloned voices", "\n".join(parts))


def samples_section(run: RunData) -> str:
    src = run.table("crosspair_sources")
    parts = []
    if src is not None:
        parts.append("<h3>In-pair samples</h3>" + html_table(
            ("became", "in-pair samples", "example reason"),
            [(k, len(g), g.reason.dropna().iloc[0] if g.reason.notna().any() else "—")
             for k, g in src.groupby("status")],
            row_attrs=[f'data-status="{esc(k)}"' for k in sorted(src.status.unique())]))
    st3 = run.table("stage3/samples")
    if st3 is not None:
        counts = st3.task.value_counts()
        parts.append("<h3>Stage-3 table</h3>" + html_table(
            ("task", "samples"), [(t, int(counts.get(t, 0))) for t in ("r2av", "rv2av", "ra2v")],
            row_attrs=[f'data-task="{t}"' for t in ("r2av", "rv2av", "ra2v")]))
    return section("samples", "Samples", "\n".join(parts) or NONE)


def render_report(run: RunData, opts: ReportOptions | None = None) -> str:
    o = opts or ReportOptions()
    return page(f"Cross-pair curation report: {run.name.rstrip('/').rsplit('/', 1)[-1]}",
                [header_section(run), stages_section(run), errors_section(run, o),
                 retrieval_section(run, o), voices_section(run, o), samples_section(run)])


def write_report(out: RunFolder | str | os.PathLike[str],
                 options: ReportOptions | None = None) -> Path:
    """Write ``OUT/report.html`` for the cross-pair output ``out`` (a folder, a URL or a
    :class:`RunFolder`; uploaded when remote); returns its local path."""
    run = load_run(out)
    return write_page(run, render_report(run, options))
