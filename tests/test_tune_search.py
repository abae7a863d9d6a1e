"""The tuner's search on a synthetic, deterministic measurement: no server needed."""

from __future__ import annotations

from typing import Any

import pytest

from tritonctl.loadtest.slo import Figures, Objectives
from tritonctl.tune.search import (
    Knob,
    better,
    confirm_knobs,
    coordinate_descent,
    grid_size,
    keep_change,
)

KNOBS = [
    Knob("m.max_queue_delay_us", (0, 1000, 2000, 4000, 8000)),
    Knob("m.preferred_batch_size", (0, 8, 16, 32)),
    Knob("m.instances", (1, 2, 3)),
    Knob("m.intra_op_threads", (1, 2)),
]


def synthetic(candidate: dict[str, Any]) -> tuple[Figures, dict[str, Any]]:
    """Throughput grows with queue delay and batch size, 2 instances x 1 thread is the sweet spot
    on 2 cores, and latency grows with the queue delay: the SLO caps the delay."""
    delay = candidate["m.max_queue_delay_us"] / 1000.0
    batch = candidate["m.preferred_batch_size"] or 4
    instances, threads = candidate["m.instances"], candidate["m.intra_op_threads"]
    cores_used = min(instances * threads, 2)
    oversubscribed = 0.7 if instances * threads > 2 else 1.0
    rps = 100.0 * cores_used * oversubscribed * (1 + batch / 32) * (1 + delay / 10)
    p95 = 10.0 + 3.0 * delay
    return Figures(1000, 0, rps, p95 * 0.6, p95, p95 * 1.3), {}


def test_finds_the_best_configuration_within_the_slo_without_the_full_grid() -> None:
    calls: list[dict[str, Any]] = []

    def measure(candidate: dict[str, Any]) -> tuple[Figures, dict[str, Any]]:
        calls.append(candidate)
        return synthetic(candidate)

    start = {k.name: k.values[0] for k in KNOBS}
    objectives = Objectives(p95_ms=25.0)
    result = coordinate_descent(KNOBS, start, measure, objectives, max_passes=3)

    # Brute force over the grid for the true optimum under the SLO.
    import itertools

    feasible = []
    for values in itertools.product(*(k.values for k in KNOBS)):
        candidate = dict(zip((k.name for k in KNOBS), values, strict=True))
        figures, _ = synthetic(candidate)
        if figures.p95_ms <= 25.0:
            feasible.append((figures.rps, candidate))
    optimum_rps, _ = max(feasible, key=lambda item: item[0])

    assert result.best.meets_slo
    assert result.best.figures.rps == optimum_rps
    assert result.best.candidate["m.max_queue_delay_us"] == 4000  # 8000 would break the p95
    assert result.best.candidate["m.instances"] * result.best.candidate["m.intra_op_threads"] == 2
    assert len(calls) < grid_size(KNOBS) / 4  # 120-point grid
    assert len({tuple(sorted(c.items())) for c in calls}) == len(calls)  # nothing measured twice
    assert result.baseline.candidate == start


def test_prefers_the_smallest_miss_when_nothing_meets_the_slo() -> None:
    start = {k.name: k.values[-1] for k in KNOBS}
    result = coordinate_descent(KNOBS, start, synthetic, Objectives(p95_ms=1.0), max_passes=2)
    assert not result.best.meets_slo
    assert result.best.figures.p95_ms <= min(t.figures.p95_ms for t in result.trials) + 1e-9


def test_max_trials_caps_the_runs_and_min_gain_ignores_noise() -> None:
    start = {k.name: k.values[0] for k in KNOBS}
    result = coordinate_descent(KNOBS, start, synthetic, Objectives(p95_ms=25.0), max_trials=5)
    assert len(result.trials) == 5

    a = coordinate_descent(KNOBS[:1], start, synthetic, Objectives(), max_trials=1).best
    figures, _ = synthetic(start)
    noisy = Figures(1000, 0, figures.rps * 1.02, figures.p50_ms, figures.p95_ms, figures.p99_ms)
    b = coordinate_descent(KNOBS[:1], start, lambda c: (noisy, {}), Objectives(), max_trials=1).best
    assert not better(b, a, min_gain=0.03)
    assert better(b, a, min_gain=0.0)


def test_paired_measurement_cancels_drift() -> None:
    """Load from other processes slows every run a little more than the last: judged against the
    baseline measured minutes earlier, the helpful knob looks useless; paired with a fresh
    measurement of the incumbent, the search finds it."""
    clock = [0]

    def drifting(candidate: dict[str, Any]) -> Figures:
        clock[0] += 1
        slowdown = 1.0 + clock[0] * 0.1
        gain = 1.3 if candidate["m.instances"] == 2 else 1.0
        return Figures(1000, 0, 100.0 * gain / slowdown, 10.0, 20.0, 30.0)

    start = {"m.useless": 0, "m.instances": 1}
    knobs = [Knob("m.useless", (0, 1, 2)), Knob("m.instances", (1, 2))]
    unpaired = coordinate_descent(
        knobs, start, lambda c: (drifting(c), {}), Objectives(), min_gain=0.1, max_passes=1
    )
    assert unpaired.best.candidate == start  # fooled by the drift

    clock[0] = 0
    paired = coordinate_descent(
        knobs,
        start,
        lambda c: (drifting(c), {}),
        Objectives(),
        min_gain=0.1,
        max_passes=1,
        measure_pair=lambda inc, cand, first: (
            (drifting(inc), drifting(cand), {})
            if first
            else (*reversed((drifting(cand), drifting(inc))), {})
        ),
    )
    assert paired.best.candidate == {"m.useless": 0, "m.instances": 2}
    assert paired.best.extra["incumbent"] == 0 and paired.best.extra["paired_ratio"] > 1.1


