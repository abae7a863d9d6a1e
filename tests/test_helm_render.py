"""The chart renders through Helm's own engine for every combination, and every object is valid.

No cluster runs here: Kubernetes kinds are validated strictly against the API schemas of 1.30
and the newest release kubernetes-validate knows, and the CRDs against their own schemas.
"""

from __future__ import annotations

import copy

import pytest

from tests import helm_support as hs
from tritonctl.k8s import chart

EXPECTED_KINDS = {
    "defaults": {
        "Deployment",
        "Service",
        "Secret",
        "ServiceAccount",
        "NetworkPolicy",
        "PodDisruptionBudget",
    },
    "gpu": {"Deployment"},
    "hpa-prometheus-adapter": {
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    },
    "keda": {"ScaledObject", "ServiceMonitor"},
    "source-pvc": {"Deployment"},
    "source-s3sync": {"Deployment"},
    "source-native-s3": {"Deployment"},
    "source-native-gs": {"Deployment"},
    "locust": {"Deployment", "Service"},
    "ingress-gateway": {"Ingress", "GRPCRoute"},
    "triton-24.10": {"Deployment", "Pod"},
    "gitops-stable-key": {"Deployment", "Secret"},
    "mode-none-no-restrictions": {"Deployment", "Service"},
}


@pytest.mark.parametrize("combination", list(hs.COMBINATIONS))
def test_every_object_validates(combination: str) -> None:
    docs = hs.objects(hs.COMBINATIONS[combination])
    assert EXPECTED_KINDS[combination] <= set(hs.kinds(docs))
    problems = {f"{d['kind']}/{d['metadata']['name']}": hs.validate(d) for d in docs}
    assert not {k: v for k, v in problems.items() if v}
    for doc in docs:
        assert doc["metadata"]["namespace"] == hs.NAMESPACE or doc["kind"] == "Pod"


def test_validation_is_strict() -> None:
    """The validators reject what the API server would: an unknown field, a wrong type."""
    deployment = copy.deepcopy(hs.find(hs.objects(), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert hs.validate(deployment)
    monitor = copy.deepcopy(
        hs.find(hs.objects(hs.COMBINATIONS["hpa-prometheus-adapter"]), "ServiceMonitor")
    )
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    assert hs.validate(monitor)
    scaled = copy.deepcopy(hs.find(hs.objects(hs.COMBINATIONS["keda"]), "ScaledObject"))
    scaled["spec"]["minReplicaCount"] = "one"
    assert hs.validate(scaled)
    rule = copy.deepcopy(
        hs.find(hs.objects(hs.COMBINATIONS["hpa-prometheus-adapter"]), "PrometheusRule")
    )
    rule["spec"]["groups"][1]["rules"][0]["for"] = "five minutes"
    assert hs.validate(rule)


def test_defaults_render_only_the_server() -> None:
    assert hs.kinds(hs.objects()) == sorted(
        ["Deployment", "Service", "Service", "Secret", "ServiceAccount", "NetworkPolicy",
         "PodDisruptionBudget", "ConfigMap", "Pod"]
    )  # fmt: skip


@pytest.mark.parametrize(
    "values", [{}, hs.COMBINATIONS["hpa-prometheus-adapter"], hs.COMBINATIONS["locust"]]
)
def test_helm_lint_is_clean(values: dict) -> None:
    report = chart.lint(values, chart=hs.CHART)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_notes_tell_how_to_reach_and_test_the_release() -> None:
    notes = chart.notes(hs.render(hs.COMBINATIONS["hpa-prometheus-adapter"]))
    assert f"helm test {hs.RELEASE}" in notes
    assert f"dns:///{hs.RELEASE}-tritonctl-grpc.{hs.NAMESPACE}.svc.cluster.local:8001" in notes
    assert "round_robin" in notes
    assert "prometheus-adapter" in notes


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"terminationGracePeriodSeconds": 30, "server": {"exitTimeoutSeconds": 30}},
            "terminationGracePeriodSeconds",
        ),
        ({"repository": {"source": "pvc"}}, "repository.pvc.claimName is required"),
        ({"repository": {"source": "s3sync"}}, "repository.s3sync.url is required"),
        ({"repository": {"source": "native"}}, "repository.native.url is required"),
        ({"server": {"loadModels": []}}, "server.loadModels must list"),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
            "minReplicas must not exceed",
        ),
        ({"gateway": {"enabled": True}}, "gateway.parentRefs"),
    ],
)
def test_inconsistent_values_fail_with_the_reason(values: dict, message: str) -> None:
    with pytest.raises(chart.ChartError, match=message):
        hs.render(values)
