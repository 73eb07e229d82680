"""The HTML report of an in-pair curation run: one self-contained page, ``OUT/report.html``.

:func:`write_report` reads what ``omni curate inpair`` left in its output folder (the Parquet
manifests, ``summary.json``, the reference PNGs and WAVs, the caption JSON files) and writes a
single page with the report kit (:mod:`omni_core.report`: frame, escaping, charts, media, and
the sections every job report has). This module holds only what is in-pair's own.

Sections, top to bottom (each a ``<section data-testid=...>``):

- ``header``: the job's items (inputs), wall time, the most decodes of one clip, rows per
  table (and tables that are absent or unreadable);
- ``stages`` (prepare, audio, visual, caption, finish, with their steps), ``errors`` (per
  stage or step and reason, and the rows): the kit's job sections;
- ``filters``: clips per ``clips.status`` with example reasons (from ``summary.details.filters``
  when the clips table cannot be read), face-track rejects per kind (the word before the first
  space of each ``"; "``-joined ``reject_reason`` part);
- ``histograms``: clip durations, smallest face side, best sync confidence, speakers per clip;
- ``contact-sheet``: per identity with references, its image crop beside its voice waveform;
- ``captions``: the first few samples' caption text and flags;
- ``provenance``: suite version, commit, weights and checkpoints, inputs, config (the kit's).

A missing table or file never stops the report: its section says "none" or names the problem;
a missing or older ``summary.json`` shows as a note. Every string from the data is escaped.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from omni_core.manifests import CLIP_STATUS
from omni_core.report import (
    NONE,
    ReportOptions,
    RunData,
    card,
    contact_sheet,
    errors_section,
    esc,
    examples_html,
    facts,
    fmt_num,
    fmt_s,
    histogram_block,
    html_table,
    job_facts,
    load_run,
    missing,
    missing_box,
    page,
    problems_list,
    provenance_section,
    rows_per_table,
    section,
    stages_section,
    thumbnail,
    waveform,
    write_page,
)
from omni_core.storage import RunFolder

from .faces import reject_kinds

TABLES = ("videos", "clips", "speech_segments", "face_tracks", "identities", "references",
          "samples", "errors")
#: what the page reads of the big tables (counts, filters, histograms, the contact sheet):
#: never the embeddings, boxes, detections or transcripts
COLUMNS = {"videos": ("video_id",), "speech_segments": ("segment_id",),
           "face_tracks": ("track_id", "clip_id", "passed", "reject_reason", "min_face_px"),
           "identities": ("identity_id", "clip_id", "speaker", "sync_confidence")}
SECTIONS = ("header", "stages", "errors", "filters", "histograms", "contact-sheet", "captions",
            "provenance")


@dataclass(frozen=True)
class InpairOptions(ReportOptions):
    """The kit's limits and the in-pair page's own."""

    n_captions: int = 12  # samples whose caption is shown
    max_identities: int = 200  # identity cards on the contact sheet (keeps the page small)


# ----------------------------------------------------------------------------- header


def header_section(run: RunData) -> str:
    decodes = run.summary.detail("max_decodes_per_clip", Mapping, {})
    most = ", ".join(f"{k} {fmt_num(v)}" for k, v in decodes.items()) or "none"
    parts = run.summary.detail("models", Mapping, {}).get("parts", {})
    models = [(f"models-{part}", f"models: {part}",
               f"{p.get('profile', '?')}: {p.get('models', '?')}")
              for part, p in parts.items() if isinstance(p, Mapping)]
    dl = facts([("output", "output folder", run.name),
                *job_facts(run.summary, items="inputs"), *models,
                ("decodes", "most decodes of one clip", most)])
    return ('<section data-testid="header"><h1>In-pair curation report</h1>\n'
            + dl + problems_list(run.problems) + "<h3>Rows per table</h3>"
            + rows_per_table(run, TABLES) + "\n</section>")


# ----------------------------------------------------------------------------- filters


def _status_rows_from_summary(run: RunData) -> str:
    """Clips per status as ``summary.details.filters`` counts them, when the clips table is
    not there to count (a report of a run whose manifests were moved or broke)."""
    counts = run.summary.detail("filters", Mapping, {})
    counts = {str(k): int(v) for k, v in counts.items() if isinstance(v, int | float)}
    if not counts:
        return NONE
    total = sum(counts.values()) or 1
    statuses = list(CLIP_STATUS) + sorted(s for s in counts if s not in CLIP_STATUS)
    rows = [(st, counts.get(st, 0), f"{100 * counts.get(st, 0) / total:.1f}%")
            for st in statuses]
    attrs = [f'data-testid="status-row" data-status="{esc(st)}" data-count="{counts.get(st, 0)}"'
             for st in statuses]
    return ('<p class="note">the clips table is not readable: counts from summary.json</p>'
            + html_table(("status", "clips", "share"), rows, row_attrs=attrs))


def filters_section(run: RunData, opts: ReportOptions) -> str:
    """Why clips and face tracks were dropped: the first thing to read when a run gave few
    samples."""
    parts = ["<h3>Clips per status</h3>"]
    clips = run.table("clips")
    if clips is None:
        parts.append(_status_rows_from_summary(run))
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


def histograms_section(run: RunData, opts: ReportOptions) -> str:
    clips, tracks = run.table("clips"), run.table("face_tracks")
    kw = {"bins": opts.hist_bins, "max_int_bins": opts.max_int_bins}
    blocks = [
        histogram_block(None if clips is None else clips["end_s"] - clips["start_s"],
                        "Clip durations", "clip duration (s)", "clips", "hist-duration", **kw),
        histogram_block(None if tracks is None else tracks["min_face_px"],
                        "Face sizes", "smallest face side over the track (px)", "tracks",
                        "hist-face-px", **kw),
        histogram_block(None if clips is None else clips["best_sync"],
                        "Best sync confidence", "best speaker/face sync confidence", "clips",
                        "hist-sync", **kw),
        histogram_block(None if clips is None else clips["n_speakers"],
                        "Speakers per clip", "speakers per clip", "clips", "hist-speakers",
                        integer=True, **kw),
    ]
    return section("histograms", "Distributions", '<div class="charts">' + "".join(blocks)
                   + "</div>")


# ----------------------------------------------------------------------------- contact sheet


def identity_card(run: RunData, identity_id: str, refs: pd.DataFrame,
                  opts: ReportOptions) -> str:
    """An identity's image crop beside its voice's waveform: a reader checks at a glance
    that the face and the voice belong together."""
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
        picture = thumbnail(run.path(str(im["path"])), max_px=opts.thumb_px,
                            quality=opts.jpeg_quality, alt=f"identity crop of {identity_id}",
                            testid="identity-crop", shown_as=str(im["path"]))
        box = im["box"]
        box_s = ("—" if box is None or isinstance(box, float)
                 else "[" + ", ".join(fmt_num(b) for b in box) + "]")
        lines.append(f"image: clip {esc(im['source_clip_id'])}, frame "
                     f"{esc(fmt_num(im['frame_index']))}, box {esc(box_s)}")
    else:
        picture = missing_box("no image reference", "identity-crop-missing")
    if len(audios):
        au = audios.iloc[0]
        wave = waveform(run.path(str(au["path"])), columns=opts.wave_columns,
                        max_s=opts.max_wave_s, label="voice reference waveform")
        if wave is None:
            wave = missing_box(f"audio {au['path']} is missing or unreadable",
                               "waveform-missing")
        s, e = au["start_s"], au["end_s"]
        dur = "" if missing(s) or missing(e) else f" ({fmt_s(e - s)} s)"
        lines.append(f'voice: clip {esc(au["source_clip_id"])}, <span data-testid="span">'
                     f"{esc(fmt_s(s))}–{esc(fmt_s(e))} s{esc(dur)}</span>")
    else:
        wave = missing_box("no audio reference", "waveform-missing")
    return card([picture, wave], lines, testid="identity-card",
                attrs={"identity": identity_id})


def contact_sheet_section(run: RunData, opts: InpairOptions) -> str:
    refs = run.table("references")
    if refs is None:
        return section("contact-sheet", "Contact sheet", NONE)
    ids = list(dict.fromkeys(refs["identity_id"].tolist()))
    shown = ids[:opts.max_identities]
    groups = dict(tuple(refs.groupby("identity_id", sort=False)))
    cards = [identity_card(run, i, groups[i], opts) for i in shown]
    what = "identity with references" if len(ids) == 1 else "identities with references"
    return section("contact-sheet", "Contact sheet", contact_sheet(cards, len(ids), what))


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


def captions_section(run: RunData, opts: InpairOptions) -> str:
    samples = run.table("samples")
    if samples is None or opts.n_captions <= 0:
        return section("captions", "Sample captions", NONE)
    shown = samples.head(opts.n_captions)
    note = f"<p>showing {len(shown)} of {len(samples)} sample(s)</p>"
    return section("captions", "Sample captions",
                   note + "".join(caption_block(run, r) for r in shown.to_dict("records")))


# ----------------------------------------------------------------------------- the page


def render_report(run: RunData, opts: InpairOptions | None = None) -> str:
    """The whole page as a string."""
    o = opts or InpairOptions()
    return page(f"In-pair curation report: {run.short_name}",
                [header_section(run), stages_section(run.summary),
                 errors_section(run.summary, run.tables.get("errors"), o,
                                state=run.state.get("errors", "absent")),
                 filters_section(run, o), histograms_section(run, o),
                 contact_sheet_section(run, o), captions_section(run, o),
                 provenance_section(run.summary, o)])


def write_report(out: RunFolder | str | os.PathLike[str],
                 options: InpairOptions | None = None) -> Path:
    """Write ``OUT/report.html`` for the curation output ``out`` (a folder, a URL or a
    :class:`RunFolder`; a remote output gets it uploaded); returns its local path."""
    run = load_run(out, TABLES, columns=COLUMNS)
    return write_page(run, render_report(run, options))
