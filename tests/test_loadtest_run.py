"""``tritonctl loadtest`` against the real tritonserver: short Locust runs, real reports.

The machinery runs against a tiny Python model (fast to start, predictable); the shipped SLO
profiles run against the real pipelines on the session server. Assertions are on counts,
verdicts and consistency between files, never on how fast a loaded CI machine is.
"""

from __future__ import annotations

import base64
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_repository import make_tiny_repository
from tritonctl.cli import main
from tritonctl.k8s.plan import load_capacity
from tritonctl.loadtest import SloProfile, Target, find_capacity, load_profile, run_loadtest
from tritonctl.loadtest.results import exact_percentile
from tritonctl.loadtest.slo import CapacitySearch
from tritonctl.server import LocalTriton

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "loadtests" / "slo").glob("*.yaml"))
SHORT = {"warmup_s": 1.0, "duration_s": 2.0}
STEP = {"warmup_s": 0.5, "duration_s": 1.5, "drain_s": 1.0}  # capacity-search steps

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    """``add_one`` (Python backend, 2 ms per execution, dynamic batching)."""
    repository = make_tiny_repository(
        tmp_path_factory.mktemp("loadtest-repo"), delay_s=0.002, queue_delay_us=500
    )
    with LocalTriton(repository, models=["add_one"], exit_timeout=3) as server:
        yield server


def aggregated_row(path: Path) -> dict[str, str]:
    with open(path, newline="") as handle:
        return next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")


