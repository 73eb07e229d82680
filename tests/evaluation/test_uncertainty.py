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
