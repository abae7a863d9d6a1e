"""One very short real tuning run: two candidates on the real server, written into a copy.

Every run is the load test's own (Locust, the profile's payloads, warm-up and window), and its
report is kept under ``runs/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonctl.bench.staging import stage_repository
from tritonctl.model_config import load_config
from tritonctl.tune import TuneOptions, tune
from tritonctl.tune.search import Knob

pytestmark = pytest.mark.server


def test_tune_measures_candidates_with_the_profiles_workload(
    model_repository: Path, tmp_path: Path
) -> None:
    repository = stage_repository(model_repository, tmp_path / "repo", ["text_embedding"])
    before = load_config(repository / "text_encoder")
    slo = tmp_path / "slo.yaml"
    slo.write_text(
        "model: text_embedding\nprotocol: grpc\n"
        "load: {rate_rps: 20, users: 2, warmup_s: 0.5, duration_s: 1.5, drain_s: 1}\n"
        "objectives: {p95_ms: 5000, max_error_ratio: 0.0, min_rps: 0.5}\n"
    )
    current = before.dynamic_batching.max_queue_delay_microseconds
    other = 0 if current else 1000
    options = TuneOptions(
        model="text_embedding",
        slo=slo,
        repository=repository,
        out_dir=tmp_path / "reports",
        max_trials=2,
        confirm_rounds=2,
        knobs=[Knob("text_encoder.max_queue_delay_us", (current, other))],
    )
    outcome = tune(options)
    trials = outcome.search.trials
    assert len(trials) == 2
    assert all(t.figures.requests > 0 and t.figures.failures == 0 for t in trials)
    assert all(t.meets_slo for t in trials)
    assert trials[1].extra["reloaded"] == ["text_encoder"]
    assert (outcome.report_dir / "report.html").read_text().count("data:image/png;base64,") == 1
    summary = json.loads((outcome.report_dir / "tune.json").read_text())
    assert summary["workload"]["load"] == "closed loop, 2 users"

    # Each run is a load-test report with the profile's window, closed loop at its users.
    runs = sorted((outcome.report_dir / "runs").glob("*/summary.json"))
    changed = outcome.search.best.candidate != outcome.search.baseline.candidate
    assert len(runs) == 1 + 2 + (4 if changed else 0)  # baseline, a pair, ABBA confirmation
    for path in runs:
        run = json.loads(path.read_text())
        assert run["profile"]["warmup_s"] == 0.5 and run["profile"]["duration_s"] == 1.5
        assert run["load"] == "closed loop, 2 users"
        assert run["locustfile"].endswith("loadtests/locustfile.py")
    assert len(summary["confirmation"]) == (1 if changed else 0)

    after = load_config(repository / "text_encoder")
    delay = after.dynamic_batching.max_queue_delay_microseconds
    assert delay == outcome.chosen["text_encoder.max_queue_delay_us"]
    if delay != current:
        assert (repository / "text_encoder" / "config.pbtxt.bak").exists()
        assert "max_queue_delay_microseconds" in outcome.diffs["text_encoder"]
    else:
        assert not outcome.diffs
