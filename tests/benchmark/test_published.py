"""The paper's published numbers as data (benchmark/published.yaml), checked cell by cell
against the transcription in ../shared/reference/paper.md."""

from __future__ import annotations

import re

import pytest

from benchmark.published import published
from evaluation.tables import PAPER_ORDER

#: the paper's Table 2 headers -> the evaluator's metric keys
HEADERS = {"AES": "aes", "ViCLIP": "viclip", "ID-Sim S/M": "id_sim", "PQ": "pq", "CLAP": "clap",
           "WER": "wer", "T-Sim S/M": "t_sim", "Sync-C": "sync_c", "Sync-D": "sync_d",
           "Spk-Conf": "spk_conf"}


def _value(df, method, metric, split=None):
    rows = df[(df.method == method) & (df.metric == metric)]
    rows = rows[rows.split.isna()] if split is None else rows[rows.split == split]
    return None if rows.empty else float(rows.value.iloc[0])


def test_table2_equals_the_papers_markdown_table(shared_dir):
    text = (shared_dir / "reference" / "paper.md").read_text()
    block = text[text.index("Table 2, R2AV:"):text.index("Table 3, RV2AV")]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    t2 = published("table2")
    checked = 0
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        method = cells[0]
        for name, cell in zip(header[1:], cells[1:], strict=True):
            metric = HEADERS[name]
            parts = cell.split("/") if "/" in cell else [cell]
            splits = ("S", "M") if "/" in cell else (None,)
            for split, part in zip(splits, parts, strict=True):
                want = None if part.strip() == "-" else float(part)
                assert _value(t2, method, metric, split) == want, (method, name, split)
                checked += 1
    assert checked == 79  # 7 rows x 10 columns, and S and M apart where the paper has both


def test_the_other_tables_hold_the_papers_sentences(shared_dir):
    text = " ".join((shared_dir / "reference" / "paper.md").read_text().split())
    df = published()
    # every published number of Tables 3-6 appears in the paper's text as written there
    for row in df[df.table != "table2"].itertuples():
        assert re.search(rf"(?<![\d.]){row.value:.3f}(?!\d)|(?<![\d.]){row.value:g}(?![\d])",
                         text), row
    assert _value(df[df.table == "table4"], "DreamID-Omni", "viclip") == 16.618
    assert _value(df[df.table == "table5"], "full", "spk_conf", "M") == 0.08
    t6 = df[df.table == "table6"]
    assert set(t6[t6.metric == "pq"].column) == {"AQ"}  # the paper's header, kept


def test_every_number_is_a_known_metric_with_its_source():
    df = published()
    assert set(df.metric) <= set(PAPER_ORDER)
    assert set(df.table) == {"table2", "table3", "table4", "table5", "table6"}
    assert df.source.str.contains("2602.12160").all() and df.value.notna().all()
    assert set(df.split.dropna()) <= {"S", "M"}
    with pytest.raises(Exception, match="no published table 'table9'"):
        published("table9")
