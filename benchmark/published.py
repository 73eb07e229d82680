"""The paper's published numbers (``benchmark/published.yaml``: Tables 2-6 of DreamID-Omni) as
one long table, for comparisons that show them beside measured rows, always marked published.

:func:`published` gives one row per number: ``table``, ``title``, ``task``, ``method``,
``metric`` (the evaluator's key, :data:`evaluation.tables.PAPER_ORDER`), ``split`` (``S``,
``M`` or None when the paper gives one value), ``value``, ``column`` (the paper's header
where it differs from the metric's, e.g. Table 6's "AQ"), ``source``.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from omni_core.errors import OmniError

__all__ = ["PUBLISHED", "published"]

PUBLISHED = Path(__file__).with_name("published.yaml")
SPLITS = ("S", "M")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OmniError(f"{PUBLISHED.name}: {where}: not a finite number: {value!r}")
    return float(value)


@cache
def _rows() -> tuple[dict[str, Any], ...]:
    from evaluation.tables import PAPER_ORDER

    data = yaml.safe_load(PUBLISHED.read_text())
    out: list[dict[str, Any]] = []
    for table, spec in data["tables"].items():
        columns = spec.get("columns", {})
        for method, cells in spec["rows"].items():
            for metric, value in cells.items():
                where = f"{table} / {method} / {metric}"
                if metric not in PAPER_ORDER:
                    raise OmniError(f"{PUBLISHED.name}: {where}: unknown metric")
                splits = value if isinstance(value, dict) else {spec.get("split"): value}
                for split, v in splits.items():
                    if split is not None and split not in SPLITS:
                        raise OmniError(f"{PUBLISHED.name}: {where}: split {split!r}")
                    out.append({"table": table, "title": spec["title"], "task": spec["task"],
                                "method": str(method), "metric": metric, "split": split,
                                "value": _number(v, where), "column": columns.get(metric),
                                "source": data["source"]})
    return tuple(out)


def published(table: str | None = None) -> pd.DataFrame:
    """Every published number (or one table's: ``table2`` ... ``table6``)."""
    df = pd.DataFrame(list(_rows()))
    if table is not None:
        if table not in set(df.table):
            raise OmniError(f"no published table {table!r}; choose one of "
                            f"{', '.join(sorted(set(df.table)))}")
        df = df[df.table == table].reset_index(drop=True)
    return df
