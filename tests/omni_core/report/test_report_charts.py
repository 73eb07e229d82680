"""The kit's inline-SVG charts (omni_core.report.charts): histogram bins, bars that carry
their numbers as attributes, and labels escaped like any data."""

from __future__ import annotations

import math

import pandas as pd

from omni_core.report import Bar, histogram_bins, histogram_block, svg_bars, svg_histogram


def parse(text: str):
    from conftest import parse_html

    return parse_html(text)


def test_histogram_bins() -> None:
    bins = histogram_bins([0, 1, 1, 3], integer=True)
    assert [(b.lo, b.count) for b in bins] == [(0, 1), (1, 2), (2, 0), (3, 1)]
    bins = histogram_bins([1.0, 2.0, float("nan"), None, 3.0], bins=4)
    assert len(bins) == 4 and sum(b.count for b in bins) == 3
    assert histogram_bins([5.0, 5.0])[0].count == 2 and histogram_bins([]) == []
    # every clip is clip_frames / fps long: equal up to float rounding is one bin
    same = histogram_bins([121 / 24, 5.041666666666667, 5.0416666666666661])
    assert len(same) == 1 and same[0].count == 3
    # an integer range wider than max_int_bins falls back to equal-width bins
    assert len(histogram_bins(range(100), 10, integer=True, max_int_bins=40)) == 10


def test_histogram_svg_and_block() -> None:
    root = parse(svg_histogram(histogram_bins([1, 2, 2, 3], integer=True), "<x>", "n", "h",
                               integer=True))
    rects = root.one("svg", data_testid="h").find_all("rect")
    assert [int(r.attrs["data-count"]) for r in rects] == [1, 2, 1]
    assert "<x>" in root.one("svg").text()  # the label, escaped, reads back as text
    block = parse(histogram_block(pd.Series([1.0, None, 3.0]), "T", "x", "y", "b", bins=2))
    assert sum(int(r.attrs["data-count"]) for r in block.find_all("rect")) == 2
    assert "1 without a value" in block.text()
    assert "none" in histogram_block(None, "T", "x", "y", "b")
    assert "none" in histogram_block([float("nan")], "T", "x", "y", "b")


def test_bars() -> None:
    bars = [Bar("a", 2.0, "g"), Bar("<script>b</script>", 4.0, "h"), Bar("c", math.nan, "g"),
            Bar("d", 0.0, "i")]
    svg = svg_bars(bars, "t", unit="s")
    assert "<script>" not in svg
    root = parse(svg)
    rects = root.one("svg", data_testid="t").find_all("rect")
    assert [r.attrs["data-label"] for r in rects] == ["a", "<script>b</script>", "c", "d"]
    assert [r.attrs["data-value"] for r in rects] == ["2.0", "4.0", "", "0.0"]
    w = [float(r.attrs["width"]) for r in rects]
    assert w[1] == 2 * w[0] and w[2] == w[3] == 0  # one scale; a missing value is no bar
    assert [r.attrs["class"] for r in rects] == ["bar g0", "bar g1", "bar g0", "bar g2"]
    assert "4 s" in root.text() and "—" in root.text()
    assert "none" in svg_bars([], "t")
