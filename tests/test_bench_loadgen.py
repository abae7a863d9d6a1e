"""The closed-loop load generator's accounting, on a synthetic asyncio target."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tritonctl.bench.loadgen import in_window, percentiles, request_texts, run_point


class SleepTarget:
    """Answers after ``delay_s``; every ``fail_every``-th call raises."""

    name = "sleep"

    def __init__(self, delay_s: float, fail_every: int = 0) -> None:
        self.delay_s, self.fail_every = delay_s, fail_every
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False

    async def open(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)

    async def call(self, index: int) -> None:
        assert 0 <= index < len(self.texts)
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            if self.fail_every and self.calls % self.fail_every == 0:
                raise RuntimeError("synthetic failure")
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        self.closed = True


def test_closed_loop_keeps_concurrency_and_counts_only_the_window() -> None:
    target = SleepTarget(0.01)
    window = []
    point = run_point(
        target,
        ["a", "b", "c"],
        4,
        warmup_s=0.2,
        duration_s=0.6,
        on_window_start=lambda: window.append("start"),
        on_window_end=lambda: window.append("end"),
    )
    # Counts and concurrency only: how fast a sleep returns depends on the machine's load.
    assert target.max_in_flight == 4 and point.max_in_flight == 4 and target.closed
    assert window == ["start", "end"]
    assert 0 < point.requests < target.calls  # warm-up calls are not counted
    assert point.throughput == point.requests / point.seconds
    assert point.p50_ms >= 10.0  # a 10 ms sleep never returns sooner
    assert point.p50_ms <= point.p95_ms <= point.p99_ms
    assert point.errors == 0 and point.client_cpu_cores >= 0


def test_requests_straddling_the_window_edges_count_where_they_complete() -> None:
    window = (10.0, 20.0)
    records = [
        (9.0, 10.5, ""),  # started in the warm-up, completed inside: counts
        (10.5, 11.0, ""),
        (19.5, 20.5, ""),  # completed after the window: does not count
        (8.0, 9.5, ""),  # completed before it: does not count
        (12.0, 13.0, "RuntimeError: boom"),
        (19.0, 19.9, "RuntimeError: late"),
    ]
    latencies, errors, first = in_window(records, *window)
    assert sorted(latencies) == [0.5, 1.5]
    assert errors == 2 and first == "RuntimeError: boom"


def test_bulk_requests_count_every_item() -> None:
    target = SleepTarget(0.01)
    target.items_per_request = 8  # type: ignore[attr-defined]
    point = run_point(target, ["a", "b"], 2, warmup_s=0.05, duration_s=0.3)
    assert point.items_per_request == 8 and point.requests % 8 == 0 and point.requests > 0
    assert point.max_in_flight == 2


def test_failures_are_counted_with_their_message() -> None:
    point = run_point(SleepTarget(0.005, fail_every=3), ["x"], 2, warmup_s=0.0, duration_s=0.3)
    assert point.errors > 0 and point.requests > 0
    assert "synthetic failure" in point.first_error
    assert abs(point.errors / (point.errors + point.requests) - 1 / 3) < 0.15


def test_percentiles() -> None:
    assert percentiles([]) == (0.0, 0.0, 0.0, 0.0)
    p50, p95, p99, mean = percentiles([i / 1000 for i in range(1, 101)])
    assert round(p50, 1) == 50.5 and 94 < p95 < 96 and 98 < p99 < 100 and round(mean, 1) == 50.5


def test_bulk_requests_take_consecutive_texts_and_wrap() -> None:
    assert request_texts(["a", "b", "c"], 2) == [["a", "b"], ["b", "c"], ["c", "a"]]
    assert request_texts(["a", "b"], 1) == [["a"], ["b"]]
