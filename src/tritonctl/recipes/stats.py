"""Small, exact statistics for the build reports: intervals, paired tests, NaN-safe gates.

Every figure a gate reads goes through ``at_least``/``at_most``: a comparison with NaN is
False in Python, so ``value < gate`` lets a NaN through while ``not at_least(value, gate)``
does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: two-sided 95 % normal quantile
Z95 = 1.959963984540054


def finite(*values: float | None) -> bool:
    """True when every value is a real, finite number (not None, NaN or ±inf)."""
    return all(v is not None and math.isfinite(v) for v in values)


def at_least(value: float | None, threshold: float) -> bool:
    """``value ≥ threshold`` for a finite ``value``; a NaN, inf or missing value fails."""
    return finite(value) and value >= threshold  # type: ignore[operator]


def at_most(value: float | None, threshold: float) -> bool:
    """``value ≤ threshold`` for a finite ``value``; a NaN, inf or missing value fails."""
    return finite(value) and value <= threshold  # type: ignore[operator]


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (stays inside [0, 1], good near 0 % and 100 %)."""
    if trials <= 0:
        return (float("nan"), float("nan"))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(
    a_correct: Sequence[bool] | np.ndarray, b_correct: Sequence[bool] | np.ndarray
) -> dict[str, float | int]:
    """Exact two-sided McNemar test of two classifiers on the same items.

    Only discordant items count: ``only_a`` (a right, b wrong) and ``only_b``. Under the null
    hypothesis each is Binomial(n, ½) with ``n = only_a + only_b``; p is the two-sided tail.
    """
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0
    return {"only_first": only_a, "only_second": only_b, "p_value": min(1.0, 2 * tail)}


def bootstrap_mean_interval(
    values: np.ndarray, *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of ``values`` (e.g. per-query hits).

    For paired differences pass ``variant - reference`` per item: the interval is then the
    paired one. Fixed seed, so a report is reproducible.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return (float(low), float(high))
