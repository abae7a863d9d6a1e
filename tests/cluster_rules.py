"""What the cluster-side components decide about the rendered chart, ported from their sources.

No cluster, KEDA, prometheus-adapter or helm binary runs here, so the checks that these components
make on our objects, and that do not depend on cluster state, are ported line by line from the
versions named below (read in their repositories at those tags). Each function names its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# KEDA -----------------------------------------------------------------------------------------

#: KEDA minor versions whose admission rules differ for this chart's ScaledObject.
KEDA_VERSIONS = ("2.16", "2.17", "2.18", "2.20")
MAX_LABEL_VALUE = 63  # apis/keda/v1alpha1/scaledobject_webhook.go, maxK8sLabelValueLength


@dataclass
class Admission:
    """The webhook's answer: ``errors`` reject the object; ``logged`` are only logged."""

    errors: list[str] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def _check_fallback(spec: dict[str, Any], version: str) -> str | None:
    """CheckFallbackValid, apis/keda/v1alpha1/scaledobject_types.go at v2.16.1 / v2.17.0 / v2.18.0+."""
    fallback = spec.get("fallback")
    if fallback is None:
        return None
    if fallback.get("failureThreshold", 0) < 0 or fallback.get("replicas", 0) < 0:
        return "FailureThreshold & Replicas must both be greater than or equal to 0"
    triggers = spec.get("triggers", [])
    if _minor(version) <= 16:
        for trigger in triggers:
            if trigger["type"] in ("cpu", "memory"):
                return f"type is {trigger['type']} , but fallback it is not supported by the CPU & memory scalers"
            if trigger.get("metricType", "AverageValue") != "AverageValue":
                return f"MetricType={trigger.get('metricType')}, but Fallback can only be enabled for triggers with metric of type AverageValue"
        return None
    candidates = [t for t in triggers if t["type"] not in ("cpu", "memory")]
    if _minor(version) == 17:  # the AverageValue requirement was dropped in 2.18
        candidates = [
            t for t in candidates if t.get("metricType", "AverageValue") == "AverageValue"
        ]
    if not candidates:
        return "at least one trigger (that is not cpu or memory) has to have the `AverageValue` type for the fallback to be enabled"
    return None


def keda_admission(scaled: dict[str, Any], target: dict[str, Any], version: str) -> Admission:
    """validateWorkload of KEDA's ScaledObject webhook (scaledobject_webhook.go), at ``version``,
    for the checks that need no cluster state: verifyCPUMemoryScalers, verifyReplicaCount,
    verifyFallback, verifyName (2.20+) and verifyTriggers. ``target`` is the Deployment."""
    answer = Admission()
    spec = scaled["spec"]
    triggers = spec.get("triggers", [])
    # verifyCPUMemoryScalers: every container needs a request for a cpu/memory trigger's resource.
    containers = target["spec"]["template"]["spec"]["containers"]
    for trigger in triggers:
        if trigger["type"] not in ("cpu", "memory"):
            continue
        wanted = trigger.get("metadata", {}).get("containerName", "")
        for container in containers:
            if wanted and container["name"] != wanted:
                continue
            resources = container.get("resources", {})
            if trigger["type"] not in {
                **resources.get("requests", {}),
                **resources.get("limits", {}),
            }:
                answer.errors.append(
                    f"the scaledobject has a {trigger['type']} trigger but the container {container['name']} doesn't have the {trigger['type']} request defined"
                )
        if all(t["type"] in ("cpu", "memory") for t in triggers) and not spec.get(
            "minReplicaCount"
        ):
            answer.errors.append("scaledobject has only cpu/memory triggers AND minReplica is 0")
    # verifyReplicaCount: logged only until 2.19, refused from 2.20.
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if low > high:
        message = f"MinReplicaCount={low} must be less than MaxReplicaCount={high}"
        (answer.errors if _minor(version) >= 20 else answer.logged).append(message)
    # verifyFallback: logged only up to 2.16, refused from 2.17.
    problem = _check_fallback(spec, version)
    if problem:
        (answer.errors if _minor(version) >= 17 else answer.logged).append(problem)
    # verifyName (2.20+): the ScaledObject's name and its HPA's name are label values.
    if _minor(version) >= 20:
        name = scaled["metadata"]["name"]
        hpa = (
            spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("name")
            or f"keda-hpa-{name}"
        )
        for what, value in (("scaledobject name", name), ("HPA name", hpa)):
            if len(value) > MAX_LABEL_VALUE:
                answer.errors.append(f"{what} {value!r} is {len(value)} characters long")
    # verifyTriggers (ValidateTriggers, scaletriggers_types.go).
    if not triggers:
        answer.errors.append("no triggers defined in the ScaledObject/ScaledJob")
    names = [t["name"] for t in triggers if t.get("name")]
    if len(names) != len(set(names)):
        answer.errors.append("a triggerName is defined multiple times")
    for trigger in triggers:
        if trigger.get("useCachedMetrics") and trigger["type"] in ("cpu", "memory", "cron"):
            answer.errors.append(
                f'property "useCachedMetrics" is not supported for {trigger["type"]}'
            )
    return answer


