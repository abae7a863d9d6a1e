"""``tritonctl plan``: replicas = ceil(R / (C × (1 − headroom))) and the HPA settings around it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests import helm_support as hs
from tritonctl.cli import main
from tritonctl.k8s.plan import (
    Capacity,
    PlanError,
    latest_capacity_report,
    load_capacity,
    make_plan,
    replicas_for,
)


@pytest.mark.parametrize(
    ("target", "capacity", "headroom", "replicas"),
    [
        (1000, 150, 0.3, 10),  # 1000 / 105 = 9.52
        (300, 100, 0.25, 4),  # exactly 4: no float noise pushes it to 5
        (100, 100, 0.0, 1),
        (101, 100, 0.0, 2),
        (1, 500, 0.3, 1),
        (2100, 100, 0.3, 30),  # 2100 / 70 = 30 exactly
    ],
)
def test_replicas_arithmetic(
    target: float, capacity: float, headroom: float, replicas: int
) -> None:
    assert replicas_for(target, capacity, headroom) == replicas


# No subnormals: a library loaded earlier in the same pytest process (ONNX Runtime, torch)
# may switch the CPU to flush-to-zero, and hypothesis then refuses to generate them.
@given(
    target=st.floats(0.1, 1e5, allow_subnormal=False),
    capacity=st.floats(0.5, 1e4, allow_subnormal=False),
    headroom=st.floats(0.0, 0.9, allow_subnormal=False),
)
def test_planned_replicas_carry_the_load_with_headroom(
    target: float, capacity: float, headroom: float
) -> None:
    n = replicas_for(target, capacity, headroom)
    per_replica = capacity * (1 - headroom)
    assert n * per_replica >= target * (1 - 1e-9)  # enough
    assert n == 1 or (n - 1) * per_replica < target  # and not one more than needed


def test_plan_sets_hpa_bounds_and_targets() -> None:
    plan = make_plan(
        1000, Capacity(150.0, users=32), headroom=0.3, min_rps=200, burst=1.5, slo_ms=80
    )
    assert plan.replicas == 10
    assert plan.min_replicas == 2  # 200 / 105 -> 2, floor 2
    assert plan.max_replicas == 15  # ceil(10 × 1.5)
    assert plan.queue_target_us == 16000  # 20 % of 80 ms
    assert plan.cpu_target_utilization == 70
    values = plan.values()
    assert values["replicaCount"] == 10
    assert values["autoscaling"] == {
        "enabled": True, "minReplicas": 2, "maxReplicas": 15, "queueTimeTargetUs": 16000, "cpuTargetUtilization": 70,
    }  # fmt: skip
    assert values["monitoring"]["prometheusRule"]["latencySloMs"] == 80
    text = "\n".join(plan.reasoning)
    assert "ceil(1000 / 105) = 10" in text and "32 concurrent users" in text


def test_small_loads_keep_the_availability_floor() -> None:
    plan = make_plan(10, Capacity(500.0), headroom=0.3)
    assert plan.replicas == 1
    assert (plan.min_replicas, plan.max_replicas) == (2, 2)
    assert plan.values()["replicaCount"] == 2
    assert make_plan(10, Capacity(500.0), min_replicas_floor=1).min_replicas == 1


def test_without_off_peak_load_the_minimum_is_the_peak_need() -> None:
    plan = make_plan(1000, Capacity(150.0))
    assert plan.min_replicas == plan.replicas == 10 and plan.max_replicas == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_rps": 0}, "target load must be positive"),
        ({"capacity": Capacity(0.0)}, "capacity must be positive"),
        ({"headroom": 1.0}, "headroom must be in"),
        ({"headroom": -0.1}, "headroom must be in"),
        ({"burst": 0.5}, "burst must be at least 1"),
        ({"queue_share": 1.5}, "queue share"),
        ({"slo_ms": -5}, "SLO must be positive"),
    ],
)
def test_bad_inputs_are_named(kwargs: dict, message: str) -> None:
    arguments = {"target_rps": 100.0, "capacity": Capacity(50.0)} | kwargs
    with pytest.raises(PlanError, match=message):
        make_plan(**arguments)


def _summary(tmp_path: Path, payload: object) -> Path:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(payload))
    return path


def test_capacity_file_from_find_capacity(tmp_path: Path) -> None:
    path = _summary(
        tmp_path,
        {
            "capacity": {"rps": 412.5, "users": 48},
            "passed": True,
            "profile": {"objectives": {"p95_ms": 50.0}},
        },
    )
    capacity = load_capacity(path)
    assert (capacity.rps, capacity.users, capacity.slo_p95_ms) == (412.5, 48, 50.0)
    plan = make_plan(2000, capacity)
    assert plan.slo_ms == 50.0 and plan.queue_target_us == 10000
    assert plan.replicas == math.ceil(2000 / (412.5 * 0.7))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"capacity": None, "passed": False}, "no load held the SLO"),
        ({"steps": []}, 'expected {"capacity"'),
        ({"capacity": {"rps": "fast"}}, "capacity.rps must be a number"),
        ([1, 2], 'expected {"capacity"'),
    ],
)
def test_bad_capacity_files_are_named(tmp_path: Path, payload: object, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        load_capacity(_summary(tmp_path, payload))
    with pytest.raises(PlanError, match="not found"):
        load_capacity(tmp_path / "missing.json")


def test_cli_writes_an_override_the_chart_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "values-override.yaml"
    summary = _summary(tmp_path, {"capacity": {"rps": 150.0, "users": 24}})
    code = main(
        [
            "plan",
            "--target-rps",
            "1000",
            "--capacity-file",
            str(summary),
            "--min-rps",
            "300",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ceil(1000 / 105) = 10" in printed and "HPA minimum = 3" in printed
    values = yaml.safe_load(out.read_text())
    assert out.read_text().startswith("# Written by `tritonctl plan`.")
    hpa = hs.find(hs.objects(values), "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "20000"
    assert not hs.validate(hpa)


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "plan",
            "--target-rps",
            "100",
            "--capacity-rps",
            "50",
            "--headroom",
            "1.2",
            "-o",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2
    assert "headroom must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _capacity_report(root: Path, name: str, capacity: dict) -> Path:
    folder = root / "loadtest" / name
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"capacity": capacity}))
    return folder / "summary.json"


def test_plan_reads_the_open_loop_rate_and_its_evidence(tmp_path: Path) -> None:
    path = _summary(
        tmp_path,
        {"capacity": {"rps": 40.0, "mode": "open-loop", "held_runs": 2, "runs": 3}},
    )
    capacity = load_capacity(path)
    assert (capacity.rps, capacity.mode, capacity.closed_loop) == (40.0, "open-loop", False)
    text = "\n".join(make_plan(200, capacity).reasoning)
    assert "serves 40 requests/s arriving within the SLO, held in 2 of 3 runs" in text
    assert "WARNING" not in text


def test_a_closed_loop_capacity_is_flagged_in_the_plan(tmp_path: Path) -> None:
    # Written by a closed-loop search, or by the search before open loop existed (no mode).
    for capacity in (
        {"rps": 284.0, "users": 16, "mode": "closed-loop"},
        {"rps": 284.0, "users": 16},
    ):
        loaded = load_capacity(_summary(tmp_path, {"capacity": capacity}))
        assert loaded.closed_loop
        plan = make_plan(1000, loaded)
        assert "WARNING: a closed-loop figure, not an arrival rate" in plan.reasoning[0]
        assert "WARNING: a closed-loop figure" in plan.to_yaml()  # in the override's header too


def test_the_latest_capacity_report_is_found(tmp_path: Path) -> None:
    older = _capacity_report(
        tmp_path, "20260101-090000-text_embedding-grpc-capacity", {"rps": 10.0}
    )
    newest = _capacity_report(
        tmp_path, "20260102-090000-digit_classifier-http-capacity", {"rps": 90.0}
    )
    (tmp_path / "loadtest" / "20260103-090000-text_embedding-grpc").mkdir()  # not a search
    reports = tmp_path / "loadtest"
    assert latest_capacity_report(reports) == newest
    assert latest_capacity_report(reports, "text_embedding") == older
    with pytest.raises(PlanError, match="no capacity report for model 'nope'"):
        latest_capacity_report(reports, "nope")
    with pytest.raises(PlanError, match="run `tritonctl loadtest --find-capacity` first"):
        latest_capacity_report(tmp_path / "empty")


def test_cli_plans_from_the_latest_loadtest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tritonctl import paths

    monkeypatch.setattr(paths, "reports_dir", lambda: tmp_path)
    _capacity_report(
        tmp_path,
        "20260102-090000-text_embedding-grpc-capacity",
        {"rps": 50.0, "mode": "open-loop", "held_runs": 3, "runs": 3},
    )
    out = tmp_path / "values.yaml"
    assert main(["plan", "--target-rps", "700", "--from-loadtest", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "20260102-090000-text_embedding-grpc-capacity" in printed
    assert "ceil(700 / 35) = 20" in printed
    folder = tmp_path / "loadtest" / "20260102-090000-text_embedding-grpc-capacity"
    assert (
        main(["plan", "--target-rps", "700", "--from-loadtest", str(folder), "-o", str(out)]) == 0
    )
