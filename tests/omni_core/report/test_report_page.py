"""The page kit (omni_core.report.page): escaping of hostile strings wherever data lands (text,
attributes, tables, facts, JSON blocks), number formats, and the frame's Content-Security-Policy
that admits the kit's one script and nothing else."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from pathlib import Path

import numpy as np

from omni_core.report import (
    Figure,
    Html,
    code_list,
    esc,
    examples_html,
    facts,
    fmt_bytes,
    fmt_num,
    fmt_s,
    html_table,
    json_details,
    note,
    page,
    problems_list,
    section,
    write_html,
)
from omni_core.report.page import SCRIPT, content_security_policy

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "' onload='x",
           "&lt;already&gt;", "</pre></details><script>x</script>", "a\u2028b"]


def parse(text: str):
    from conftest import parse_html

    return parse_html(text)


def test_esc_makes_every_hostile_string_inert_text() -> None:
    for s in HOSTILE:
        e = esc(s)
        assert "<" not in e and ">" not in e and '"' not in e and "'" not in e
        # what a parser reads back is the original string, in text and in an attribute
        root = parse(f'<p title="{e}">{e}</p>')
        assert root.one("p").text() == s and root.one("p").attrs["title"] == s
    assert esc(None) == esc(float("nan")) == ""
    assert esc(Html("<b>x</b>")) == "<b>x</b>"  # already HTML: not escaped twice
    assert esc(3) == "3"


def test_builders_escape_their_data() -> None:
    bad = HOSTILE[0]
    html = (html_table([bad], [[bad, 1, Figure(bad)]], row_attrs=[f'data-x="{esc(bad)}"'])
            + facts([("k", bad, bad)]) + problems_list([bad]) + note(bad)
            + section("s", bad, examples_html([bad, bad], 5)) + code_list([bad] * 3, 2)
            + json_details(bad, {"k": HOSTILE[4]}))
    assert "<script>" not in html
    root = parse(html)
    assert not root.find_all("script") and not root.find_all("img")
    tds = root.one("table").find_all("td")
    assert [t.text() for t in tds] == [bad, "1", bad]
    assert [t.attrs.get("class") for t in tds] == [None, "num", "num"]  # numbers right-aligned
    assert root.one("tr", data_x=bad)
    assert root.one(data_testid="fact-k").text() == bad
    assert "+3 more" in root.one("section").text()
    assert "showing 2 of 3 entries" in root.one(data_testid="list-more").text()
    assert HOSTILE[4] in root.one("details").one("pre").text()


def test_number_formats() -> None:
    assert [fmt_num(x) for x in (3, 3.0, 1234.5, 12.34, 1.234, 0.01234, None, float("nan"),
                                 math.inf, np.int64(7), "n/a", True)] == [
        "3", "3", "1234", "12.3", "1.23", "0.012", "—", "—", "∞", "7", "n/a", "True"]
    assert [fmt_s(x) for x in (1, 0.005, None, "x", float("nan"))] == [
        "1.00", "0.01", "—", "—", "—"]
    assert [fmt_bytes(x) for x in (0, 1023, 1536, 3 * 1024 ** 3, 5 * 1024 ** 5, None, "1")] == [
        "0 B", "1023 B", "1.5 KiB", "3.0 GiB", "5120.0 TiB", "—", "—"]


def test_page_allows_only_its_own_script(tmp_path: Path) -> None:
    text = page("<title>", [section("a", "A", "<p>x</p>")], style=".x{}")
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', text).group(1)
    assert csp == content_security_policy()
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    assert "img-src data:" in csp and "media-src data:" in csp and "http" not in csp
    assert text.count("<script>") == 1 and f"<script>{SCRIPT}</script>" in text
    assert "<title>&lt;title&gt;</title>" in text and ".x{}" in text
    path = write_html(tmp_path / "sub" / "p.html", text)
    assert path.read_text() == text and not list(path.parent.glob(".*tmp"))
