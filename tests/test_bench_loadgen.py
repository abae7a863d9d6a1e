"""The closed-loop load generator's accounting, on a synthetic asyncio target."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tritonctl.bench.loadgen import percentiles, run_point


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
    assert target.max_in_flight == 4 and target.closed
    assert window == ["start", "end"]
    # 4 clients x ~10 ms each: about 400/s; warm-up calls are not counted.
    assert 150 < point.throughput < 450
    assert point.requests < target.calls
    assert 9.5 < point.p50_ms <= point.p95_ms <= point.p99_ms < 60
    assert point.errors == 0 and point.client_cpu_cores >= 0


def test_failures_are_counted_with_their_message() -> None:
    point = run_point(SleepTarget(0.005, fail_every=3), ["x"], 2, warmup_s=0.0, duration_s=0.3)
    assert point.errors > 0 and point.requests > 0
    assert "synthetic failure" in point.first_error
    assert abs(point.errors / (point.errors + point.requests) - 1 / 3) < 0.15


def test_percentiles() -> None:
    assert percentiles([]) == (0.0, 0.0, 0.0, 0.0)
    p50, p95, p99, mean = percentiles([i / 1000 for i in range(1, 101)])
    assert round(p50, 1) == 50.5 and 94 < p95 < 96 and 98 < p99 < 100 and round(mean, 1) == 50.5
