"""The HTML report of a cross-pair curation run: one self-contained page, ``OUT/report.html``.

Built with the report kit (:mod:`omni_core.report`: page frame, escaping, Content-Security-
Policy, charts, waveforms, and the sections every job report has); a missing table never stops
it, a missing or older ``summary.json`` shows as a note. Sections:

- ``header``: the in-pair runs and their samples (``summary.details``), the job's items and
  wall time, rows per table;
- ``stages``: retrieval, voices (its steps labels, prompt, clone, enhance, check) and samples;
  ``errors``: per stage or step and reason, and the rows (the kit's job sections);
- ``retrieval``: verified matches and refusals by reason, cosine histogram, and precision /
  recall when the run was scored against a sample corpus (``OUT/score.json``);
- ``voices``: clones made and passed, the speaker-similarity and WER pass rates
  (``summary.details.voices``), their histograms, and the first clones (text, Whisper's
  transcript, waveform);
- ``samples``: what became of each in-pair sample, and the stage-3 table's tasks;
- ``provenance``: suite version, commit, weights and checkpoints, inputs, config (the kit's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from omni_core.report import (
    NONE,
    Html,
    ReportOptions,
    RunData,
    errors_section,
    esc,
    facts,
    fmt_num,
    histogram_block,
    html_table,
    job_facts,
    load_run,
    page,
    problems_list,
    provenance_section,
    read_table,
    rows_per_table,
    section,
    stages_section,
    waveform,
    write_page,
)
from omni_core.storage import RunFolder

TABLES = ("identity_matches", "voices", "crosspair_sources", "samples", "references",
          "errors")
SECTIONS = ("header", "stages", "errors", "retrieval", "voices", "samples", "provenance")


def load_crosspair_run(out: RunFolder | str | os.PathLike[str]) -> RunData:
    """The run at a folder, a URL or a :class:`RunFolder` (remote tables are staged), with
    the stage-3 table of ``OUT/stage3`` as ``stage3/samples``."""
    run = load_run(out, TABLES, extra=("stage3/samples.parquet", "score.json"))
    run.add_table("stage3/samples", *read_table(run.out / "stage3", "samples"))
    return run


def _score(run: RunData) -> dict[str, Any]:
    """``OUT/score.json`` (written by ``omni curate score``), or {} when absent or broken."""
    path = run.out / "score.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def header_section(run: RunData) -> str:
    runs = run.summary.detail("runs", list, [])
    n_samples = run.summary.detail("inpair_samples", (int, float))
    dl = facts([("output", "output folder", run.name),
                ("runs", "in-pair runs", ", ".join(map(str, runs)) or "none"),
                ("samples", "in-pair samples",
                 fmt_num(n_samples) if n_samples is not None else "none"),
                *job_facts(run.summary)])
    return ('<section data-testid="header"><h1>Cross-pair curation report</h1>\n'
            + dl + problems_list(run.problems) + "<h3>Rows per table</h3>"
            + rows_per_table(run, (*TABLES, "stage3/samples"), counted=False)
            + "\n</section>")


def retrieval_section(run: RunData, opts: ReportOptions) -> str:
    """How well subjects were found in other videos: the step every cross-pair sample
    depends on."""
    m = run.table("identity_matches")
    score = _score(run).get("retrieval")
    parts = []
    if isinstance(score, dict):
        parts.append(
            '<p data-testid="retrieval-score">against the sample corpus truth: precision '
            f"{esc(fmt_num(score.get('precision')))} ({esc(score.get('correct'))}/"
            f"{esc(score.get('matches'))} verified matches the same person), recall "
            f"{esc(fmt_num(score.get('recall')))} ({esc(score.get('found'))}/"
            f"{esc(score.get('positives'))} same-person pairs found)</p>")
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
                                 "candidates", "cosine-hist", bins=opts.hist_bins))
    return section("retrieval", "Identity retrieval", "\n".join(parts))


def voices_section(run: RunData, opts: ReportOptions, n_cards: int = 8) -> str:
    """What the voice checks passed (rates from ``summary.details.voices``, counts from the
    table) and the first clones to listen to on paper: text, transcript, waveform."""
    v = run.table("voices")
    if v is None:
        return section("voices", "Cloned voices", NONE)
    s = run.summary.detail("voices", Mapping, {})

    def rate(key: str) -> str:
        x = s.get(key)
        return f"{100 * float(x):.0f}%" if isinstance(x, int | float) else "n/a"

    wer_gate = (f"WER at most {fmt_num(s['max_wer'])}: pass rate {rate('wer_pass_rate')}"
                if s.get("max_wer") is not None else "words not checked (check.max_wer null)")
    parts = [f'<p data-testid="voice-rates">{len(v)} voice(s) cloned, {int(v.passed.sum())} '
             f"passed (of {esc(s.get('checked', '?'))} checked); speaker similarity at least "
             f"{fmt_num(s.get('min_similarity'))}: pass rate {rate('similarity_pass_rate')}; "
             f"{esc(wer_gate)}; backend {esc(', '.join(sorted(set(v.backend))))}</p>"]
    parts.append(histogram_block(v.similarity, "Speaker similarity with the prompt",
                                 "WavLM-ECAPA cosine", "voices", "similarity-hist",
                                 bins=opts.hist_bins))
    parts.append(histogram_block(v.wer, "WER of the clone", "WER", "voices", "wer-hist",
                                 bins=opts.hist_bins))
    rows = []
    for r in v.head(n_cards).itertuples():
        wave: Any = "—"
        if isinstance(r.path, str):
            svg = waveform(run.path(r.path), columns=opts.wave_columns,
                           max_s=opts.max_wave_s, label="cloned voice waveform")
            if svg is not None:
                wave = Html(svg)
        rows.append((r.voice_id, "passed" if r.passed else (r.reason or "failed"), r.text,
                     r.transcript or "—",
                     r.similarity if pd.notna(r.similarity) else "—",
                     r.wer if pd.notna(r.wer) else "—", wave))
    parts.append(html_table(("voice", "verdict", "text", "transcript", "similarity", "WER",
                             "waveform"), rows))
    return section("voices", "Cloned voices", "\n".join(parts))


def samples_section(run: RunData) -> str:
    """What became of each in-pair sample, and the task mix of the stage-3 table."""
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
    """The whole page as a string."""
    o = opts or ReportOptions()
    return page(f"Cross-pair curation report: {run.short_name}",
                [header_section(run), stages_section(run.summary),
                 errors_section(run.summary, run.tables.get("errors"), o,
                                state=run.state.get("errors", "absent")),
                 retrieval_section(run, o), voices_section(run, o), samples_section(run),
                 provenance_section(run.summary, o)])


def write_report(out: RunFolder | str | os.PathLike[str],
                 options: ReportOptions | None = None) -> Path:
    """Write ``OUT/report.html`` for the cross-pair output ``out`` (a folder, a URL or a
    :class:`RunFolder`; uploaded when remote); returns its local path."""
    run = load_crosspair_run(out)
    return write_page(run, render_report(run, options))
