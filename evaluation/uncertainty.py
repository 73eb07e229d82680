"""Uncertainty of benchmark means: instance-level bootstrap intervals and paired tests.

- :func:`bootstrap_mean`: the mean of per-instance scores with a percentile bootstrap
  interval. Instances are resampled with replacement *within* their stratum (IDBench-Omni's
  S/M splits), so each resample keeps the split sizes of the benchmark.
- :func:`paired_permutation`: is the mean difference between two models on the same
  instances real? A sign-flip permutation test of the per-instance differences (exact under
  the null that the two models are exchangeable on every instance), with the bootstrap
  interval of the mean difference.
- :func:`bootstrap_two_way`: the mean of human ratings (a user study: raters x items) with a
  two-way cluster bootstrap interval. Raters and items are both drawn with replacement and a
  resample takes every rating of a drawn rater on a drawn item, weighted by how often each was
  drawn, so the interval carries the spread between raters as well as between items (an
  items-only bootstrap treats the study's raters as the whole population and runs narrow when
  raters differ).

Missing scores (NaN) are left out, never averaged as 0: a paired comparison keeps the
instances both models have, and reports how many that is. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omni_core.errors import OmniError

__all__ = ["Interval", "PairedTest", "bootstrap_mean", "bootstrap_two_way",
           "paired_permutation"]


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap interval over ``n`` instances (``low``/``high`` NaN for
    fewer than two)."""

    mean: float
    low: float
    high: float
    n: int
    level: float


@dataclass(frozen=True)
class PairedTest:
    """Mean of ``a - b`` over the ``n`` instances both have, its bootstrap interval, and the
    two-sided sign-flip permutation p-value."""

    difference: Interval
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def _clean(values: np.ndarray, strata: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(values, dtype=np.float64).ravel()
    s = np.zeros(x.shape, np.int64) if strata is None else np.unique(
        np.asarray(strata).ravel(), return_inverse=True)[1]
    if s.shape != x.shape:
        raise OmniError(f"strata ({s.shape[0]}) and values ({x.shape[0]}) differ in length")
    keep = np.isfinite(x)
    return x[keep], s[keep]


def _resampled_means(x: np.ndarray, s: np.ndarray, n_boot: int,
                     rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of resamples drawn with replacement within each stratum."""
    total = np.zeros(n_boot)
    for k in np.unique(s):
        xs = x[s == k]
        idx = rng.integers(0, len(xs), size=(n_boot, len(xs)))
        total += xs[idx].sum(axis=1)
    return total / len(x)


def bootstrap_mean(values: np.ndarray, strata: np.ndarray | None = None, *,
                   n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> Interval:
    """Mean and percentile bootstrap interval of per-instance ``values`` (NaN left out),
    resampling within ``strata`` (e.g. the S/M split of each instance)."""
    if not 0.0 < level < 1.0 or n_boot < 1:
        raise OmniError(f"bootstrap: need 0 < level < 1 and n_boot >= 1, got {level}, {n_boot}")
    x, s = _clean(values, strata)
    if len(x) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, float("nan"), float("nan"), 1, level)
    means = _resampled_means(x, s, n_boot, np.random.default_rng(seed))
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(mean, float(lo), float(hi), len(x), level)


def paired_permutation(a: np.ndarray, b: np.ndarray, strata: np.ndarray | None = None, *,
                       n_perm: int = 10000, n_boot: int = 10000, seed: int = 0,
                       level: float = 0.95) -> PairedTest:
    """Two models' scores on the same instances (aligned arrays; NaN in either leaves the
    instance out). The p-value is the share of sign flips of the differences whose mean is at
    least as far from 0 as the observed one: over all ``2**n`` flips when that is at most
    ``n_perm`` (exact), else over ``n_perm`` random ones plus the observed assignment (so
    never 0)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise OmniError(f"paired test: {a.shape[0]} and {b.shape[0]} scores: not the same "
                        f"instances")
    both = np.isfinite(a) & np.isfinite(b)
    d = (a - b)[both]
    st = None if strata is None else np.asarray(strata).ravel()[both]
    diff = bootstrap_mean(d, st, n_boot=n_boot, seed=seed, level=level)
    if len(d) == 0:
        return PairedTest(diff, float("nan"))
    observed = abs(float(d.mean()))
    if 2 ** len(d) <= n_perm:  # few instances: every sign assignment, the exact p-value
        signs = 1.0 - 2.0 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
        null = np.abs((signs * d).mean(axis=1))
        return PairedTest(diff, float((null >= observed - 1e-12).mean()))
    rng = np.random.default_rng(seed + 1)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, len(d)))
    null = np.abs((signs * d).mean(axis=1))
    extreme = int((null >= observed - 1e-12).sum())
    return PairedTest(diff, (extreme + 1) / (n_perm + 1))


def bootstrap_two_way(values: np.ndarray, raters: np.ndarray, items: np.ndarray, *,
                      n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Mean of ratings (aligned ``values``, rater ids, item ids; NaN values left out) and its
    percentile two-way cluster bootstrap interval: each resample draws the raters with
    replacement and the items with replacement and averages every rating of a drawn rater on a
    drawn item, weighted by the product of the two multiplicities. ``n`` is the number of
    ratings; ``low``/``high`` are NaN with fewer than two raters or two items. A resample whose
    raters and items share no rating (possible in a sparse design) has no mean and is skipped.
    """
    if not 0.0 < level < 1.0 or n_boot < 1:
        raise OmniError(f"bootstrap: need 0 < level < 1 and n_boot >= 1, got {level}, {n_boot}")
    x = np.asarray(values, dtype=np.float64).ravel()
    r = np.asarray(raters).ravel()
    it = np.asarray(items).ravel()
    if not len(x) == len(r) == len(it):
        raise OmniError(f"two-way bootstrap: {len(x)} values, {len(r)} raters and {len(it)} "
                        f"items: one of each per rating")
    keep = np.isfinite(x)
    x, r, it = x[keep], r[keep], it[keep]
    if len(x) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    mean = float(x.mean())
    r_code = np.unique(r, return_inverse=True)[1].ravel()
    i_code = np.unique(it, return_inverse=True)[1].ravel()
    n_r, n_i = int(r_code.max()) + 1, int(i_code.max()) + 1
    if n_r < 2 or n_i < 2:
        return Interval(mean, float("nan"), float("nan"), len(x), level)
    # a resample's sum and count are w_r^T S w_i and w_r^T C w_i over the raters x items sums
    cell = r_code.astype(np.int64) * n_i + i_code
    sums = np.bincount(cell, weights=x, minlength=n_r * n_i).reshape(n_r, n_i)
    counts = np.bincount(cell, minlength=n_r * n_i).astype(np.float64).reshape(n_r, n_i)
    rng = np.random.default_rng(seed)
    w_r = rng.multinomial(n_r, np.full(n_r, 1.0 / n_r), size=n_boot).astype(np.float64)
    w_i = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=n_boot).astype(np.float64)
    total = np.empty(n_boot)
    weight = np.empty(n_boot)
    block = max(1, 8_000_000 // n_i)  # the n_boot x items products, a block of resamples at once
    for start in range(0, n_boot, block):
        b = slice(start, start + block)
        total[b] = ((w_r[b] @ sums) * w_i[b]).sum(axis=1)
        weight[b] = ((w_r[b] @ counts) * w_i[b]).sum(axis=1)
    means = total[weight > 0] / weight[weight > 0]
    if len(means) == 0:
        return Interval(mean, float("nan"), float("nan"), len(x), level)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(mean, float(lo), float(hi), len(x), level)
