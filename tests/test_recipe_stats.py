"""The statistics and gate helpers behind both build reports: intervals, paired tests, NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tritonctl.recipes.digits.gates import default_variant
from tritonctl.recipes.stats import (
    at_least,
    at_most,
    bootstrap_mean_interval,
    finite,
    mcnemar_exact,
    wilson,
)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None])
def test_gates_refuse_non_finite_values(bad: float | None) -> None:
    # `bad < 0.99` is False for NaN: a plain comparison would let it through.
    assert not at_least(bad, 0.99)
    assert not at_most(bad, 1.5)
    assert not finite(0.5, bad)


def test_gates_compare_finite_values() -> None:
    assert at_least(0.99, 0.99) and not at_least(0.9899, 0.99)
    assert at_most(1.5, 1.5) and not at_most(1.51, 1.5)


@pytest.mark.parametrize(("hits", "n"), [(354, 360), (352, 360), (137, 300), (9, 10)])
def test_wilson_interval_agrees_with_scipy(hits: int, n: int) -> None:
    from scipy.stats import binomtest

    expected = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson(hits, n) == pytest.approx((expected.low, expected.high), abs=1e-6)


def test_wilson_interval_edges() -> None:
    assert wilson(360, 360)[1] == pytest.approx(1.0) and wilson(0, 10)[0] == pytest.approx(0.0)
    assert wilson(0, 10)[0] >= 0.0 and wilson(360, 360)[1] <= 1.0
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_mcnemar_counts_only_discordant_pairs() -> None:
    a = np.array([True] * 50 + [True] * 3 + [False] * 1)
    b = np.array([True] * 50 + [False] * 3 + [True] * 1)
    result = mcnemar_exact(a, b)
    assert (result["only_first"], result["only_second"]) == (3, 1)
    # two-sided exact: 2 * P(X <= 1 | n=4, p=1/2) = 2 * 5/16
    assert result["p_value"] == pytest.approx(0.625)
    assert mcnemar_exact(a, a)["p_value"] == 1.0
    strong = mcnemar_exact(np.ones(30, bool), np.zeros(30, bool))
    assert strong["p_value"] < 1e-8
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_exact(a, b[:-1])


def test_bootstrap_interval_is_reproducible_and_covers_the_mean() -> None:
    values = np.random.default_rng(1).normal(0.5, 0.1, 400)
    low, high = bootstrap_mean_interval(values)
    assert low < values.mean() < high and high - low < 0.05
    assert bootstrap_mean_interval(values) == (low, high)
    assert all(math.isnan(v) for v in bootstrap_mean_interval(np.array([1.0, np.nan])))


def _rows(**validation_points: float) -> dict[str, dict[str, float]]:
    macs = {"teacher": 100, "student": 5, "pruned": 100, "pruned_channels": 30, "int8": 100}
    return {
        v: {
            "macs": macs[v],
            "onnx_bytes": macs[v],
            "validation_points_below_teacher": validation_points.get(v, 0.0),
            # the test split says the opposite: it must not matter
            "points_below_teacher": -5.0 if v == "pruned_channels" else 5.0,
        }
        for v in macs
    }


def test_default_is_chosen_on_validation_not_on_test() -> None:
    assert default_variant(_rows(student=0.37)) == "student"
    # Student 1 validation image too many: the next cheapest eligible variant.
    assert default_variant(_rows(student=0.74)) == "pruned_channels"
    # A NaN validation figure makes a variant ineligible, never the default.
    assert default_variant(_rows(student=float("nan"))) == "pruned_channels"
    everything_worse = {"student": 2.0, "pruned": 2.0, "pruned_channels": 2.0, "int8": 2.0}
    assert default_variant(_rows(**everything_worse)) == "teacher"
