"""Load-test verdicts: what a run is judged on, from a report folder written by hand.

Each folder holds what a Locust run leaves (per-request samples, ``events.json``, and
``locust_stats.json`` produced by Locust's own ``RequestStats`` in a child process), so the
tests check the reading and the judging without a server.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tritonctl.loadtest.results import exact_percentile, read_measurement, read_samples
from tritonctl.loadtest.run import objectives_note
from tritonctl.loadtest.slo import Figures, Objectives, SloProfile, evaluate, parse_profile

WARMUP_END = 1_000.0
WINDOW_S = 10.0


#: Exact p99 213.1 ms, which Locust's histogram keeps as 210 ms.
P99_213 = [20.0] * 985 + [213.1] * 10 + [400.0] * 5
#: Exact p99 2040 ms, which Locust's histogram keeps as 2000 ms.
P99_2040 = [30.0] * 980 + [2040.0] * 20


@pytest.fixture(scope="module")
def locust_json() -> dict[str, str]:
    """What Locust's ``--json-file`` holds for those runs: Locust's own ``RequestStats``.

    Locust patches the interpreter with gevent on import, so it runs in a child process.
    """
    script = (
        "import json, sys\n"
        "from locust.stats import RequestStats\n"
        "out = {}\n"
        "for name, latencies in json.load(sys.stdin).items():\n"
        "    stats = RequestStats()\n"
        "    for ms in latencies:\n"
        "        stats.log_request('grpc', 'm', ms, 10)\n"
        "    out[name] = json.dumps(stats.serialize_stats())\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps({"p99_213": P99_213, "p99_2040": P99_2040}),
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


def write_run(
    folder: Path,
    latencies_ms: list[float],
    *,
    ok: list[bool] | None = None,
    unanswered: int = 0,
    warmup: list[float] = (),  # type: ignore[assignment]
    locust: str = "[]",
) -> Path:
    """A report folder: requests spread evenly over the window, plus warm-up ones before it."""
    folder.mkdir(parents=True, exist_ok=True)
    ok = ok if ok is not None else [True] * len(latencies_ms)
    count = len(latencies_ms) + unanswered
    rows = []
    for i, ms in enumerate(warmup):
        sent = WARMUP_END - 1.0 + i * 0.01
        rows.append((sent, sent + ms / 1000, ms, ms, 1))
    for i, (ms, good) in enumerate(zip(latencies_ms, ok, strict=True)):
        sent = WARMUP_END + WINDOW_S * i / count
        rows.append((sent, sent + ms / 1000, ms, ms * 0.9, int(good)))
    for i in range(unanswered):
        sent = WARMUP_END + WINDOW_S * (len(latencies_ms) + i) / count
        rows.append((sent, math.nan, math.nan, math.nan, 0))
    with open(folder / "samples-1.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sent", "end", "latency_ms", "service_ms", "ok"])
        writer.writerows(rows)
    (folder / "events.json").write_text(
        json.dumps(
            {
                "test_start": WARMUP_END - 1.0,
                "warmup_end": WARMUP_END,
                "window_end": WARMUP_END + WINDOW_S,
                "test_stop": WARMUP_END + WINDOW_S + 3.0,
            }
        )
    )
    (folder / "locust_stats.json").write_text(locust)
    return folder


def test_a_run_where_every_request_fails_cannot_pass() -> None:
    # No profile, no objective given: the default error objective and the success check hold.
    results = evaluate(Objectives(), Figures(13976, 13976, 0.0, 1.0, 2.0, 3.0))
    failed = [r.message for r in results if not r.passed]
    assert failed == ["successful requests 0 < 1 (-100%)", "error ratio 100.00% > 0.00% (+inf%)"]


def test_the_error_objective_defaults_to_zero_unless_the_profile_sets_it() -> None:
    assert Objectives().max_error_ratio == 0.0
    assert parse_profile({"objectives": {"p95_ms": 50}}).objectives.max_error_ratio == 0.0
    relaxed = parse_profile({"objectives": {"max_error_ratio": 0.01}})
    assert relaxed.objectives.max_error_ratio == 0.01
    (one_failure,) = evaluate(Objectives(), Figures(1000, 1, 99.9, 1.0, 2.0, 3.0))
    assert not one_failure.passed and one_failure.key == "max_error_ratio"
    assert all(r.passed for r in evaluate(relaxed.objectives, Figures(1000, 1, 99.9, 1, 2, 3)))


def test_throughput_counts_successful_requests_only(tmp_path: Path) -> None:
    folder = write_run(tmp_path, [5.0] * 100, ok=[True] * 60 + [False] * 40)
    figures = read_measurement(folder, "m").figures()
    assert (figures.requests, figures.failures, figures.succeeded) == (100, 40, 60)
    assert figures.rps == pytest.approx(60 / WINDOW_S)
    assert figures.offered_rps == pytest.approx(100 / WINDOW_S)
    results = evaluate(Objectives(min_rps=8.0, max_error_ratio=None), figures)
    assert [r.message for r in results] == ["throughput 6.0 req/s < 8.0 req/s (-25%)"]


def test_verdicts_use_exact_percentiles_not_locusts_rounded_histogram(
    tmp_path: Path, locust_json: dict[str, str]
) -> None:
    folder = write_run(tmp_path, P99_213, locust=locust_json["p99_213"])
    measurement = read_measurement(folder, "m")
    assert measurement.totals.percentile(0.99) == 210  # Locust's own figure, for display
    figures = measurement.figures()
    assert figures.p99_ms == pytest.approx(213.1)
    (p99,) = [r for r in evaluate(Objectives(p99_ms=212), figures) if r.key == "p99_ms"]
    assert not p99.passed and p99.message == "p99 213.1 ms > 212 ms (+1%)"


def test_a_p99_just_over_2_seconds_fails_a_2_second_objective(
    tmp_path: Path, locust_json: dict[str, str]
) -> None:
    # Locust rounds 2040 ms to 2000 ms, which would pass; the exact figure does not.
    measurement = read_measurement(
        write_run(tmp_path, P99_2040, locust=locust_json["p99_2040"]), "m"
    )
    assert measurement.totals.percentile(0.99) == 2000
    (p99,) = [
        r for r in evaluate(Objectives(p99_ms=2000), measurement.figures()) if r.key == "p99_ms"
    ]
    assert not p99.passed and p99.actual == 2040.0


def test_only_requests_sent_in_the_window_count(tmp_path: Path) -> None:
    folder = write_run(tmp_path, [10.0] * 50, warmup=[900.0] * 30)
    measurement = read_measurement(folder, "m")
    assert len(measurement.samples) == 80
    figures = measurement.figures()
    assert figures.requests == 50 and figures.p99_ms == 10.0  # the slow warm-up is left out


def test_unanswered_requests_count_as_slower_than_any_answered_one(tmp_path: Path) -> None:
    folder = write_run(tmp_path, [10.0] * 95, unanswered=5)
    figures = read_measurement(folder, "m").figures()
    assert (figures.requests, figures.failures, figures.unanswered) == (100, 0, 5)
    assert figures.p50_ms == 10.0 and math.isinf(figures.p99_ms)
    assert figures.rps == pytest.approx(95 / WINDOW_S)
    (p99,) = [r for r in evaluate(Objectives(p99_ms=5000), figures) if r.key == "p99_ms"]
    assert not p99.passed and p99.message == "p99 unanswered > 5000 ms (+inf%)"
    assert p99.as_dict()["actual"] is None  # JSON has no infinity
    json.dumps(p99.as_dict(), allow_nan=False)


def test_unanswered_requests_fail_a_run_without_latency_objectives(tmp_path: Path) -> None:
    """Without a latency objective no percentile catches a request that was never answered.

    Seen on a real server: an open-loop profile with only the (default) error objective at
    300 req/s against a ~50 req/s server left 1,450 of 1,740 requests unanswered, printed
    PASS, and ``--find-capacity`` recorded a capacity of 300 req/s for ``plan`` to read.
    """
    folder = write_run(tmp_path, [10.0] * 20, unanswered=80)
    figures = read_measurement(folder, "m").figures()
    results = evaluate(Objectives(), figures)
    (miss,) = [r for r in results if not r.passed]
    assert miss.key == "unanswered" and miss.message.startswith("unanswered requests 80 > 0")
    # min_rps alone does not time requests either, and the capacity search skips it per step.
    assert not all(r.passed for r in evaluate(Objectives(min_rps=1), figures, skip=("min_rps",)))
    # With a latency objective the unanswered ones are already slower than it (see above).
    assert [r.key for r in evaluate(Objectives(p50_ms=50), figures) if not r.passed] == ["p50_ms"]
    # Every request answered: nothing extra is checked.
    answered = read_measurement(write_run(tmp_path / "ok", [10.0] * 20), "m").figures()
    assert all(r.passed for r in evaluate(Objectives(), answered))


def test_samples_keep_the_due_time_and_the_service_time(tmp_path: Path) -> None:
    samples = read_samples(write_run(tmp_path, [10.0, 20.0], unanswered=1))
    assert len(samples) == 3
    assert samples.answered.tolist() == [True, True, False]
    assert samples.service_ms[:2].tolist() == pytest.approx([9.0, 18.0])


def test_exact_percentile_is_an_observed_value() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0])
    assert exact_percentile(values, 0.5) == 2.0  # no interpolation to 2.5
    assert exact_percentile(values, 0.99) == 4.0
    assert math.isnan(exact_percentile(np.array([]), 0.5))


def test_a_run_without_latency_or_throughput_objectives_says_so() -> None:
    note = objectives_note(SloProfile(model="text_embeding"))
    assert "No latency or throughput objectives were set" in note
    assert "'text_embeding'" in note and "error objective" in note
    assert objectives_note(SloProfile(objectives=Objectives(p95_ms=100))) == ""
