"""Autoscaling on Triton's own signal: per-pod queue time per user request, with no namespace baked
in, and what KEDA, prometheus-adapter and the HPA make of the rendered objects."""

from __future__ import annotations

import promql_parser
import pytest
import yaml

from tests import cluster_rules
from tests import helm_support as hs
from tritonctl.k8s.chart import ChartError

ADAPTER = hs.COMBINATIONS["hpa-prometheus-adapter"]
KEDA = hs.COMBINATIONS["keda"]

#: server#8979: per pod, queue time over successful requests of the same window; guarded. The
#: numerator takes every model of the pod, the denominator only the HPA's selected models.
EXPECTED_ADAPTER_QUERY = (
    'sum by (<<.GroupBy>>) (rate(nv_inference_queue_duration_us{namespace="<<index .LabelValuesByName "namespace">>",pod=~"<<index .LabelValuesByName "pod">>"}[1m]))'
    " / clamp_min(sum by (<<.GroupBy>>) (rate(nv_inference_request_success{<<.LabelMatchers>>}[1m])), 1e-9)"
)
SELECTOR = f'namespace="{hs.NAMESPACE}",service="demo-tritonctl"'


def chart_values() -> dict:
    return yaml.safe_load((hs.CHART / "values.yaml").read_text())


def test_hpa_scales_on_queue_time_per_user_request_with_cpu_fallback() -> None:
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
            "metric": {
                "name": "triton_queue_us_per_request",
                # The served ensemble: its requests are what users send.
                "selector": {
                    "matchExpressions": [
                        {"key": "model", "operator": "In", "values": ["text_embedding"]}
                    ]
                },
            },
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
    assert 'namespace="' + hs.NAMESPACE not in rule["metricsQuery"]
    assert "delta(" not in rule["metricsQuery"]
    promql_parser.parse(rule["seriesQuery"])


def test_the_hpa_model_selector_reaches_only_the_denominator() -> None:
    """autoscaling's model matcher reaches the adapter's query (issue 16 item 10): the query that
    prometheus-adapter builds from the rule and the rendered HPA's selector, for two pods."""
    rule = chart_values()["autoscaling"]["prometheusAdapter"]["rule"]
    hpa = hs.find(hs.objects(ADAPTER), "HorizontalPodAutoscaler")
    selector = hpa["spec"]["metrics"][0]["pods"]["metric"]["selector"]
    query = cluster_rules.adapter_query(
        rule["metricsQuery"], hs.NAMESPACE, ["demo-1", "demo-2"], selector
    )
    promql_parser.parse(query)
    numerator, denominator = query.split(" / clamp_min(")
    assert 'pod=~"demo-1|demo-2"' in numerator and f'namespace="{hs.NAMESPACE}"' in numerator
    # An ensemble's own queue time stays near 0 (tests/test_helm_triton_args.py shows it on the
    # real server): the queue of the composing models must stay in the numerator.
    assert "model" not in numerator
    assert 'model=~"text_embedding"' in denominator and 'pod=~"demo-1|demo-2"' in denominator
    # One pod: prometheus-adapter uses pod="...", the numerator's regex still matches it.
    single = cluster_rules.adapter_query(rule["metricsQuery"], hs.NAMESPACE, ["demo-1"], selector)
    assert 'pod=~"demo-1"' in single and 'pod="demo-1"' in single
    promql_parser.parse(single)


