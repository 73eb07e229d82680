"""One kit for the suite's HTML reports: a self-contained page of sections.

Every job that writes an output folder (in-pair and cross-pair curation today, the benchmark
next) gets one ``report.html`` that needs nothing else to open. The kit holds what is the same
for all of them, so the pages look and behave alike and escaping is done in one place:

- :mod:`.page`: the frame (inline style, Content-Security-Policy, the image-check script),
  escaping, number formats, tables, sections, fact lists, notes, collapsible JSON;
- :mod:`.charts`: inline-SVG histograms and horizontal bar charts;
- :mod:`.media`: image thumbnails, waveforms, embedded audio/video, contact-sheet cards;
- :mod:`.job`: the common ``summary.json`` of a batch job (:class:`SummaryView`) and the
  sections every job report has: stages with their steps, errors, provenance;
- :mod:`.output`: a job's output folder (local or a URL) read into :class:`RunData`, and the
  page written back.

Nothing here knows what a clip, a voice or a benchmark instance is: a report module builds its
own sections from these pieces and its job's ``summary.details``.
"""

from .charts import Bar, Bin, histogram_bins, histogram_block, svg_bars, svg_histogram
from .job import (
    Stage,
    Step,
    SummaryView,
    errors_section,
    job_facts,
    parse_summary_view,
    provenance_section,
    read_summary_view,
    stages_section,
    timing_facts,
)
from .media import (
    card,
    contact_sheet,
    embedded_media,
    media_data_uri,
    media_type,
    read_mono,
    svg_waveform,
    thumbnail,
    thumbnail_data_uri,
    waveform,
    waveform_envelope,
)
from .output import RunData, load_run, read_table, rows_per_table, write_page
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
    missing,
    missing_box,
    more_line,
    note,
    page,
    problems_list,
    section,
    slug,
    write_html,
)

__all__ = [
    "NONE", "Bar", "Bin", "Fact", "Figure", "Html", "SummaryView", "ReportOptions", "RunData",
    "Stage", "Step", "card", "code_list", "contact_sheet", "embedded_media", "errors_section",
    "esc", "examples_html", "facts", "fmt_bytes", "fmt_num", "fmt_s", "histogram_bins",
    "histogram_block", "html_table", "job_facts", "json_details", "load_run", "media_data_uri",
    "media_type", "missing", "missing_box", "more_line", "note", "page", "parse_summary_view",
    "problems_list", "provenance_section", "read_mono", "read_summary_view", "read_table",
    "rows_per_table", "section", "slug", "stages_section", "svg_bars", "svg_histogram",
    "svg_waveform", "thumbnail", "thumbnail_data_uri", "timing_facts", "waveform",
    "waveform_envelope", "write_html", "write_page",
]
