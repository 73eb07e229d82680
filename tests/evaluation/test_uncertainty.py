"""Bootstrap intervals and paired tests of benchmark means (evaluation/uncertainty.py)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.uncertainty import bootstrap_mean, paired_permutation
from omni_core.errors import OmniError


def test_the_interval_covers_the_true_mean_about_as_often_as_it_says():
    rng = np.random.default_rng(1)
    covered = 0
    trials = 300
    for t in range(trials):
        x = rng.normal(0.5, 0.2, size=60)
        iv = bootstrap_mean(x, n_boot=1000, seed=t)
        covered += iv.low <= 0.5 <= iv.high
    # measured 0.94 (a percentile bootstrap of a mean of 60 runs a little narrow)
    assert 0.88 <= covered / trials <= 0.98


def test_seeded_missing_left_out_and_strata_kept():
    x = np.array([0.1, 0.2, np.nan, 0.9, 1.0, 0.95])
    split = np.array(["S", "S", "S", "M", "M", "M"])
    a = bootstrap_mean(x, split, n_boot=500, seed=3)
    assert a == bootstrap_mean(x, split, n_boot=500, seed=3)  # seeded
    assert a.n == 5 and a.mean == pytest.approx(np.nanmean(x))  # NaN left out, not a 0
    # within strata every resample keeps 2 S and 3 M instances: the mean never falls to the
    # S-only or rises to the M-only extremes an unstratified resample can reach
    plain = bootstrap_mean(x, None, n_boot=5000, seed=3)
    strat = bootstrap_mean(x, split, n_boot=5000, seed=3)
    assert strat.high - strat.low < plain.high - plain.low
    one = bootstrap_mean(np.array([0.4, np.nan]))
    assert one.n == 1 and one.mean == 0.4 and np.isnan(one.low)
    with pytest.raises(OmniError, match="differ in length"):
        bootstrap_mean(x, split[:3])


def test_the_paired_test_finds_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, size=40)  # per-instance difficulty shared by both models
    better = base + 0.03 + rng.normal(0, 0.02, size=40)
    real = paired_permutation(better, base, n_perm=4000, n_boot=2000)
    assert real.significant() and real.p_value < 0.001  # measured 0.00025 (1 of 4001)
    assert real.difference.low > 0 and real.difference.n == 40  # measured 0.029 - 0.043
    null_p = np.array([paired_permutation(base + rng.normal(0, 0.02, size=40),
                                          base + rng.normal(0, 0.02, size=40), n_perm=999,
                                          n_boot=100, seed=k).p_value for k in range(600)])
    # under the null the p-value is about uniform: measured 5.3 % below 0.05, 52.7 % below 0.5
    assert 0.035 <= np.mean(null_p < 0.05) <= 0.075
    assert 0.45 <= np.mean(null_p < 0.5) <= 0.55


def test_the_paired_test_keeps_the_instances_both_models_have():
    a = np.array([0.5, 0.6, np.nan, 0.7])
    b = np.array([0.4, np.nan, 0.5, 0.6])
    t = paired_permutation(a, b, n_perm=99, n_boot=99)
    assert t.difference.n == 2 and t.difference.mean == pytest.approx(0.1)
    assert 0 < t.p_value <= 1
    with pytest.raises(OmniError, match="not the same instances"):
        paired_permutation(a, b[:3])


def test_few_instances_get_the_exact_permutation_p_value():
    from evaluation.uncertainty import paired_permutation

    a = np.array([0.5, 0.6, 0.7, 0.4, 0.55, 0.65])
    same_way = paired_permutation(a + np.array([0.01, 0.02, 0.03, 0.01, 0.02, 0.05]), a)
    assert same_way.p_value == 2 / 64  # only the observed signs and their mirror are as far
    four = paired_permutation(a[:4] + 1.0, a[:4])
    assert four.p_value == 2 / 16 and not four.significant()  # 4 instances never reach 0.05
    mixed = paired_permutation(a + np.array([0.01, -0.01, 0.01, -0.01, 0.01, -0.01]), a)
    assert mixed.p_value == 1.0


def _study(rng, n_raters, n_items, rater_sd, item_sd, noise_sd, mean=3.0):
    """Every rater rates every item: mean + rater offset + item offset + noise."""
    r, i = (a.ravel() for a in np.meshgrid(np.arange(n_raters), np.arange(n_items),
                                           indexing="ij"))
    v = (mean + rng.normal(0, rater_sd, n_raters)[r] + rng.normal(0, item_sd, n_items)[i]
         + rng.normal(0, noise_sd, len(r)))
    return v, r, i


def test_the_two_way_mean_is_the_plain_mean_and_it_is_seeded():
    from evaluation.uncertainty import bootstrap_two_way

    v, r, i = _study(np.random.default_rng(0), 6, 20, 0.5, 0.5, 1.0)
    v[[3, 17, 40]] = np.nan
    a = bootstrap_two_way(v, r.astype(str), i, n_boot=500, seed=4)
    assert a.mean == pytest.approx(np.nanmean(v)) and a.n == len(v) - 3
    assert a.low < a.mean < a.high
    assert a == bootstrap_two_way(v, r.astype(str), i, n_boot=500, seed=4)  # seeded
    assert a != bootstrap_two_way(v, r.astype(str), i, n_boot=500, seed=5)
    one_rater = bootstrap_two_way([1.0, 2.0, 3.0], ["ann"] * 3, [1, 2, 3])
    assert one_rater.n == 3 and one_rater.mean == 2.0 and np.isnan(one_rater.high)
    one_item = bootstrap_two_way([1.0, 2.0, np.nan], ["a", "b", "c"], [1, 1, 2])
    assert one_item.n == 2 and np.isnan(one_item.low)  # item 2's only rating is missing
    assert bootstrap_two_way([np.nan], [0], [0]).n == 0
    # disjoint design: a resample of raters and items that share no rating has no mean; skipped
    sparse = bootstrap_two_way([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1], [0, 1, 2, 3], n_boot=200)
    assert sparse.mean == 2.5 and 1.0 <= sparse.low < sparse.high <= 4.0
    with pytest.raises(OmniError, match="one of each per rating"):
        bootstrap_two_way([1.0, 2.0], [0, 1], [0])


def test_rater_effects_widen_the_two_way_interval():
    from evaluation.uncertainty import bootstrap_two_way

    # 8 raters with strong personal offsets (sd 1) on 60 items
    v, r, i = _study(np.random.default_rng(7), 8, 60, 1.0, 0.5, 0.5)
    two_way = bootstrap_two_way(v, r, i)
    item_means = np.bincount(i, weights=v) / np.bincount(i)  # complete design: same mean
    items_only = bootstrap_mean(item_means, n_boot=2000)
    assert items_only.mean == pytest.approx(two_way.mean)
    # measured widths 0.88 (two-way) vs 0.23 (items only): the items-only bootstrap takes these
    # 8 raters for all raters there are
    assert two_way.high - two_way.low > 2.5 * (items_only.high - items_only.low)


def test_the_two_way_interval_covers_the_true_mean_about_as_often_as_it_says():
    from evaluation.uncertainty import bootstrap_two_way

    rng = np.random.default_rng(11)
    trials, two_way, items_only = 300, 0, 0
    for t in range(trials):
        v, r, i = _study(rng, 20, 40, 0.5, 0.5, 1.0, mean=3.0)
        iv = bootstrap_two_way(v, r, i, n_boot=500, seed=t)
        two_way += iv.low <= 3.0 <= iv.high
        io = bootstrap_mean(np.bincount(i, weights=v) / np.bincount(i), n_boot=500, seed=t)
        items_only += io.low <= 3.0 <= io.high
    # measured 0.933 here (0.92 - 0.95 over other seeds and study sizes: a percentile interval
    # of few raters runs a little narrow); the items-only one misses the rater spread: 0.737
    assert 0.89 <= two_way / trials <= 0.985
    assert items_only / trials < 0.85

