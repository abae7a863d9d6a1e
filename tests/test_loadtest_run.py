"""``tritonctl loadtest`` against the real tritonserver: short Locust runs, real reports.

The machinery runs against a tiny Python model (fast to start, predictable); the shipped SLO
profiles run against the real pipelines on the session server.
"""

from __future__ import annotations

import base64
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tiny_repository import make_tiny_repository
from tritonctl.cli import main
from tritonctl.loadtest import SloProfile, Target, find_capacity, load_profile, run_loadtest
from tritonctl.server import LocalTriton

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "loadtests" / "slo").glob("*.yaml"))
SHORT = {"warmup_s": 1.0, "duration_s": 2.0}
STEP = {"warmup_s": 0.5, "duration_s": 1.5}  # capacity-search steps

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

    # The JSON figures are Locust's own statistics for the window after the warm-up.
    row = aggregated_row(tmp_path / "locust_stats_final.csv")
    assert summary["requests"] == int(row["Request Count"]) > 100
    assert summary["failures"] == int(row["Failure Count"]) == 0
    for key in ("50%", "95%", "99%"):
        assert summary["latency_ms"][f"p{key[:-1]}"] == float(row[key])
    assert summary["latency_ms"]["avg"] == pytest.approx(
        float(row["Average Response Time"]), abs=1e-3
    )
    # Locust divides by first-to-last request, we by the whole window: nearly the same.
    assert summary["rps"] == pytest.approx(float(row["Requests/s"]), rel=0.1)
    with open(tmp_path / "samples.csv", newline="") as handle:
        measured = sum(1 for r in csv.DictReader(handle) if r["measured"] == "1")
    assert abs(measured - summary["requests"]) <= 0.02 * summary["requests"] + 10

    # Triton's own view of the same window.
    server = summary["server"]["models"]["add_one"]
    assert server["success"] == pytest.approx(summary["requests"], rel=0.05)
    assert server["avg_compute_infer_ms"] >= 2.0  # the model sleeps 2 ms per execution
    assert server["avg_batch_size"] >= 1.0
    assert (
        server["avg_request_ms"] >= server["avg_queue_ms"] + server["avg_compute_infer_ms"] - 0.01
    )


def test_a_model_that_does_not_exist_fails_with_tritons_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --local starts the real server itself (loading no model here) and stops it afterwards.
    code = main(
        [
            "loadtest", "--local", "--model", "no_such_model", "--protocol", "http",
            "--users", "2", "--warmup", "1", "--duration", "2", "--max-error-ratio", "0",
            "--report-dir", str(tmp_path),
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] > 0
    assert summary["failures"] == summary["requests"]  # 100% failures
    assert summary["failed"] == ["error ratio 100.00% > 0.00% (+inf%)"]
    assert "error ratio 100.00% > 0.00%" in captured.err
    (error,) = summary["errors"]
    assert "Request for unknown model: 'no_such_model' is not found" in error["error"]
    assert error["occurrences"] == summary["failures"]
    assert "Request for unknown model" in (tmp_path / "report.html").read_text()


def test_distributed_workers_with_a_step_shape(tiny_server: LocalTriton, tmp_path: Path) -> None:
    result = run_loadtest(
        server=tiny_server,
        model="add_one",
        protocol="http",
        users=4,
        shape="step",
        workers=2,
        p99_ms=2000,
        report_dir=tmp_path,
        warmup_s=1.0,
        duration_s=3.0,
    )
    assert result.passed, result.failed
    sample_files = sorted(p.name for p in tmp_path.glob("samples-*.csv"))
    assert len(sample_files) == 2, sample_files  # both workers sent requests
    with open(tmp_path / "locust_stats_history.csv", newline="") as handle:
        users = [int(r["User Count"]) for r in csv.DictReader(handle) if r["Name"] == "Aggregated"]
    assert 0 < min(u for u in users if u) < max(users) == 4, users  # stairs up to the peak
    # The warm-up cut also holds across processes: Locust's count matches the samples kept.
    with open(tmp_path / "samples.csv", newline="") as handle:
        measured = sum(1 for r in csv.DictReader(handle) if r["measured"] == "1")
    assert abs(measured - result.figures.requests) <= 0.03 * result.figures.requests + 10, (
        measured,
        result.figures.requests,
        result.summary["window"],
    )


def test_capacity_search_reports_the_highest_load_that_held(
    tiny_server: LocalTriton, tmp_path: Path
) -> None:
    profile = SloProfile(model="add_one", protocol="grpc", capacity_users=(1, 3), **STEP)
    held = find_capacity(
        profile.with_overrides(p95_ms=2000.0, min_rps=1.0),
        Target.from_server(tiny_server),
        tmp_path / "held",
    )
    summary = json.loads((tmp_path / "held" / "summary.json").read_text())
    assert held.exit_code == 0 and summary["broke_at"] is None
    capacity = summary["capacity"]
    assert isinstance(capacity["rps"], float) and isinstance(capacity["users"], int)  # plan reads
    peak = max(held.steps, key=lambda s: s.figures.rps)  # the best throughput that held
    assert capacity == {"rps": round(peak.figures.rps, 3), "users": peak.profile.users}
    assert summary["highest_users_held"] == 3
    assert [s["users"] for s in summary["steps"]] == [1, 3]
    assert "data:image/png;base64," in (tmp_path / "held" / "report.html").read_text()

    broke = find_capacity(
        profile.with_overrides(p95_ms=0.01), Target.from_server(tiny_server), tmp_path / "broke"
    )
    assert broke.exit_code == 1 and broke.capacity is None
    assert len(broke.steps) == 1  # stops at the first step that breaks
    assert broke.summary["broke_at"]["users"] == 1


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_the_pipelines_meet_their_slo_profiles(
    triton: LocalTriton, path: Path, tmp_path: Path
) -> None:
    profile = load_profile(path)
    result = run_loadtest(profile, server=triton, report_dir=tmp_path, warmup_s=2.0, duration_s=5.0)
    assert result.passed, result.failed
    assert result.figures.failures == 0 and result.figures.requests > 100
    models = result.summary["server"]["models"]
    assert next(iter(models)) == profile.model  # the ensemble first, then its steps
    assert len(models) >= 3
    assert all(m["avg_batch_size"] >= 1 for m in models.values())
