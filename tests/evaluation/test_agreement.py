"""Krippendorff's alpha of user-study ratings (evaluation/agreement.py)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.agreement import (
    LEVELS,
    alpha_from_coincidences,
    alpha_from_long,
    coincidences,
    krippendorff_alpha,
)
from omni_core.errors import OmniError

_ = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": observers A-D x units 1-12
PAPER = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
])


@pytest.mark.parametrize(("level", "published"),
                         [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_the_worked_example_of_the_paper(level, published):
    alpha = krippendorff_alpha(PAPER, level)
    assert round(alpha, 3) == published  # measured 0.7434, 0.8154, 0.8491
    assert alpha == pytest.approx(alpha_from_coincidences(coincidences(PAPER), level), abs=1e-12)


def test_the_coincidences_of_the_worked_example():
    c = coincidences(PAPER)
    # unit 12 has a single value and is not pairable: 40 pairable values in units 1-11
    assert c.values.tolist() == [1, 2, 3, 4, 5] and c.n == pytest.approx(40)
    assert c.n_c.tolist() == pytest.approx([9, 13, 10, 5, 3])
    np.testing.assert_allclose(c.matrix, c.matrix.T)
    # unit 6 (values 1, 2, 3, 4, m_u = 4) gives each ordered pair of distinct values 1/3;
    # units 2 and 8 (3 of one value, 1 of the other) give 2 x 3 x 1/3 = 1 to theirs
    assert c.matrix[0, 1] == pytest.approx(1 / 3 + 1)  # unit 6 + unit 8
    assert c.matrix[0, 0] == pytest.approx(7)  # units 1 (3 x 2 / 2), 8 (3 x 2 / 3) and 11 (2)
    assert krippendorff_alpha(PAPER, "ratio") == pytest.approx(0.797, abs=5e-4)


def test_a_second_published_example():
    # Hayes & Krippendorff (2007) / the Wikipedia example, 3 coders x 15 units; the values the
    # KALPHA SPSS macro gives (nominal 0.691, ordinal 0.807, interval 0.811)
    data = np.array([
        [_, _, _, _, _, 3, 4, 1, 2, 1, 1, 3, 3, _, 3],
        [1, _, 2, 1, 3, 3, 4, 3, _, _, _, _, _, _, _],
        [_, _, 2, 1, 3, 4, 4, _, 2, 1, 1, 3, 3, _, 4],
    ])
    got = [round(krippendorff_alpha(data, lv), 3) for lv in ("nominal", "ordinal", "interval")]
    assert got == [0.691, 0.807, 0.811]


def test_the_fast_sums_equal_the_coincidence_matrix_route():
    rng = np.random.default_rng(5)
    for _trial in range(30):
        x = rng.integers(0, 7, size=(rng.integers(2, 7), rng.integers(2, 20))).astype(float)
        x[rng.random(x.shape) < 0.35] = np.nan
        c = coincidences(x)
        for level in LEVELS:
            fast, slow = krippendorff_alpha(x, level), alpha_from_coincidences(c, level)
            assert (np.isnan(fast) and np.isnan(slow)) or fast == pytest.approx(slow, abs=1e-12)


def test_perfect_agreement_is_one_and_chance_is_about_zero():
    truth = np.array([1.0, 2, 3, 4, 5, 2, 3, 1])
    perfect = np.tile(truth, (5, 1))
    perfect[0, 2] = perfect[3, 5] = np.nan  # missing ratings change nothing
    for level in LEVELS:
        assert krippendorff_alpha(perfect, level) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = rng.integers(1, 6, size=(40, 300)).astype(float)  # independent random ratings
    noise[rng.random(noise.shape) < 0.2] = np.nan
    for level in LEVELS:
        assert abs(krippendorff_alpha(noise, level)) < 0.05  # measured |alpha| <= 0.006


def test_long_form_equals_wide_form_and_a_pair_given_twice_is_an_error():
    raters, units = np.nonzero(np.isfinite(PAPER))
    order = np.random.default_rng(1).permutation(len(raters))  # any row order
    names = np.array(["ann", "bob", "cat", "dan"])
    u_ids = np.array([f"clip{k:02d}" for k in units])[order]
    vals = PAPER[raters, units][order]
    for level in LEVELS:
        assert alpha_from_long(u_ids, names[raters][order], vals, level) == pytest.approx(
            krippendorff_alpha(PAPER, level), abs=1e-12)
    # a missing rating in long form is the same as one left out
    with_nan = alpha_from_long([*u_ids, "clip03"], [*names[raters][order], "extra"],
                               [*vals, np.nan])
    assert with_nan == pytest.approx(krippendorff_alpha(PAPER))
    with pytest.raises(OmniError, match="rated unit 'clip00' 2 times"):
        alpha_from_long(["clip00", "clip00", "clip01"], ["ann", "ann", "ann"], [1, 2, 3])
    with pytest.raises(OmniError, match="one of each per rating"):
        alpha_from_long(["a", "b"], ["x"], [1, 2])


def test_no_variation_or_no_pairable_unit_is_nan_and_bad_input_is_an_error():
    same = np.full((3, 6), 4.0)
    same[1, 2] = np.nan
    for level in LEVELS:
        assert np.isnan(krippendorff_alpha(same, level))
    lonely = np.array([[1.0, _, _], [_, 2.0, _], [_, _, 3.0]])  # one rating per unit
    assert np.isnan(krippendorff_alpha(lonely))
    assert np.isnan(alpha_from_long([], [], []))
    with pytest.raises(OmniError, match="level must be one of"):
        krippendorff_alpha(PAPER, "likert")
    with pytest.raises(OmniError, match="2-D"):
        krippendorff_alpha([1, 2, 3])
    with pytest.raises(OmniError, match="values >= 0"):
        krippendorff_alpha([[-1.0, 2.0], [1.0, 2.0]], "ratio")
    with pytest.raises(OmniError, match="infinite"):
        krippendorff_alpha([[np.inf, 2.0], [1.0, 2.0]])