def test_user_facing_models_set_the_selector_and_the_keda_query() -> None:
    loaded = ["tokenizer", "text_encoder", "pooling", "text_embedding", "digit_classifier"]
    values = {
        "userFacingModels": ["text_embedding", "digit_classifier"],
        "server": {"loadModels": loaded},
        "autoscaling": {"enabled": True},
    }
    hpa = hs.find(hs.objects(values), "HorizontalPodAutoscaler")
    expression = hpa["spec"]["metrics"][0]["pods"]["metric"]["selector"]["matchExpressions"][0]
    assert expression["values"] == ["text_embedding", "digit_classifier"]
    keda = {**values, "autoscaling": {"enabled": True, "provider": "keda"}}
    query = hs.find(hs.objects(keda), "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    assert query.count('model=~"text_embedding|digit_classifier"') == 1
    promql_parser.parse(query)
    with pytest.raises(ChartError, match="userFacingModels"):
        hs.render({"userFacingModels": ["text.*"]})  # a regex, not a model name
    with pytest.raises(ChartError, match=r"not in server\.loadModels"):
        hs.render({"userFacingModels": ["digit_classifier"]})  # loaded by nobody: no requests


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
        f"sum by (namespace, pod) (rate(nv_inference_queue_duration_us{{{SELECTOR}}}[1m]))"
        f' / clamp_min(sum by (namespace, pod) (rate(nv_inference_request_success{{{SELECTOR},model=~"text_embedding"}}[1m])), 1e-9)'
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
    # KEDA applies cooldownPeriod only when scaling to zero, which minReplicas >= 1 rules out.
    assert "cooldownPeriod" not in scaled


def test_a_missing_metric_falls_back_instead_of_reading_zero() -> None:
    """ignoreNullValues "true" made an empty query result (no ServiceMonitor, no scrape) a queue
    time of 0, so the fallback never fired (issue 16 item 7)."""
    scaled = hs.find(hs.objects(KEDA), "ScaledObject")["spec"]
    assert scaled["triggers"][0]["metadata"]["ignoreNullValues"] == "false"
    assert scaled["fallback"]["replicas"] >= 1


@pytest.mark.parametrize("provider", ["prometheus-adapter", "keda"])
def test_autoscaling_brings_the_scrape_it_depends_on(provider: str) -> None:
    """The queries select on labels only the ServiceMonitor adds (issue 16 item 7)."""
    values = {"autoscaling": {"enabled": True, "provider": provider}}
    monitor = hs.find(hs.objects(values), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert not hs.validate(monitor)
    external = {"autoscaling": {"enabled": True, "provider": provider, "scrape": "external"}}
    assert "ServiceMonitor" not in hs.kinds(hs.objects(external))


@pytest.mark.parametrize("version", cluster_rules.KEDA_VERSIONS)
@pytest.mark.parametrize("cpu", [80, 0])
def test_keda_admits_the_scaled_object(version: str, cpu: int) -> None:
    """KEDA's webhook checks, ported per version (issue 16 item 1). Up to 2.16 the cpu trigger
    next to a fallback is only logged, never refused; 2.17+ accepts the pair."""
    values = {"autoscaling": {**KEDA["autoscaling"], "cpuTargetUtilization": cpu}}
    docs = hs.objects(values)
    answer = cluster_rules.keda_admission(
        hs.find(docs, "ScaledObject"), hs.find(docs, "Deployment"), version
    )
    assert answer.errors == []
    if version == "2.16" and cpu:
        assert any("CPU & memory" in m for m in answer.logged)
    else:
        assert answer.logged == []


def test_keda_admits_a_long_release_name() -> None:
    """KEDA 2.20+ refuses a ScaledObject whose HPA name ("keda-hpa-" + name by default) passes
    63 characters: the chart names the HPA itself (the old chart failed here)."""
    release = "r" * 53
    docs = [
        d
        for d in hs.chart.manifests(
            hs.chart.render(KEDA, release=release, namespace=hs.NAMESPACE, chart=hs.CHART)
        )
    ]
    scaled, deployment = hs.find(docs, "ScaledObject"), hs.find(docs, "Deployment")
    assert len(scaled["metadata"]["name"]) == 63
    assert cluster_rules.keda_admission(scaled, deployment, "2.20").errors == []
    assert (
        scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["name"]
        == (scaled["metadata"]["name"])
    )


def test_the_keda_port_refuses_what_keda_refuses() -> None:
    """The ported checks are not vacuous: KEDA's own rejections of broken objects."""
    docs = hs.objects(KEDA)
    scaled, deployment = hs.find(docs, "ScaledObject"), hs.find(docs, "Deployment")
    cpu_only = {**scaled, "spec": {**scaled["spec"], "triggers": scaled["spec"]["triggers"][1:]}}
    assert cluster_rules.keda_admission(cpu_only, deployment, "2.17").errors  # fallback, no queue
    assert cluster_rules.keda_admission(cpu_only, deployment, "2.16").logged
    no_request = {
        "spec": {"template": {"spec": {"containers": [{"name": "tritonserver", "resources": {}}]}}}
    }
    assert "cpu request" in cluster_rules.keda_admission(scaled, no_request, "2.16").errors[0]
    default_name = {**scaled, "metadata": {"name": "x" * 60}, "spec": {**scaled["spec"]}}
    default_name["spec"]["advanced"] = {}
    assert cluster_rules.keda_admission(default_name, deployment, "2.20").errors


def test_cpu_fallback_needs_a_cpu_request() -> None:
    """The HPA computes utilisation against the request, and KEDA refuses a cpu trigger without
    one: the chart says so before anything reaches the cluster."""
    no_request = {"resources": {"requests": {"cpu": None}}}  # Helm's null deletes the default
    for provider in ("prometheus-adapter", "keda"):
        with pytest.raises(ChartError, match=r"resources\.requests\.cpu"):
            hs.render({**no_request, "autoscaling": {"enabled": True, "provider": provider}})
    off = {**no_request, "autoscaling": {"enabled": True, "cpuTargetUtilization": 0}}
    assert hs.find(hs.objects(off), "HorizontalPodAutoscaler")


def test_cpu_fallback_can_be_switched_off() -> None:
    values = {"autoscaling": {"enabled": True, "cpuTargetUtilization": 0}}
    hpa = hs.find(hs.objects(values), "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods"]


def test_alerts_when_the_hpa_cannot_scale_down() -> None:
    """With a metric failing, the HPA (Kubernetes >= 1.21) never scales down, so the CPU
    "fallback" only ratchets up: alert on its conditions (issue 16 item 8)."""
    for values in (ADAPTER, {**KEDA, "monitoring": {"prometheusRule": {"enabled": True}}}):
        rule = hs.find(hs.objects(values), "PrometheusRule")
        alerts = {
            r["alert"]: r["expr"]
            for g in rule["spec"]["groups"]
            for r in g["rules"]
            if "alert" in r
        }
        failing = alerts["TritonAutoscalerMetricsFailing"]
        assert 'condition="ScalingActive",status="false"' in failing
        assert 'horizontalpodautoscaler="demo-tritonctl"' in failing
        assert 'condition="AbleToScale",status="false"' in alerts["TritonAutoscalerCannotScale"]
        promql_parser.parse(failing)
    # The alerts name the HPA that exists: the chart's own, or the one KEDA makes and the chart names.
    assert hs.find(hs.objects(ADAPTER), "HorizontalPodAutoscaler")["metadata"]["name"] == (
        "demo-tritonctl"
    )
    no_autoscaling = {"monitoring": {"prometheusRule": {"enabled": True}}}
    rule = hs.find(hs.objects(no_autoscaling), "PrometheusRule")
    assert "TritonAutoscalerMetricsFailing" not in str(rule)


def test_values_say_what_the_cpu_fallback_cannot_do() -> None:
    text = (hs.CHART / "values.yaml").read_text()
    assert "It cannot scale down then" in text
    readme = (hs.CHART / "README.md").read_text()
    assert "does not scale down while any metric fails" in readme