def test_the_search_alternates_which_side_of_a_pair_runs_first() -> None:
    orders: list[bool] = []

    def pair(incumbent: dict, candidate: dict, incumbent_first: bool) -> tuple:
        orders.append(incumbent_first)
        return synthetic(incumbent)[0], synthetic(candidate)[0], {}

    start = {k.name: k.values[0] for k in KNOBS}
    result = coordinate_descent(
        KNOBS, start, synthetic, Objectives(p95_ms=25.0), max_trials=7, measure_pair=pair
    )
    assert orders == [True, False, True, False, True, False]  # never always the incumbent
    assert [t.extra["order"] for t in result.trials[1:3]] == ["incumbent first", "candidate first"]


def _figures(rps: float, p99: float = 30.0) -> Figures:
    return Figures(1000, 0, rps, 10.0, 20.0, p99)


SLO = Objectives(p99_ms=100.0)


def test_a_throughput_loss_is_never_kept_because_one_baseline_window_spiked() -> None:
    # The review's case: the candidate runs at 0.70x; one of the baseline's windows spiked
    # past the p99 limit. "Meets the SLO and the baseline does not" must not keep it.
    pairs = [(_figures(100.0), _figures(70.0)), (_figures(100.0, p99=150.0), _figures(70.0))]
    verdict = keep_change(pairs, SLO, min_gain=0.1)
    assert not verdict.keep
    assert verdict.reason.startswith("a throughput loss beyond noise: 0.70x")
    assert (verdict.candidate_meets, verdict.incumbent_meets) == (2, 1)


def test_the_keep_rule() -> None:
    gain = [(_figures(100.0), _figures(125.0)), (_figures(100.0), _figures(118.0))]
    assert keep_change(gain, SLO, 0.1).keep
    noise = [(_figures(100.0), _figures(106.0)), (_figures(100.0), _figures(103.0))]
    assert not keep_change(noise, SLO, 0.1).keep  # within the noise margin
    one_bad_round = [(_figures(100.0), _figures(140.0)), (_figures(100.0), _figures(85.0))]
    assert not keep_change(one_bad_round, SLO, 0.1).keep  # lost 15% in one round
    misses = [(_figures(100.0), _figures(120.0, p99=300.0)), (_figures(100.0), _figures(130.0))]
    assert not keep_change(misses, SLO, 0.1).keep  # misses the SLO in a round
    # The incumbent misses the SLO in every round and the change fixes it at equal throughput.
    fixes = [
        (_figures(100.0, p99=200.0), _figures(97.0)),
        (_figures(100.0, p99=180.0), _figures(99.0)),
    ]
    verdict = keep_change(fixes, SLO, 0.1)
    assert verdict.keep and "misses the SLO in 2 of 2" in verdict.reason


def test_each_changed_knob_is_confirmed_on_its_own_in_abba_order() -> None:
    """The search's best moved two knobs: one gains 30%, one costs 15%. As a bundle it still
    gains 10.5% (it would pass a bundle check); knob by knob, only the gain is kept."""
    calls: list[tuple[dict, dict, bool]] = []

    def rps(candidate: dict) -> float:
        return 100.0 * (1.3 if candidate["m.good"] else 1.0) * (0.85 if candidate["m.bad"] else 1.0)

    def pair(incumbent: dict, candidate: dict, incumbent_first: bool) -> tuple:
        calls.append((incumbent, candidate, incumbent_first))
        return _figures(rps(incumbent)), _figures(rps(candidate)), {}

    baseline, best = {"m.good": 0, "m.bad": 0}, {"m.good": 1, "m.bad": 1}
    assert rps(best) / rps(baseline) > 1.1
    chosen, records = confirm_knobs(
        pair, baseline, best, ["m.good", "m.bad"], SLO, rounds=2, min_gain=0.1
    )
    assert chosen == {"m.good": 1, "m.bad": 0}
    assert [(r["knob"], r["keep"]) for r in records] == [("m.good", True), ("m.bad", False)]
    # Two rounds per knob, ABBA: incumbent first, then candidate first.
    assert [first for _, _, first in calls] == [True, False, True, False]
    # The second knob is tried on top of the confirmed first one.
    assert calls[2][0] == {"m.good": 1, "m.bad": 0} and calls[2][1] == best


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        # 0 used to start two servers (~25 s) and then die on an AssertionError traceback.
        ("--max-trials", "0", "--max-trials must be at least 1"),
        ("--passes", "0", "--passes must be at least 1"),
        # 0 rounds keep_change()s every knob as "not measured": a run that can change nothing.
        ("--confirm-rounds", "0", "--confirm-rounds must be at least 1"),
        # A margin of 1 or more turns off the "no throughput loss beyond noise" rule
        # (worst ratio < 1 - margin can never hold), so a 0.1x candidate could be kept.
        ("--min-gain", "1", "--min-gain must be in [0, 1)"),
        ("--min-gain", "-0.1", "--min-gain must be in [0, 1)"),
    ],
)
def test_tune_refuses_settings_that_cannot_search_before_starting_a_server(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tritonctl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--model", "text_embedding", "--slo", "slo.yaml", flag, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
