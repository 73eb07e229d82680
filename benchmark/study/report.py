"""A study's table in the benchmark comparison it rated: ``O/human_eval/`` and the
"Human evaluation" section of ``O/report/index.html``."""

from __future__ import annotations

import os
from pathlib import Path

from .aggregate import HumanEval, write_results
from .db import connect, get_meta

HUMAN_DIR = "human_eval"


def attach_to_comparison(study: str | os.PathLike[str], h: HumanEval) -> Path | None:
    """When the study was made from an ``omni benchmark run`` output that is still there,
    write the table files to its ``human_eval/`` and rewrite its report; returns the report's
    index page (None: the study came from prediction folders)."""
    con = connect(study)
    try:
        source = get_meta(con).get("source") or {}
    finally:
        con.close()
    comparison = source.get("comparison")
    if not comparison or not (Path(comparison) / "summary.json").is_file():
        return None
    from benchmark.report import write_report

    write_results(study, h, Path(comparison) / HUMAN_DIR)
    return write_report(comparison)
