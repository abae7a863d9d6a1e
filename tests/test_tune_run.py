"""One very short real tuning run: two candidates on the real server, written into a copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonctl.bench.staging import stage_repository
from tritonctl.model_config import load_config
from tritonctl.tune import TuneOptions, tune
from tritonctl.tune.search import Knob

pytestmark = pytest.mark.server


def test_tune_measures_candidates_and_writes_the_winner(
    model_repository: Path, tmp_path: Path
) -> None:
    repository = stage_repository(model_repository, tmp_path / "repo", ["text_embedding"])
    before = load_config(repository / "text_encoder")
    slo = tmp_path / "slo.yaml"
    slo.write_text(
        "model: text_embedding\nprotocol: grpc\n"
        "load: {users: 4, warmup_s: 1, duration_s: 2}\n"
        "objectives: {p95_ms: 5000, max_error_ratio: 0.0, min_rps: 0.5}\n"
    )
    current = before.dynamic_batching.max_queue_delay_microseconds
    other = 0 if current else 1000
    options = TuneOptions(
        model="text_embedding",
        slo=slo,
        repository=repository,
        out_dir=tmp_path / "reports",
        warmup_s=0.3,
        duration_s=1.0,
        max_trials=2,
        confirm_rounds=1,
        knobs=[Knob("text_encoder.max_queue_delay_us", (current, other))],
    )
    outcome = tune(options)
    trials = outcome.search.trials
    assert len(trials) == 2
    assert all(t.figures.requests > 0 and t.figures.failures == 0 for t in trials)
    assert all(t.meets_slo for t in trials)
    assert trials[1].extra["reloaded"] == ["text_encoder"]
    assert (outcome.report_dir / "report.html").read_text().count("data:image/png;base64,") == 1
    assert (outcome.report_dir / "tune.json").exists()
    after = load_config(repository / "text_encoder")
    delay = after.dynamic_batching.max_queue_delay_microseconds
    assert delay == outcome.chosen["text_encoder.max_queue_delay_us"]
    if delay != current:
        assert (repository / "text_encoder" / "config.pbtxt.bak").exists()
        assert "max_queue_delay_microseconds" in outcome.diffs["text_encoder"]
    else:
        assert not outcome.diffs
