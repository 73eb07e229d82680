"""Inter-rater agreement of a human user study: Krippendorff's alpha.

Krippendorff's alpha (Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011) is
``1 - D_o / D_e``: the disagreement observed between the values raters gave the same unit,
over the disagreement expected if the same values had been paired at random. Both come from
the *coincidence matrix* ``o``: every unit ``u`` with ``m_u >= 2`` values contributes each
ordered pair of its values ``(c, k)`` from two different raters with weight
``1 / (m_u - 1)``, so the unit adds ``m_u`` in all and ``n_c = sum_k o_ck`` is the number of
pairable values equal to ``c`` (``n = sum_c n_c``). Then, with the squared distance
``delta2(c, k)`` of the level of measurement,

    D_o = sum_ck o_ck delta2(c, k) / n,   D_e = sum_ck n_c n_k delta2(c, k) / (n (n - 1)).

The distances: *nominal* ``[c != k]``; *interval* ``(c - k)**2``; *ratio*
``((c - k) / (c + k))**2`` (values must be >= 0); *ordinal*
``(sum_{g=c..k} n_g - (n_c + n_k) / 2)**2``, the count of pairable values between ``c`` and
``k`` (half of each end's).

Units with fewer than two values are not pairable and left out; missing values (NaN) are never
an opinion. Alpha is NaN when no unit is pairable or all pairable values are equal
(``D_e == 0``). 1 is perfect agreement, 0 is agreement at chance; it is negative when raters
disagree more than chance.

The sums need not visit the ``K x K`` matrix: for a distance ``(f(c) - f(k))**2`` the pairs of
a unit sum to ``2 m_u`` times its sum of squares around its mean, and those of all pairable
values to ``2 n`` times the total one, so the interval level is linear in the number of values,
and so is the ordinal one, whose distance is that of ``f(c) = sum_{g<=c} n_g - n_c / 2`` (the
mid-rank of ``c``). The nominal sums are ``m_u**2 - sum_c n_uc**2`` and ``n**2 - sum_c n_c**2``.
Only the ratio level builds the matrix (at most ``MAX_RATIO_VALUES`` distinct values).
:func:`coincidences` and :func:`alpha_from_coincidences` give the textbook route for every
level, as a check and for reports.

- :func:`krippendorff_alpha`: wide data, raters x units, NaN for missing.
- :func:`alpha_from_long`: one row per rating (unit id, rater id, value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from omni_core.errors import OmniError

__all__ = ["LEVELS", "MAX_RATIO_VALUES", "Coincidences", "alpha_from_coincidences",
           "alpha_from_long", "coincidences", "krippendorff_alpha"]

LEVELS = ("nominal", "ordinal", "interval", "ratio")
MAX_RATIO_VALUES = 4096  # distinct pairable values the K x K ratio matrix may have


@dataclass(frozen=True, eq=False)
class Coincidences:
    """The coincidence matrix ``matrix[c, k]`` over the sorted distinct pairable ``values``."""

    values: np.ndarray
    matrix: np.ndarray

    @property
    def n_c(self) -> np.ndarray:
        """Pairable values equal to each of ``values``."""
        return self.matrix.sum(axis=1)

    @property
    def n(self) -> float:
        return float(self.matrix.sum())


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise OmniError(f"Krippendorff's alpha: level must be one of {', '.join(LEVELS)}, "
                        f"got {level!r}")


def _as_values(values, what: str) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OmniError(f"Krippendorff's alpha: {what} must be numbers (NaN for missing)") \
            from exc
    if np.isinf(x).any():
        raise OmniError(f"Krippendorff's alpha: {what} has an infinite value")
    return x


def _wide(data) -> tuple[np.ndarray, np.ndarray]:
    """(unit code, value) of every present rating of raters x units ``data``."""
    x = _as_values(data, "data")
    if x.ndim != 2:
        raise OmniError(f"Krippendorff's alpha: data must be 2-D (raters x units), got "
                        f"{x.ndim}-D")
    present = np.isfinite(x)
    units = np.broadcast_to(np.arange(x.shape[1]), x.shape)[present]
    return units, x[present]


def _long(units: Sequence, raters: Sequence, values: Sequence) -> tuple[np.ndarray, np.ndarray]:
    x = _as_values(values, "values").ravel()
    u = np.asarray(units).ravel()
    r = np.asarray(raters).ravel()
    if not len(u) == len(r) == len(x):
        raise OmniError(f"Krippendorff's alpha: {len(u)} units, {len(r)} raters and {len(x)} "
                        f"values: one of each per rating")
    if len(x) == 0:
        return np.zeros(0, np.int64), x
    u_code = np.unique(u, return_inverse=True)[1].ravel()
    r_code = np.unique(r, return_inverse=True)[1].ravel()
    pair = u_code.astype(np.int64) * (int(r_code.max()) + 1) + r_code
    _, first, count = np.unique(pair, return_index=True, return_counts=True)
    if (count > 1).any():
        j = int(np.argmax(count > 1))
        i = first[j]
        rater, unit = r[i:i + 1].tolist()[0], u[i:i + 1].tolist()[0]  # plain ids, not np.str_
        raise OmniError(f"Krippendorff's alpha: rater {rater!r} rated unit {unit!r} "
                        f"{int(count[j])} times; one rating per (unit, rater)")
    present = np.isfinite(x)
    return u_code[present], x[present]


def _pairable(units: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the values of units with at least two; unit codes made dense; each unit's ``m_u``."""
    if len(x) == 0:
        return np.zeros(0, np.int64), x, np.zeros(0, np.int64)
    m = np.bincount(units)
    keep = m[units] >= 2
    u = np.unique(units[keep], return_inverse=True)[1].ravel()
    return u, x[keep], np.bincount(u) if len(u) else np.zeros(0, np.int64)


