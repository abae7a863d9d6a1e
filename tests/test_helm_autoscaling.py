"""Autoscaling on Triton's own signal: per-pod queue time per request, with no namespace baked in."""

from __future__ import annotations

import promql_parser
import yaml

from tests import helm_support as hs

ADAPTER = hs.COMBINATIONS["hpa-prometheus-adapter"]
KEDA = hs.COMBINATIONS["keda"]

#: server#8979: per pod, queue time over successful requests of the same window; guarded.
EXPECTED_ADAPTER_QUERY = (
    "sum by (<<.GroupBy>>) (rate(nv_inference_queue_duration_us{<<.LabelMatchers>>}[1m]))"
    " / clamp_min(sum by (<<.GroupBy>>) (rate(nv_inference_request_success{<<.LabelMatchers>>}[1m])), 1e-9)"
)


def chart_values() -> dict:
    return yaml.safe_load((hs.CHART / "values.yaml").read_text())


def test_hpa_scales_on_queue_time_per_request_with_cpu_fallback() -> None:
    docs = hs.objects(ADAPTER)
    hpa = hs.find(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo-tritonctl",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    pods, cpu = hpa["spec"]["metrics"]
    assert pods == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "triton_queue_us_per_request"},
            "target": {"type": "AverageValue", "averageValue": "20000"},
        },
    }
    assert cpu == {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    }
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    # The HPA owns the replica count.
    assert "replicas" not in hs.find(docs, "Deployment")["spec"]


def test_prometheus_adapter_rule_is_exact_and_namespace_free() -> None:
    adapter = chart_values()["autoscaling"]["prometheusAdapter"]
    rule = adapter["rule"]
    assert rule["metricsQuery"] == EXPECTED_ADAPTER_QUERY
    assert rule["name"]["as"] == adapter["metricName"] == "triton_queue_us_per_request"
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    assert "namespace=" not in rule["metricsQuery"] and "delta(" not in rule["metricsQuery"]
    # What prometheus-adapter sends for two pods of one namespace parses as PromQL.
    query = (
        rule["metricsQuery"]
        .replace("<<.GroupBy>>", "namespace, pod")
        .replace("<<.LabelMatchers>>", 'namespace="ml",pod=~"demo-1|demo-2"')
    )
    promql_parser.parse(query)
    promql_parser.parse(rule["seriesQuery"])


def test_shipped_adapter_values_hold_the_same_rule() -> None:
    shipped = yaml.safe_load((hs.ROOT / "helm" / "prometheus-adapter-values.yaml").read_text())
    assert shipped["rules"]["custom"] == [
        chart_values()["autoscaling"]["prometheusAdapter"]["rule"]
    ]
    assert shipped["rules"]["default"] is False


def test_keda_scaled_object_targets_the_per_pod_mean() -> None:
    docs = hs.objects(KEDA)
    assert "HorizontalPodAutoscaler" not in hs.kinds(docs)  # KEDA makes its own
    scaled = hs.find(docs, "ScaledObject")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 6)
    queue, cpu = scaled["triggers"]
    assert queue["type"] == "prometheus" and queue["metricType"] == "AverageValue"
    query = queue["metadata"]["query"]
    per_pod = (
        f'sum by (namespace, pod) (rate(nv_inference_queue_duration_us{{namespace="{hs.NAMESPACE}",service="demo-tritonctl"}}[1m]))'
        f' / clamp_min(sum by (namespace, pod) (rate(nv_inference_request_success{{namespace="{hs.NAMESPACE}",service="demo-tritonctl"}}[1m])), 1e-9)'
    )
    assert query == f"sum({per_pod})"
    promql_parser.parse(query)
    assert queue["metadata"]["threshold"] == "20000"
    assert cpu == {
        "type": "cpu",
        "name": "cpu-fallback",
        "metricType": "Utilization",
        "metadata": {"value": "80"},
    }
    assert scaled["fallback"] == {"failureThreshold": 3, "replicas": 2}
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_model_matcher_narrows_the_signal() -> None:
    values = {
        "autoscaling": {"enabled": True, "provider": "keda", "modelMatcher": 'model="text_encoder"'}
    }
    query = hs.find(hs.objects(values), "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    assert query.count('model="text_encoder"') == 2
    promql_parser.parse(query)


def test_cpu_fallback_can_be_switched_off() -> None:
    values = {"autoscaling": {"enabled": True, "cpuTargetUtilization": 0}}
    hpa = hs.find(hs.objects(values), "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods"]
