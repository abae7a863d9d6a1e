"""SLO profiles, objective verdicts, payloads and option parsing (no server needed)."""

from __future__ import annotations

import io
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tritonctl.cli import main
from tritonctl.commands.loadtest import default_profile, duration, rate_list, user_list
from tritonctl.loadtest.capacity import Step, _rate_schedule
from tritonctl.loadtest.locust_runner import LoadTestError, Target, locust_users, run_seconds
from tritonctl.loadtest.results import locust_percentile
from tritonctl.loadtest.run import check_reachable
from tritonctl.loadtest.slo import (
    Figures,
    Objectives,
    ProfileError,
    SloProfile,
    evaluate,
    load_profile,
    parse_profile,
)
from tritonctl.server import free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "loadtests"))
import arrivals  # noqa: E402
import payloads  # noqa: E402

PROFILES = sorted((ROOT / "loadtests" / "slo").glob("*.yaml"))


def figures(**changes: float) -> Figures:
    base = {
        "requests": 1000,
        "failures": 0,
        "rps": 100.0,
        "p50_ms": 10.0,
        "p95_ms": 20.0,
        "p99_ms": 30.0,
    }
    base.update(changes)
    return Figures(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_shipped_profiles_load_and_set_every_objective(path: Path) -> None:
    profile = load_profile(path)
    assert profile.model and profile.duration_s > 0 and profile.warmup_s > 0
    objectives = profile.objectives
    assert None not in (objectives.p50_ms, objectives.p95_ms, objectives.p99_ms)
    assert objectives.p50_ms <= objectives.p95_ms <= objectives.p99_ms  # type: ignore[operator]
    assert objectives.max_error_ratio is not None and objectives.min_rps is not None
    # The expected load is an arrival rate (open loop) the throughput objective can reach.
    assert profile.open_loop and profile.rate_rps >= objectives.min_rps  # type: ignore[operator]
    # Each figure comes with its measurement and headroom written beside it.
    assert "measured" in path.read_text()


def test_profiles_cover_both_pipelines() -> None:
    assert {load_profile(p).model for p in PROFILES} >= {"digit_classifier", "text_embedding"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": "m", "objectivs": {}}, "unknown key"),
        ({"model": "m", "objectives": {"p95": 10}}, "unknown key.*p95"),
        ({"model": "m", "objectives": {"p95_ms": "fast"}}, "p95_ms must be a number"),
        ({"model": "m", "protocol": "udp"}, "protocol 'udp'"),
        ({"model": "m", "load": {"users": 0}}, "users must be at least 1"),
        ({"model": "m", "objectives": {"max_error_ratio": 5}}, "ratio in 0..1"),
        ({"model": "m", "load": {"shape": "sine"}}, "shape 'sine'"),
        ({"model": "m", "load": {"mode": "open"}}, "open loop needs a positive rate_rps"),
        ({"model": "m", "load": {"rate_rps": 10, "shape": "ramp"}}, "constant rate"),
        ({"model": "m", "load": {"rate_rps": 10, "arrivals": "bursty"}}, "arrivals 'bursty'"),
        ({"model": "m", "capacity": {"repeats": 2, "required": 3}}, "between 1 and repeats"),
        ({"model": "m", "capacity": {"rates": [10, -1]}}, "rates must be positive"),
        ({"model": "m", "capacity": {"factor": 1}}, "factor must be above 1"),
        # A key with its value left out: for max_error_ratio it used to turn the error check
        # off (a run with 58% failed requests printed "Every objective held" and exited 0).
        ({"model": "m", "objectives": {"max_error_ratio": None}}, "max_error_ratio has no val"),
        ({"model": "m", "objectives": {"p99_ms": None}}, "p99_ms has no value"),
        ({"model": "m", "objectives": {"p99_ms": math.nan}}, "p99_ms must be a finite number"),
        ({"model": "m", "load": {"rate_rps": math.inf}}, "rate_rps must be a finite number"),
    ],
)
def test_bad_profiles_are_rejected_with_the_reason(data: dict, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(data, "bad.yaml")


def test_overrides_replace_load_and_objectives() -> None:
    profile = SloProfile(objectives=Objectives(p95_ms=50)).with_overrides(
        users=8, p95_ms=0.01, model=None
    )
    assert profile.users == 8 and profile.objectives.p95_ms == 0.01
    assert profile.model == "text_embedding"  # None leaves a field alone
    opened = profile.with_overrides(rate_rps=25.0, capacity_repeats=5)
    assert opened.open_loop and opened.load_label == "open loop, 25 req/s (poisson arrivals)"
    assert opened.capacity.repeats == 5
    closed = opened.with_overrides(mode="closed")
    assert closed.load_label == "closed loop, 8 users"


def test_open_loop_profiles_parse() -> None:
    profile = parse_profile(
        {
            "model": "m",
            "load": {"rate_rps": 40, "arrivals": "constant", "drain_s": 2},
            "capacity": {"rates": [10, 20], "repeats": 3, "required": 2},
        }
    )
    assert (profile.mode, profile.rate_rps, profile.arrivals, profile.drain) == (
        "open",
        40.0,
        "constant",
        2.0,
    )
    assert profile.capacity.rates == (10.0, 20.0) and profile.capacity.required == 2


def test_the_drain_outlasts_the_latency_objectives() -> None:
    assert SloProfile(objectives=Objectives(p99_ms=2000)).drain == 3.0
    assert SloProfile(objectives=Objectives(p50_ms=10)).drain == 1.0  # at least 1 s
    assert SloProfile(objectives=Objectives(p99_ms=60_000)).drain == 30.0  # at most 30 s
    assert SloProfile().drain == 2.0


def test_a_miss_is_named_with_how_much() -> None:
    results = evaluate(Objectives(p50_ms=100, p95_ms=50, min_rps=50), figures(p95_ms=120.3, rps=20))
    failed = [r.message for r in results if not r.passed]
    assert failed == ["p95 120.3 ms > 50 ms (+141%)", "throughput 20.0 req/s < 50.0 req/s (-60%)"]
    assert [r.passed for r in results] == [True, False, True, False]  # p50, p95, errors, rps


def test_impossible_p95_fails() -> None:
    (result, errors) = evaluate(Objectives(p95_ms=0.01), figures(p95_ms=3))
    assert errors.passed
    assert not result.passed
    assert result.message.startswith("p95 3 ms > 0.01 ms")


def test_error_ratio_and_empty_runs() -> None:
    (errors,) = evaluate(Objectives(max_error_ratio=0.01), figures(failures=50))
    assert not errors.passed and "error ratio 5.00% > 1.00%" in errors.message
    empty = evaluate(Objectives(p95_ms=50), figures(requests=0, p95_ms=0))
    # Nothing measured: no success, and (with nothing sent) a 100% error ratio; no latency.
    assert [r.key for r in empty if not r.passed] == ["succeeded", "max_error_ratio"]


def test_skipped_objectives_are_not_checked() -> None:
    checked = evaluate(Objectives(min_rps=1e9), figures(), skip=("min_rps",))
    assert [r.key for r in checked] == ["max_error_ratio"]


def test_percentiles_match_locusts_own_function() -> None:
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(20):
        keys = sorted({int(k) for k in rng.integers(1, 2000, rng.integers(1, 40))})
        histogram = {k: int(rng.integers(1, 500)) for k in keys}
        cases.append((histogram, sum(histogram.values())))
    quantiles = [0.5, 0.9, 0.95, 0.99, 0.999]
    ours = [[locust_percentile(h, n, q) for q in quantiles] for h, n in cases]
    # Locust patches the interpreter with gevent on import: ask it in a child process.
    script = (
        "import json, sys\n"
        "from locust.stats import calculate_response_time_percentile as p\n"
        "cases = json.load(sys.stdin)\n"
        f"print(json.dumps([[p({{int(k): v for k, v in h.items()}}, n, q) for q in {quantiles}]"
        " for h, n in cases]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == ours


def test_texts_follow_a_long_tailed_length_mix() -> None:
    sentences = payloads.corpus_sentences()
    texts = payloads.realistic_texts(sentences, 600, seed=1)
    assert texts == payloads.realistic_texts(sentences, 600, seed=1)  # fixed
    words = [len(t.split()) for t in texts]
    assert 6 <= statistics.median(words) <= 25
    assert max(words) >= 3 * statistics.median(words)  # a tail of paragraphs
    assert min(words) <= 4  # and short queries
    assert len(set(texts)) > 150


def test_realistic_texts_takes_any_sentences() -> None:
    texts = payloads.realistic_texts(["one two three", "four five"], 50, seed=0)
    assert all(set(t.split()) <= {"one", "two", "three", "four", "five"} for t in texts)
    with pytest.raises(ValueError, match="non-empty"):
        payloads.realistic_texts(["", "  "], 5)


def test_digit_images_are_pngs_of_the_sklearn_digits() -> None:
    images, labels = payloads.digit_images(32)
    assert len(images) == len(labels) == 1797
    picture = Image.open(io.BytesIO(images[0]))
    assert picture.format == "PNG" and picture.size == (32, 32) and picture.mode == "L"
    from sklearn.datasets import load_digits

    pixels = np.asarray(picture)[::4, ::4].astype(float) * 16 / 255
    np.testing.assert_allclose(pixels, load_digits().images[0], atol=0.04)


def test_unique_payloads_differ_but_look_the_same() -> None:
    import random

    rng = random.Random(0)
    batch = payloads.sample_bytes("IMAGE", (50, 1), rng, unique=True)
    assert len({x for x in batch.flat}) == 50
    first = np.asarray(Image.open(io.BytesIO(batch[0, 0]))).astype(int)
    originals = [np.asarray(a).astype(int) for a in payloads.image_arrays()]
    assert min(int(np.abs(first - o).sum()) for o in originals) <= 3
    texts = payloads.sample_bytes("TEXT", (20, 1), rng, unique=True)
    assert len({x for x in texts.flat}) == 20
    repeated = payloads.sample_bytes("TEXT", (200, 1), rng, unique=False)
    assert set(repeated.flat) <= set(payloads.text_pool())


def test_targets_follow_tritons_port_layout() -> None:
    http = Target.from_url("http://triton.example:8000")
    assert (http.http_address, http.grpc_address) == ("triton.example:8000", "triton.example:8001")
    assert http.metrics_url == "http://triton.example:8002/metrics"
    grpc = Target.from_url("grpc://10.0.0.5:9001", metrics_url="http://m:9/metrics")
    assert (grpc.http_address, grpc.grpc_address, grpc.metrics_url) == (
        "10.0.0.5:9000",
        "10.0.0.5:9001",
        "http://m:9/metrics",
    )
    assert grpc.host_for("grpc") == "grpc://10.0.0.5:9001"


def test_run_time_covers_spawning_warmup_window_and_drain() -> None:
    closed = SloProfile(users=8, spawn_rate=4, warmup_s=3, duration_s=10, drain_s=1.5)
    assert run_seconds(closed) == 17  # 2 + 3 + 10 + 1.5
    assert run_seconds(closed.with_overrides(shape="step")) == 15
    opened = closed.with_overrides(rate_rps=100.0)
    assert locust_users(opened) == (1, 1.0)  # one sender, started at once
    assert locust_users(opened, workers=3) == (3, 3.0)  # one per worker
    assert run_seconds(opened) == 16


def test_arrival_schedules_deliver_the_rate() -> None:
    import itertools
    import random

    times = list(
        itertools.islice(arrivals.send_times(50.0, "poisson", 0.0, random.Random(1)), 5000)
    )
    assert times == sorted(times)
    assert 5000 / times[-1] == pytest.approx(50.0, rel=0.05)
    gaps = np.diff(times)
    assert np.std(gaps) == pytest.approx(np.mean(gaps), rel=0.1)  # exponential: sd = mean
    steady = list(
        itertools.islice(arrivals.send_times(50.0, "constant", 0.0, random.Random(1)), 100)
    )
    assert np.allclose(np.diff(steady), 0.02) and 0 <= steady[0] < 0.02
    with pytest.raises(ValueError, match="positive"):
        next(arrivals.send_times(0.0, "poisson", 0.0, random.Random(1)))


class _Run:
    def __init__(self, passed: bool) -> None:
        self.passed = passed


def _search(profile: SloProfile, capacity: float) -> list[tuple[float, bool]]:
    """The rates the open-loop search tries against a server that holds up to ``capacity``."""
    next_rate = _rate_schedule(profile)
    steps: list[Step] = []
    while (rate := next_rate(steps)) is not None:
        steps.append(Step(rate, [_Run(rate <= capacity)]))  # type: ignore[list-item]
    return [(s.load, s.held) for s in steps]


def test_the_rate_search_brackets_then_bisects() -> None:
    profile = SloProfile().with_overrides(capacity_start_rps=10, capacity_refine=2)
    assert _search(profile, 57) == [
        (10, True), (20, True), (40, True), (80, False), (60, False), (50, True),
    ]  # fmt: skip
    # A first rate that breaks: halve until one holds, then bisect.
    assert _search(profile, 3) == [
        (10, False), (5, False), (2.5, True), (3.75, False), (3.12, False),
    ]  # fmt: skip
    listed = profile.with_overrides(capacity_rates=(5.0, 20.0, 40.0))
    assert _search(listed, 25) == [(5, True), (20, True), (40, False)]
    assert _search(listed, 0.01) == [(5, False)]  # stops at the first rate that breaks


def test_a_step_holds_when_k_of_n_runs_hold() -> None:
    step = Step(10.0, required=2, repeats=3)
    step.runs = [_Run(True), _Run(False)]  # type: ignore[list-item]
    assert not step.held and not step.decided  # one more run decides
    step.runs.append(_Run(True))  # type: ignore[arg-type]
    assert step.held and step.decided and step.held_runs == 2
    broken = Step(10.0, required=2, repeats=3)
    broken.runs = [_Run(False), _Run(False)]  # type: ignore[list-item]
    assert broken.decided and not broken.held  # 2 of 3 can no longer hold


def test_no_server_is_could_not_run_naming_the_cause(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    for protocol in ("http", "grpc"):
        with pytest.raises(LoadTestError, match="no Triton server answers"):
            check_reachable(Target.from_url(f"http://127.0.0.1:{port}"), protocol, timeout=2)
    code = main(
        [
            "loadtest",
            "--target",
            f"http://127.0.0.1:{port}",
            "--protocol",
            "http",
            "--duration",
            "1",
        ]
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert (
        f"loadtest could not run: no Triton server answers over HTTP at http://127.0.0.1:{port}"
        in err
    )
    assert "Connection refused" in err and "inf%" not in err


def test_a_misspelt_model_has_no_profile_and_a_hint() -> None:
    path, hint = default_profile("text_embeding")
    assert path is None
    assert "No SLO profile for model 'text_embeding'" in hint
    assert "did you mean 'text_embedding'?" in hint
    assert (
        default_profile("digit_classifier")[0]
        == ROOT / "loadtests" / "slo" / "digit_classifier.yaml"
    )


def test_command_line_values() -> None:
    assert duration("30") == duration("30s") == 30
    assert duration("1m30s") == 90
    assert user_list("1,2, 4") == (1, 2, 4)
    assert rate_list("10, 20.5") == (10.0, 20.5)
    for bad in ("x", ""):
        with pytest.raises(Exception, match="duration"):
            duration(bad)
    with pytest.raises(Exception, match="positive"):
        user_list("0,2")


@pytest.mark.parametrize(
    "override",
    [
        {"rate_rps": math.nan},
        {"rate_rps": math.inf},
        {"spawn_rate": math.nan},
        {"p99_ms": math.nan},
        {"max_error_ratio": math.nan},
        {"min_rps": math.inf},
    ],
)
def test_command_line_values_must_be_finite(override: dict[str, float]) -> None:
    """`loadtest --rate nan` (or inf) passed validation (nan <= 0 is false), ran the whole test
    and died writing summary.json (ValueError: Out of range float values), exit 1."""
    (key,) = override
    with pytest.raises(ProfileError, match=f"{key} must be a finite number"):
        SloProfile().with_overrides(**override)


def test_a_nan_rate_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "--target", "grpc://127.0.0.1:9", "--rate", "nan"]) == 2
    assert "rate_rps must be a finite number" in capsys.readouterr().err
