"""A job's output folder as a report reads it: ``summary.json``, manifests, files, and the page
written back.

The output may be a local folder or a URL (``s3://...``): a remote output is read through this
node's staging folder (:class:`omni_core.storage.RunFolder`) and the finished page is uploaded
next to the manifests. A table that is absent or cannot be read is recorded, not raised: a
report is most needed for a run that went wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from omni_core.errors import ManifestError, OmniError
from omni_core.manifests import read_manifest
from omni_core.storage import RunFolder, as_run_folder, is_remote

from .job import SummaryView, read_summary_view
from .page import esc, html_table, write_html


@dataclass
class RunData:
    """What a report is made of: the summary, the readable tables and what went wrong."""

    out: Path  # the local folder (a remote output's staging folder)
    summary: SummaryView
    tables: dict[str, pd.DataFrame]
    state: dict[str, str]  # table -> "ok" | "absent" | "unreadable: ..."
    problems: list[str] = field(default_factory=list)
    #: the run's output when it is remote (``out`` is then this node's staging folder)
    folder: RunFolder | None = None

    @property
    def name(self) -> str:
        """Where the run is, as a person names it: the folder, or the URL when remote."""
        return self.folder.out if self.folder is not None else str(self.out)

    @property
    def short_name(self) -> str:
        """The last part of :attr:`name` (a page title)."""
        return self.name.rstrip("/").rsplit("/", 1)[-1]

    def path(self, rel: str) -> Path:
        """A local path of the run's file ``rel``, fetched from a remote output when needed (it
        may not exist: the readers report a missing file)."""
        if self.folder is not None:
            try:
                return self.folder.local(rel)
            except OmniError:
                pass
        return self.out / rel

    def table(self, name: str) -> pd.DataFrame | None:
        """The table ``name`` if it was read and has rows (an empty table shows as "none")."""
        df = self.tables.get(name)
        return df if df is not None and len(df) else None

    def add_table(self, name: str, df: pd.DataFrame | None, state: str) -> None:
        """Record a table a report read itself (one in a subfolder)."""
        self.state[name] = state
        if df is not None:
            self.tables[name] = df
        elif state.startswith("unreadable"):
            self.problems.append(f"{name}: {state}")


def read_table(out: Path, name: str, columns: Sequence[str] | None = None
               ) -> tuple[pd.DataFrame | None, str]:
    """A manifest of the run (``<name>.parquet``, a file or a folder of shards, or a shard
    directory ``<name>/``), only ``columns`` when given, and its state: "ok", "absent" or
    "unreadable: <why>"."""
    for path in (out / f"{name}.parquet", out / name):
        if not path.exists():
            continue
        try:
            return read_manifest(path, name, columns=columns), "ok"
        except (ManifestError, OSError, ValueError, pa.ArrowException) as exc:
            return None, f"unreadable: {exc}"
    return None, "absent"


def load_run(out: RunFolder | str | os.PathLike[str], names: Sequence[str],
             extra: Sequence[str] = (),
             columns: Mapping[str, Sequence[str]] | None = None) -> RunData:
    """The summary and the tables ``names`` of the run at a folder, a URL (read through a
    local staging folder) or a :class:`RunFolder`; ``extra``: other files a report reads
    (staged too when remote); ``columns``: per table, the only columns the page needs (a
    large run's embeddings, boxes and texts stay on disk)."""
    if isinstance(out, RunFolder) or is_remote(out):
        folder = as_run_folder(out)
        root = folder.root
    else:
        folder, root = None, Path(out)
    remote = folder if folder is not None and folder.remote else None
    if remote is not None:  # stage what the page reads (the driver has it staged already)
        for rel in ["summary.json", *[f"{n}.parquet" for n in names], *extra]:
            try:
                remote.local(rel)
                if rel.endswith(".parquet"):  # a manifest that is a folder of shards
                    for shard in remote.list(rel):
                        remote.local(shard)
            except OmniError:
                pass
    summary = read_summary_view(root / "summary.json")
    tables: dict[str, pd.DataFrame] = {}
    state: dict[str, str] = {}
    for name in names:
        df, st = read_table(root, name, (columns or {}).get(name))
        state[name] = st
        if df is not None:
            tables[name] = df
    problems = [summary.problem] if summary.problem else []
    problems += [f"{t}: {s}" for t, s in state.items() if s.startswith("unreadable")]
    return RunData(root, summary, tables, state, problems, folder=remote)


def rows_per_table(run: RunData, names: Sequence[str], *, counted: bool = True) -> str:
    """Rows of each table (read, else as ``summary.counts`` says) and its state; with
    ``counted``, a name the summary counts that is no table of the run is listed too, with
    "not a manifest"."""
    counts = run.summary.counts
    names = list(dict.fromkeys([*names, *(counts if counted else ())]))
    rows = []
    for t in names:
        df = run.tables.get(t)
        n = len(df) if df is not None else counts.get(t)
        rows.append((t, n if n is not None else "none", run.state.get(t, "not a manifest")))
    return html_table(("table", "rows", "manifest"), rows,
                      row_attrs=[f'data-table="{esc(r[0])}"' for r in rows],
                      testid="rows-per-table")


def write_page(run: RunData, html_page: str, name: str = "report.html") -> Path:
    """The page as ``name`` in the run's folder, written atomically and uploaded when the run is
    remote; returns its local path."""
    path = write_html(run.out / name, html_page)
    if run.folder is not None:
        run.folder.publish(name)
    return path
