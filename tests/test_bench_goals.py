"""The bench's verdicts: per-round ratios, min–max intervals, errors that void a comparison."""

from __future__ import annotations

from tritonctl.bench.goals import Goal, Round, bench_goals, judge, p50_gap, ratio
from tritonctl.bench.loadgen import Point


def point(throughput: float, p50: float = 10.0, errors: int = 0) -> Point:
    return Point(
        config="x",
        concurrency=16,
        requests=int(throughput * 4),
        errors=errors,
        seconds=4.0,
        throughput=throughput,
        p50_ms=p50,
        p95_ms=p50 * 2,
        p99_ms=p50 * 3,
        mean_ms=p50,
        client_cpu_cores=0.1,
        first_error="UNAVAILABLE: queue full" if errors else "",
    )


GOAL = Goal("1", "served / limit", 0.80, "min", ("b", "a"), ratio("b", "a"))


def rounds(*pairs: tuple[float, float], errors: int = 0) -> list[Round]:
    return [{"b": point(b, errors=errors), "a": point(a)} for b, a in pairs]


def test_met_only_when_every_round_clears_the_target() -> None:
    # Median 0.85 would pass a single-number check; one round at 0.78 leaves it not met.
    verdict = judge(GOAL, rounds((85, 100), (78, 100), (90, 100)))
    assert verdict.value == 0.85 and verdict.low == 0.78 and verdict.high == 0.90
    assert verdict.met is False and verdict.status == "not met"
    assert judge(GOAL, rounds((81, 100), (85, 100), (90, 100))).met is True


def test_a_configuration_with_errors_is_reported_not_ranked() -> None:
    verdict = judge(GOAL, rounds((300, 100), (300, 100), (300, 100), errors=5))
    assert verdict.values == [] and verdict.met is False and verdict.status == "void: errors"
    assert len(verdict.errors) == 3 and "queue full" in verdict.errors[0]


def test_ratios_are_taken_within_a_round() -> None:
    # The limit drifts between rounds; each round's ratio uses that round's limit only.
    verdict = judge(GOAL, rounds((90, 100), (45, 50), (180, 200)))
    assert verdict.values == [0.9, 0.9, 0.9]


def test_latency_goal_is_an_upper_bound_in_milliseconds() -> None:
    goal = Goal("3", "p50 gap", 1.0, "max", ("b", "a"), p50_gap("b", "a"))
    ok = [{"b": point(1, p50=4.5), "a": point(1, p50=3.8)} for _ in range(3)]
    late = [*ok[:2], {"b": point(1, p50=5.2), "a": point(1, p50=3.8)}]
    assert judge(goal, ok).met is True
    assert judge(goal, late).met is False


def test_missing_points_leave_a_goal_unjudged() -> None:
    verdict = judge(GOAL, [{"b": point(10)}])
    assert verdict.met is None and verdict.missing_rounds == 1


def test_every_comparison_is_at_one_concurrency() -> None:
    for goal in bench_goals(["short"], 16, [(8, 4)]):
        if "FastAPI" in goal.number or "LitServe" in goal.number or goal.number.startswith("5"):
            concurrencies = {key.rsplit("@", 1)[1] for key in goal.uses}
            assert concurrencies == {"16"}, goal


def test_cpu_efficiency_rows_compare_cpu_per_item() -> None:
    from tritonctl.bench.goals import cpu_ratio

    served, limit = point(100), point(300)
    served.extra["cpu_ms_per_item"], limit.extra["cpu_ms_per_item"] = 10.0, 8.0
    assert cpu_ratio("a", "b")({"a": limit, "b": served}) == 0.8
    served.extra.clear()
    assert cpu_ratio("a", "b")({"a": limit, "b": served}) is None