def _squared_alpha(u: np.ndarray, f: np.ndarray, m: np.ndarray) -> float:
    """Alpha for the distance ``(f(c) - f(k))**2``: within-unit over total sums of squares."""
    n = len(f)
    unit_mean = np.bincount(u, weights=f) / m
    ss_unit = np.bincount(u, weights=(f - unit_mean[u]) ** 2)
    ss_total = float(((f - f.mean()) ** 2).sum())
    observed = float((ss_unit * m / (m - 1)).sum())  # sum_ck o_ck delta2 / 2
    return 1.0 - (n - 1) * observed / (n * ss_total)


def _nominal_alpha(u: np.ndarray, codes: np.ndarray, m: np.ndarray, k: int) -> float:
    n = len(codes)
    pair, n_uc = np.unique(u.astype(np.int64) * k + codes, return_counts=True)
    same_unit = np.bincount(pair // k, weights=n_uc.astype(np.float64) ** 2, minlength=len(m))
    observed = float(((m.astype(np.float64) ** 2 - same_unit) / (m - 1)).sum())
    n_c = np.bincount(codes, minlength=k).astype(np.float64)
    expected = float(n) ** 2 - float((n_c ** 2).sum())
    return 1.0 - (n - 1) * observed / expected


def _mid_ranks(n_c: np.ndarray) -> np.ndarray:
    """``sum_{g<=c} n_g - n_c / 2``: the ordinal distance is the squared difference of these."""
    return np.cumsum(n_c) - n_c / 2.0


def _distances(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    """The ``K x K`` squared distances of the level between the sorted distinct ``values``."""
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(np.float64)
    if level == "interval":
        return (c - k) ** 2
    if level == "ordinal":
        mid = _mid_ranks(n_c)
        return (mid[:, None] - mid[None, :]) ** 2
    if (values < 0).any():
        raise OmniError("Krippendorff's alpha: the ratio level needs values >= 0")
    total = c + k
    with np.errstate(invalid="ignore", divide="ignore"):
        d = ((c - k) / total) ** 2
    return np.where(total == 0, 0.0, d)  # only 0 vs 0: no distance


def _coincidence_matrix(u: np.ndarray, codes: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    """``sum_u (n_u n_u^T - diag(n_u)) / (m_u - 1)`` from the (unit, value) counts, units in
    blocks so that the dense block of counts stays small."""
    matrix = np.zeros((k, k))
    block = max(1, 4_000_000 // max(k, 1))
    for start in range(0, len(m), block):
        stop = min(start + block, len(m))
        sel = (u >= start) & (u < stop)
        counts = np.zeros((stop - start, k))
        np.add.at(counts, (u[sel] - start, codes[sel]), 1.0)
        w = 1.0 / (m[start:stop] - 1)
        matrix += (counts * w[:, None]).T @ counts
        matrix -= np.diag((counts * w[:, None]).sum(axis=0))
    return matrix


def _prepare(units: np.ndarray, x: np.ndarray):
    u, x, m = _pairable(units, x)
    values, codes = np.unique(x, return_inverse=True)
    return u, x, m, values, codes.ravel()


def coincidences(data) -> Coincidences:
    """The coincidence matrix of raters x units ``data`` (NaN missing)."""
    u, _, m, values, codes = _prepare(*_wide(data))
    return Coincidences(values, _coincidence_matrix(u, codes, m, len(values)))


def alpha_from_coincidences(c: Coincidences, level: str = "interval") -> float:
    """Alpha from a coincidence matrix, straight from the definition (``K x K`` work)."""
    _check_level(level)
    n_c, n = c.n_c, c.n
    if len(c.values) < 2 or n == 0:
        return float("nan")
    delta2 = _distances(c.values, n_c, level)
    observed = float((c.matrix * delta2).sum())
    expected = float((np.outer(n_c, n_c) * delta2).sum())
    return 1.0 - (n - 1) * observed / expected


def _alpha(units: np.ndarray, x: np.ndarray, level: str) -> float:
    _check_level(level)
    u, x, m, values, codes = _prepare(units, x)
    if len(values) < 2:  # no pairable unit, or no variation: D_e == 0
        return float("nan")
    if level == "interval":
        return _squared_alpha(u, x, m)
    if level == "ordinal":
        n_c = np.bincount(codes, minlength=len(values)).astype(np.float64)
        return _squared_alpha(u, _mid_ranks(n_c)[codes], m)
    if level == "nominal":
        return _nominal_alpha(u, codes, m, len(values))
    if (values < 0).any():
        raise OmniError("Krippendorff's alpha: the ratio level needs values >= 0")
    if len(values) > MAX_RATIO_VALUES:
        raise OmniError(f"Krippendorff's alpha: the ratio level builds a matrix of the "
                        f"distinct values, and there are {len(values)} (at most "
                        f"{MAX_RATIO_VALUES}); round them, or use the interval level")
    matrix = _coincidence_matrix(u, codes, m, len(values))
    return alpha_from_coincidences(Coincidences(values, matrix), level)


def krippendorff_alpha(data, level: str = "interval") -> float:
    """Krippendorff's alpha of ``data``, raters x units (NaN for a missing rating), at
    ``level`` ``"nominal"``, ``"ordinal"``, ``"interval"`` or ``"ratio"``."""
    return _alpha(*_wide(data), level)


def alpha_from_long(units: Sequence, raters: Sequence, values: Sequence,
                    level: str = "interval") -> float:
    """Krippendorff's alpha of ratings given one per row: the unit rated, the rater and the
    value (NaN for missing). A (unit, rater) pair given twice is an error."""
    return _alpha(*_long(units, raters, values), level)
