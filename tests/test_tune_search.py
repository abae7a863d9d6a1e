"""The tuner's search on a synthetic, deterministic measurement: no server needed."""

from __future__ import annotations

from typing import Any

from tritonctl.loadtest.slo import Figures, Objectives
from tritonctl.tune.search import Knob, better, coordinate_descent, grid_size

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
        measure_pair=lambda inc, cand: (drifting(inc), drifting(cand), {}),
    )
    assert paired.best.candidate == {"m.useless": 0, "m.instances": 2}
    assert paired.best.extra["incumbent"] == 0 and paired.best.extra["paired_ratio"] > 1.1
