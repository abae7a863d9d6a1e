"""``tritonctl deploy`` and ``status`` up to the cluster boundary (no cluster runs here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests import helm_support as hs
from tritonctl.cli import main
from tritonctl.commands.status import render
from tritonctl.k8s import deploy as deploy_mod
from tritonctl.k8s import status as status_mod


def test_dry_run_renders_every_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    override = tmp_path / "values.yaml"
    override.write_text(
        yaml.safe_dump({"gpu": {"enabled": True}, "autoscaling": {"enabled": True}})
    )
    out = tmp_path / "manifests.yaml"
    code = main([
        "deploy", "--dry-run", "--release", "prod", "-n", "inference", "-f", str(override),
        "--set", "autoscaling.maxReplicas=9", "-o", str(out),
    ])  # fmt: skip
    assert code == 0
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "HorizontalPodAutoscaler",
        "Service",
        "NetworkPolicy",
    }
    assert all(d["metadata"]["namespace"] == "inference" for d in docs)
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 9 and hpa["metadata"]["name"] == "prod-tritonctl"
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
            "nvidia.com/gpu"
        ]
        == 1
    )
    assert not [hs.validate(d) for d in docs if hs.validate(d)]
    assert "helm test prod -n inference" in capsys.readouterr().err


def test_dry_run_reports_schema_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "--dry-run", "--set", "replicaCount=-3"]) == 1
    assert "/replicaCount" in capsys.readouterr().err


def test_helm_command_line() -> None:
    release = deploy_mod.Release("prod", "inference", Path("/charts/tritonctl"))
    command = deploy_mod.helm_command(
        release, ["a.yaml", "b.yaml"], ["image.tag=x"], timeout="900s"
    )
    assert command == [
        "helm", "upgrade", "--install", "prod", "/charts/tritonctl", "--namespace", "inference",
        "--create-namespace", "--values", "a.yaml", "--values", "b.yaml", "--set", "image.tag=x",
        "--wait", "--timeout", "900s",
    ]  # fmt: skip


def test_deploy_without_a_cluster_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if deploy_mod.helm_binary():
        pytest.skip("a helm binary is installed: this checks the in-process Helm SDK path")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["deploy", "--release", "prod", "-n", "inference"]) == 1
    err = capsys.readouterr().err
    assert "helm upgrade --install prod" in err and "cluster unreachable" in err


def test_status_without_kubeconfig_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["status", "--release", "prod"]) == 1
    assert "no Kubernetes cluster configured" in capsys.readouterr().err
    with pytest.raises(status_mod.ClusterUnavailable, match="absent-kubeconfig"):
        status_mod.api_client(str(tmp_path / "absent-kubeconfig"))


# Realistic objects, built with the kubernetes client's model classes -------------------------


def _deployment(
    desired: int, updated: int, available: int, total: int | None = None, **extra: object
) -> k8s.V1Deployment:
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="prod-tritonctl", generation=4),
        spec=k8s.V1DeploymentSpec(
            replicas=desired,
            selector=k8s.V1LabelSelector(match_labels={"app.kubernetes.io/instance": "prod"}),
            template=k8s.V1PodTemplateSpec(
                spec=k8s.V1PodSpec(
                    containers=[
                        k8s.V1Container(
                            name="tritonserver", image="nvcr.io/nvidia/tritonserver:24.10-py3"
                        )
                    ]
                )
            ),
        ),
        status=k8s.V1DeploymentStatus(
            observed_generation=4,
            replicas=total if total is not None else updated,
            updated_replicas=updated,
            ready_replicas=available,
            available_replicas=available,
            **extra,
        ),
    )


def test_rollout_states() -> None:
    assert status_mod.summarize_deployment(_deployment(3, 3, 3))["state"] == "complete"
    progressing = status_mod.summarize_deployment(_deployment(3, 2, 2, total=3))
    assert (progressing["state"], progressing["detail"]) == ("progressing", "2 of 3 pods updated")
    old = status_mod.summarize_deployment(_deployment(3, 3, 3, total=4))
    assert old["detail"] == "1 old pods terminating"
    loading = status_mod.summarize_deployment(_deployment(3, 3, 1))
    assert loading["detail"] == "1 of 3 updated pods available"
    stuck = _deployment(3, 1, 0, conditions=[
        k8s.V1DeploymentCondition(type="Progressing", status="False", reason="ProgressDeadlineExceeded",
                                  message='ReplicaSet "prod-tritonctl-7d9" has timed out progressing.'),
    ])  # fmt: skip
    assert status_mod.summarize_deployment(stuck)["state"] == "failed"


def _pod(name: str, ready: bool, waiting: str | None = None, restarts: int = 0) -> k8s.V1Pod:
    state = (
        k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason=waiting))
        if waiting
        else k8s.V1ContainerState(
            running=k8s.V1ContainerStateRunning(
                started_at=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
            )
        )
    )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1PodSpec(node_name="gpu-node-1", containers=[k8s.V1Container(name="tritonserver")]),
        status=k8s.V1PodStatus(
            phase="Running" if not waiting else "Pending",
            conditions=[k8s.V1PodCondition(type="Ready", status="True" if ready else "False")],
            container_statuses=[
                k8s.V1ContainerStatus(name="tritonserver", ready=ready, restart_count=restarts, image="i", image_id="",
                                      state=state)
            ],
        ),
    )  # fmt: skip


def test_pod_readiness_and_waiting_reasons() -> None:
    ok = status_mod.summarize_pod(_pod("prod-tritonctl-a", True))
    assert ok == {
        "name": "prod-tritonctl-a", "phase": "Running", "ready": True, "ready_containers": "1/1",
        "restarts": 0, "node": "gpu-node-1", "waiting": "",
    }  # fmt: skip
    crashing = status_mod.summarize_pod(
        _pod("prod-tritonctl-b", False, "CrashLoopBackOff", restarts=5)
    )
    assert crashing["ready"] is False and crashing["restarts"] == 5
    assert crashing["waiting"] == "tritonserver: CrashLoopBackOff"


def _hpa(current_queue: str | None) -> k8s.V2HorizontalPodAutoscaler:
    metric = k8s.V2MetricIdentifier(name="triton_queue_us_per_request")
    current = []
    if current_queue is not None:
        current = [
            k8s.V2MetricStatus(
                type="Pods",
                pods=k8s.V2PodsMetricStatus(
                    metric=metric, current=k8s.V2MetricValueStatus(average_value=current_queue)
                ),
            ),
            k8s.V2MetricStatus(
                type="Resource",
                resource=k8s.V2ResourceMetricStatus(
                    name="cpu", current=k8s.V2MetricValueStatus(average_utilization=64)
                ),
            ),
        ]
    conditions = [
        k8s.V2HorizontalPodAutoscalerCondition(
            type="ScalingActive",
            status="True" if current_queue else "False",
            reason="ValidMetricFound" if current_queue else "FailedGetPodsMetric",
            message=""
            if current_queue
            else "unable to get metric triton_queue_us_per_request: no metrics returned from custom metrics API",
        )
    ]
    return k8s.V2HorizontalPodAutoscaler(
        metadata=k8s.V1ObjectMeta(name="prod-tritonctl"),
        spec=k8s.V2HorizontalPodAutoscalerSpec(
            min_replicas=2, max_replicas=8,
            scale_target_ref=k8s.V2CrossVersionObjectReference(kind="Deployment", name="prod-tritonctl", api_version="apps/v1"),
            metrics=[
                k8s.V2MetricSpec(type="Pods", pods=k8s.V2PodsMetricSource(metric=metric, target=k8s.V2MetricTarget(type="AverageValue", average_value="20k"))),
                k8s.V2MetricSpec(type="Resource", resource=k8s.V2ResourceMetricSource(name="cpu", target=k8s.V2MetricTarget(type="Utilization", average_utilization=80))),
            ],
        ),
        status=k8s.V2HorizontalPodAutoscalerStatus(current_replicas=3, desired_replicas=5, current_metrics=current, conditions=conditions),
    )  # fmt: skip


def test_hpa_current_and_desired_replicas() -> None:
    hpa = status_mod.summarize_hpa(_hpa("31250m"))
    assert (hpa["current"], hpa["desired"], hpa["min"], hpa["max"]) == (3, 5, 2, 8)
    assert hpa["metrics"] == [
        {"metric": "pods/triton_queue_us_per_request", "current": "31250m", "target": "20k"},
        {"metric": "resource/cpu", "current": "64%", "target": "80%"},
    ]
    assert hpa["scaling_active"] is True
    missing = status_mod.summarize_hpa(_hpa(None))
    assert missing["metrics"][0]["current"] == "<unknown>"
    assert missing["scaling_active"] is False and "custom metrics API" in missing["scaling_message"]


def test_status_report_renders(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    console = Console(width=200, highlight=False)
    report = status_mod.ReleaseStatus(
        release="prod",
        namespace="inference",
        deployment=status_mod.summarize_deployment(_deployment(3, 3, 2)),
        pods=[status_mod.summarize_pod(_pod("prod-tritonctl-a", True)), status_mod.summarize_pod(_pod("prod-tritonctl-b", False, "ContainerCreating"))],
        hpa=status_mod.summarize_hpa(_hpa(None)),
    )  # fmt: skip
    assert report.healthy is False
    with console.capture() as captured:
        for item in render(report):
            console.print(item)
    text = captured.get()
    assert "progressing" in text and "prod-tritonctl-b" in text and "ContainerCreating" in text
    assert "3 current, 5 desired" in text and "scaling inactive" in text
    assert (
        status_mod.selector("prod")
        == "app.kubernetes.io/instance=prod,app.kubernetes.io/component=server"
    )