def test_impossible_objective_fails_names_it_and_writes_the_report(
    tiny_server: LocalTriton, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "loadtest",
            "--target", f"grpc://{tiny_server.grpc_address}",
            "--metrics-url", tiny_server.metrics_url,
            "--model", "add_one",
            "--users", "2",
            "--warmup", "1",
            "--duration", "3",
            "--p95", "0.01",
            "--max-error-ratio", "0",
            "--report-dir", str(tmp_path),
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    output = " ".join((captured.out + captured.err).split())
    assert code == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] is False
    (missed,) = summary["failed"]
    assert re.fullmatch(r"p95 \d+(\.\d+)? ms > 0\.01 ms \(\+\d+%\)", missed), missed
    assert missed in output
    assert [o["objective"] for o in summary["objectives"] if o["passed"]] == ["max_error_ratio"]

    # The report folder: CSVs, JSON and a self-contained HTML page with its plots inlined.
    for name in (
        "report.html", "samples.csv", "percentiles.csv", "server_breakdown.csv",
        "locust_stats_final.csv", "locust_stats_history.csv", "locust_failures_final.csv",
    ):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    page = (tmp_path / "report.html").read_text()
    images = dict(
        re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    )
    assert set(images) == {
        "objectives", "latency percentiles over time", "throughput over time",
        "server-side breakdown",
    }  # fmt: skip
    for data in images.values():
        assert base64.b64decode(data).startswith(b"\x89PNG")
    assert not re.search(r'(src|href)="https?:', page)  # self-contained: nothing to fetch

    # The measured window is as long as asked (gevent's stale clock once cut it short).
    assert summary["window"]["measured_s"] == pytest.approx(3.0, abs=0.3)
    # The JSON figures are exact, from every request due in the window (samples.csv).
    with open(tmp_path / "samples.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["measured"] == "1"]
    latencies = np.array([float(r["latency_ms"]) for r in rows if r["ok"] == "1"])
    assert summary["requests"] == len(rows) > 20
    assert summary["failures"] == 0 and summary["unanswered"] == 0
    for q in (0.5, 0.95, 0.99):
        key = f"p{q * 100:g}"
        assert summary["latency_ms"][key] == pytest.approx(exact_percentile(latencies, q), abs=1e-3)
    assert summary["rps"] == pytest.approx(
        len(latencies) / summary["window"]["measured_s"], rel=1e-3
    )
    assert all(float(r["latency_ms"]) >= float(r["service_ms"]) - 1e-3 for r in rows)
    # Locust's rounded figures are kept beside them, for reference only.
    row = aggregated_row(tmp_path / "locust_stats_final.csv")
    assert summary["locust_rounded_ms"]["requests"] == int(row["Request Count"])
    # The load generator's own CPU and who answered both scrapes (the same local server).
    cpu = summary["load_generator"]
    assert cpu["processes"] == 1 and 0 < cpu["cpu_cores"] <= cpu["machine_cores"]
    servers = summary["server"]["servers"]
    assert servers["before"] == servers["after"]
    assert servers["before"]["address"].endswith(
        tiny_server.metrics_url.split(":")[-1].split("/")[0]
    )

    # Triton's own view of the same window (scraped at its ends; requests are counted by when
    # they were sent, so the two differ by the requests straddling an edge).
    server = summary["server"]["models"]["add_one"]
    assert abs(server["success"] - summary["requests"]) <= 0.1 * summary["requests"] + 8
    assert server["avg_compute_infer_ms"] >= 2.0  # the model sleeps 2 ms per execution
    assert server["avg_batch_size"] >= 1.0
    assert (
        server["avg_request_ms"] >= server["avg_queue_ms"] + server["avg_compute_infer_ms"] - 0.01
    )


def test_a_model_that_does_not_exist_fails_with_tritons_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --local starts the real server itself (loading no model here) and stops it afterwards.
    # No profile and no objective on the command line: the default error objective fails it.
    code = main(
        [
            "loadtest", "--local", "--model", "no_such_model", "--protocol", "http",
            "--users", "2", "--warmup", "1", "--duration", "2", "--report-dir", str(tmp_path),
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    output = " ".join((captured.out + captured.err).split())
    assert code == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] is False
    assert summary["requests"] > 0 and summary["rps"] == 0
    assert summary["failures"] == summary["requests"]  # 100% failures
    assert summary["failed"] == [
        "successful requests 0 < 1 (-100%)",
        "error ratio 100.00% > 0.00% (+inf%)",
    ]
    assert "error ratio 100.00% > 0.00%" in captured.err
    assert "No SLO profile for model 'no_such_model'" in output
    assert "No latency or throughput objectives were set" in output
    assert "Every objective held" not in output and "PASS" not in output
    (error,) = summary["errors"]
    assert "Request for unknown model: 'no_such_model' is not found" in error["error"]
    assert "Request for unknown model" in (tmp_path / "report.html").read_text()


def test_distributed_workers_with_a_step_shape(tiny_server: LocalTriton, tmp_path: Path) -> None:
    result = run_loadtest(
        server=tiny_server,
        model="add_one",
        protocol="http",
        users=4,
        shape="step",
        workers=2,
        report_dir=tmp_path,
        warmup_s=1.0,
        duration_s=3.0,
    )
    # No latency objective: a loaded CI machine stalls a worker's loop for seconds at times.
    assert result.passed, result.failed
    sample_files = sorted(p.name for p in tmp_path.glob("samples-*.csv"))
    assert len(sample_files) == 2, sample_files  # both workers sent requests
    with open(tmp_path / "locust_stats_history.csv", newline="") as handle:
        users = [int(r["User Count"]) for r in csv.DictReader(handle) if r["Name"] == "Aggregated"]
    # Stairs towards the peak of 4 (how far they get before the run ends depends on how fast
    # a loaded machine spawns users on the workers: that is not what this test is about).
    assert 0 < min(u for u in users if u) < max(users) <= 4, users
    # The warm-up cut also holds across processes: Locust's count matches the samples kept.
    with open(tmp_path / "samples.csv", newline="") as handle:
        measured = sum(1 for r in csv.DictReader(handle) if r["measured"] == "1")
    assert measured == result.figures.requests

    # Open loop across two workers: each sends half the rate, the window counts both.
    opened = run_loadtest(
        server=tiny_server,
        model="add_one",
        protocol="grpc",
        rate_rps=40.0,
        arrivals="constant",
        workers=2,
        drain_s=2.0,
        report_dir=tmp_path / "open",
        warmup_s=1.0,
        duration_s=3.0,
    )
    assert opened.passed, opened.failed
    assert len(list((tmp_path / "open").glob("samples-*.csv"))) == 2
    # Constant arrivals: 40/s for the measured window, whatever the server does.
    window = opened.summary["window"]["measured_s"]
    assert opened.figures.requests == pytest.approx(40 * window, rel=0.1)
    assert opened.summary["load_generator"]["processes"] == 3  # master and two workers


def test_open_loop_latency_counts_from_the_intended_send_time(
    tiny_server: LocalTriton, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request in flight at a time, 2000 due per second: the client falls behind.

    A client that timed from the actual send (or sent less, as a closed loop does) would report
    the service time; measured from when each request was due, the wait is there, and requests
    still queued when the run ends are reported, not dropped.
    """
    monkeypatch.setenv("LOADTEST_MAX_IN_FLIGHT", "1")
    result = run_loadtest(
        server=tiny_server,
        model="add_one",
        protocol="grpc",
        p99_ms=3000.0,
        rate_rps=2000.0,
        arrivals="constant",
        drain_s=2.0,
        report_dir=tmp_path,
        warmup_s=0.5,
        duration_s=2.0,
    )
    summary = result.summary
    window = summary["window"]["measured_s"]
    # Every request due in the window is counted, sent or not (the schedule does not wait).
    assert result.figures.requests == pytest.approx(2000 * window, rel=0.1)
    with open(tmp_path / "samples.csv", newline="") as handle:
        answered = [r for r in csv.DictReader(handle) if r["ok"] == "1"]
    assert answered  # the first requests, in the warm-up, were answered
    latency = np.array([float(r["latency_ms"]) for r in answered])
    service = np.array([float(r["service_ms"]) for r in answered])
    assert (latency >= service - 1e-3).all()
    # One at a time through a model that sleeps 2 ms serves at most 500/s: later requests wait
    # for earlier ones, and the backlog shows as latency and as requests never answered.
    assert np.median(latency) > 3 * np.median(service)
    assert summary["unanswered"] > 0.3 * result.figures.requests
    assert not result.passed and "p99 unanswered > 3000 ms (+inf%)" in result.failed


def test_rate_capacity_search_repeats_steps_and_plan_reads_the_rate(
    tiny_server: LocalTriton, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One request in flight at a time through a model that sleeps 2 ms carries 500/s at the
    # very most: 3000/s breaks whatever the machine, 10/s holds.
    monkeypatch.setenv("LOADTEST_MAX_IN_FLIGHT", "1")
    profile = SloProfile(
        model="add_one",
        protocol="grpc",
        # Two of three: one run that a stall on a loaded machine pushes past the p99 limit
        # does not decide a step (what repeating the steps is for).
        capacity=CapacitySearch(rates=(10.0, 3000.0), repeats=3, required=2),
        **STEP,
    ).with_overrides(p99_ms=3000.0, min_rps=1.0)
    held = find_capacity(profile, Target.from_server(tiny_server), tmp_path / "search")
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert held.exit_code == 0 and summary["mode"] == "open-loop"
    first, second = summary["steps"]
    assert first["rate_rps"] == 10.0 and first["held"] and first["held_runs"] == 2
    assert len(first["runs"]) in (2, 3)  # stops once two held
    assert first["spread"]["rps"]["min"] <= first["spread"]["rps"]["max"]
    assert second["rate_rps"] == 3000.0 and not second["held"]
    assert len(second["runs"]) == 2  # two broken runs of three: two of three cannot hold
    capacity = summary["capacity"]
    assert capacity["rps"] == 10.0 and capacity["held_runs"] == 2
    assert summary["broke_at"]["load"] == 3000.0
    assert "data:image/png;base64," in (tmp_path / "search" / "report.html").read_text()
    planned = load_capacity(tmp_path / "search")
    assert (planned.rps, planned.mode) == (10.0, "open-loop")
    assert planned.evidence == f"held in 2 of {len(first['runs'])} runs"


def test_closed_loop_capacity_search_is_labelled(tiny_server: LocalTriton, tmp_path: Path) -> None:
    profile = SloProfile(
        model="add_one",
        protocol="grpc",
        capacity=CapacitySearch(users=(1, 3), repeats=1, required=1),
        **STEP,
    )
    held = find_capacity(
        profile.with_overrides(p95_ms=2000.0, min_rps=1.0),
        Target.from_server(tiny_server),
        tmp_path / "held",
        mode="closed",
    )
    summary = json.loads((tmp_path / "held" / "summary.json").read_text())
    assert held.exit_code == 0 and summary["broke_at"] is None
    capacity = summary["capacity"]
    assert capacity["mode"] == "closed-loop" and isinstance(capacity["users"], int)
    assert "overstates" in summary["note"]
    assert [s["users"] for s in summary["steps"]] == [1, 3]
    assert load_capacity(tmp_path / "held").closed_loop

    broke = find_capacity(
        profile.with_overrides(p95_ms=0.01),
        Target.from_server(tiny_server),
        tmp_path / "broke",
        mode="closed",
    )
    assert broke.exit_code == 1 and broke.capacity is None
    assert len(broke.steps) == 1  # stops at the first step that breaks
    assert broke.summary["broke_at"]["load"] == 1


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_the_pipelines_meet_their_slo_profiles(
    triton: LocalTriton, path: Path, tmp_path: Path
) -> None:
    """The shipped profile on the real pipeline, keeping its error and throughput objectives.

    Its latency objectives are the profile's claim for a 2-core x86 VM at a moderate load; a
    loaded CI machine can be ten times slower, so here they are replaced by generous ones
    (the verdict logic is tested elsewhere), the drain is shortened, and the arrival rate is a
    quarter of the profile's (its throughput objective scaled with it): an open-loop rate a
    slow machine cannot carry would only measure the machine.
    """
    profile = load_profile(path)
    assert profile.open_loop and profile.objectives.max_error_ratio == 0.0
    rate, floor = profile.rate_rps / 4, profile.objectives.min_rps / 4  # type: ignore[operator]
    result = run_loadtest(
        profile,
        server=triton,
        report_dir=tmp_path,
        warmup_s=2.0,
        duration_s=5.0,
        rate_rps=rate,
        min_rps=floor,
        p50_ms=5000.0,
        p95_ms=5000.0,
        p99_ms=5000.0,
        drain_s=5.0,
    )
    assert result.passed, result.failed
    checked = {o.key for o in result.objectives}
    assert {"max_error_ratio", "min_rps", "p99_ms"} <= checked
    assert result.figures.failures == 0 and result.figures.unanswered == 0
    assert result.figures.requests >= 0.5 * rate * 5.0
    models = result.summary["server"]["models"]
    assert next(iter(models)) == profile.model  # the ensemble first, then its steps
    assert len(models) >= 3
    assert all(m["avg_batch_size"] >= 1 for m in models.values())