# Helm 3 ---------------------------------------------------------------------------------------


def helm3_test_logs_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Why `helm test --logs` exits 1 on Helm 3 (pkg/action/release_testing.go, GetPodLogs at
    v3.21.4): after the run it asks for the Pod logs of *every* test hook by name, whatever its
    kind, so a non-Pod test hook, or a Pod deleted on success, is "unable to get pod logs"."""
    problems = []
    for doc in docs:
        annotations = doc["metadata"].get("annotations") or {}
        events = [e.strip() for e in annotations.get("helm.sh/hook", "").split(",")]
        if "test" not in events and "test-success" not in events:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] != "Pod":
            problems.append(f"{name} is a test hook but not a Pod")
        policy = annotations.get("helm.sh/hook-delete-policy", "")
        if "hook-succeeded" in [p.strip() for p in policy.split(",")]:
            problems.append(f"{name} is deleted on success, before --logs reads it")
    return problems


# prometheus-adapter ---------------------------------------------------------------------------

_TEMPLATE = re.compile(r"<<\s*(.*?)\s*>>")


def adapter_query(
    metrics_query: str, namespace: str, pods: list[str], selector: dict[str, Any] | None
) -> str:
    """The PromQL prometheus-adapter sends for a Pods metric (pkg/naming/metrics_query.go,
    metricsQuery.Build, at v0.12.0): the HPA's metric selector becomes label matchers, then the
    namespace, then the pods (``=`` for one, ``=~`` for several); GroupBy is the pod label."""
    exprs: list[str] = []
    by_name: dict[str, str] = {}
    for requirement in (selector or {}).get("matchExpressions", []):
        values = list(requirement["values"])
        op = requirement["operator"]
        if op not in ("In", "NotIn"):
            raise ValueError(f"operator {op} is not ported")
        matcher = "=~" if op == "In" else "!~"
        exprs.append(f'{requirement["key"]}{matcher}"{"|".join(sorted(values))}"')
        by_name[requirement["key"]] = "|".join(sorted(values))
    for key, value in (selector or {}).get("matchLabels", {}).items():
        exprs.append(f'{key}="{value}"')
        by_name[key] = value
    exprs.append(f'namespace="{namespace}"')
    by_name["namespace"] = namespace
    target = "|".join(pods)
    exprs.append(f'pod{"=~" if len(pods) > 1 else "="}"{target}"')
    by_name["pod"] = target
    args = {".LabelMatchers": ",".join(exprs), ".GroupBy": "pod", ".Series": ""}

    def substitute(match: re.Match[str]) -> str:
        action = match.group(1)
        indexed = re.fullmatch(r'index \.LabelValuesByName "([^"]+)"', action)
        if indexed:
            return by_name.get(indexed.group(1), "")
        if action in args:
            return args[action]
        raise ValueError(f"template action <<{action}>> is not ported")

    return _TEMPLATE.sub(substitute, metrics_query)
