"""One kit for the suite's HTML reports: a self-contained page of sections.

Every job that writes an output folder (in-pair and cross-pair curation today, the benchmark
next) gets one ``report.html`` that needs nothing else to open. The kit holds what is the same
for all of them, so the pages look and behave alike and escaping is done in one place:

- :mod:`.page`: the frame (inline style, Content-Security-Policy, the image-check script),
  escaping, number formats, tables, sections, fact lists, notes, collapsible JSON;
- :mod:`.charts`: inline-SVG histograms and horizontal bar charts;
- :mod:`.media`: image thumbnails, waveforms, embedded audio/video, contact-sheet cards, and
  for a report that is a folder of pages: media files placed in it (hard link or copy),
  thumbnail files, players linked relative to a page and a script that checks they load;
- :mod:`.filters`: drop-downs hiding the items of a page that do not match (state in the
  address's fragment), by an inline script the page's policy admits by its hash;
- :mod:`.job`: the common ``summary.json`` of a batch job (:class:`SummaryView`) and the
  sections every job report has: stages with their steps, errors, provenance;
- :mod:`.output`: a job's output folder (local or a URL) read into :class:`RunData`, and the
  page written back.

Nothing here knows what a clip, a voice or a benchmark instance is: a report module builds its
own sections from these pieces and its job's ``summary.details``.
"""

from .charts import Bar, Bin, histogram_bins, histogram_block, svg_bars, svg_histogram
from .filters import FILTER_SCRIPT, Filter, filter_attrs, filter_bar
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
    MEDIA_SCRIPT,
    card,
    contact_sheet,
    embedded_media,
    href,
    linked_media,
    media_data_uri,
    media_type,
    place_file,
    read_mono,
    svg_waveform,
    thumbnail,
    thumbnail_data_uri,
    thumbnail_jpeg,
    waveform,
    waveform_envelope,
    write_poster,
    write_thumbnail,
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
    script_hash,
    section,
    slug,
    write_html,
)

__all__ = [
    "FILTER_SCRIPT", "MEDIA_SCRIPT", "NONE", "Bar", "Bin", "Fact", "Figure", "Filter", "Html",
    "SummaryView", "ReportOptions", "RunData", "Stage", "Step", "card", "code_list",
    "contact_sheet", "embedded_media", "errors_section", "esc", "examples_html", "facts",
    "filter_attrs", "filter_bar", "fmt_bytes", "fmt_num", "fmt_s", "histogram_bins",
    "histogram_block", "href", "html_table", "job_facts", "json_details", "linked_media",
    "load_run", "media_data_uri", "media_type", "missing", "missing_box", "more_line", "note",
    "page", "parse_summary_view", "place_file", "problems_list", "provenance_section",
    "read_mono", "read_summary_view", "read_table", "rows_per_table", "script_hash", "section",
    "slug", "stages_section", "svg_bars", "svg_histogram", "svg_waveform", "thumbnail",
    "thumbnail_data_uri", "thumbnail_jpeg", "timing_facts", "waveform", "waveform_envelope",
    "write_html", "write_page", "write_poster", "write_thumbnail",
]
