"""A release's state from the cluster: rollout, pod readiness and the HPA's replicas.

The ``summarize_*`` functions are pure: they take the kubernetes client's model objects
(``V1Deployment``, ``V1Pod``, ``V2HorizontalPodAutoscaler``) and return plain dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ClusterUnavailable(RuntimeError):
    """No kubeconfig, or the cluster it names does not answer."""


def selector(release: str) -> str:
    """The label selector of the release's Triton pods (the chart's selectorLabels)."""
    return f"app.kubernetes.io/instance={release},app.kubernetes.io/component=server"


def summarize_deployment(deployment: Any) -> dict[str, Any]:
    """Rollout state, the way ``kubectl rollout status`` decides it."""
    spec, status = deployment.spec, deployment.status
    desired = spec.replicas if spec.replicas is not None else 1
    updated = status.updated_replicas or 0
    ready = status.ready_replicas or 0
    available = status.available_replicas or 0
    total = status.replicas or 0
    observed = (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
    conditions = {c.type: c for c in (status.conditions or [])}
    progressing = conditions.get("Progressing")
    if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
        state, detail = "failed", progressing.message or "progress deadline exceeded"
    elif not observed:
        state, detail = "progressing", "waiting for the controller to observe the new spec"
    elif updated < desired:
        state, detail = "progressing", f"{updated} of {desired} pods updated"
    elif total > updated:
        state, detail = "progressing", f"{total - updated} old pods terminating"
    elif available < updated:
        state, detail = "progressing", f"{available} of {updated} updated pods available"
    else:
        state, detail = "complete", f"{available} of {desired} pods available"
    return {
        "name": deployment.metadata.name,
        "desired": desired,
        "updated": updated,
        "ready": ready,
        "available": available,
        "state": state,
        "detail": detail,
        "image": ", ".join(c.image for c in spec.template.spec.containers),
    }


def summarize_pod(pod: Any) -> dict[str, Any]:
    """Phase, readiness, restarts and the reason a container is waiting."""
    conditions = {c.type: c.status for c in (pod.status.conditions or [])}
    containers = pod.status.container_statuses or []
    waiting = [
        f"{c.name}: {c.state.waiting.reason}"
        for c in containers
        if c.state is not None and c.state.waiting is not None and c.state.waiting.reason
    ]
    return {
        "name": pod.metadata.name,
        "phase": pod.status.phase or "Unknown",
        "ready": conditions.get("Ready") == "True",
        "ready_containers": f"{sum(bool(c.ready) for c in containers)}/{len(pod.spec.containers)}",
        "restarts": sum(c.restart_count or 0 for c in containers),
        "node": pod.spec.node_name or "",
        "waiting": "; ".join(waiting),
    }


def summarize_hpa(hpa: Any) -> dict[str, Any]:
    """Current and desired replicas and each metric's current value against its target."""
    spec, status = hpa.spec, hpa.status
    metrics = []
    currents = status.current_metrics or []
    for index, metric in enumerate(spec.metrics or []):
        current = currents[index] if index < len(currents) else None
        metrics.append({"metric": _metric_name(metric), **_metric_values(metric, current)})
    conditions = {c.type: c for c in (status.conditions or [])}
    able = conditions.get("ScalingActive")
    return {
        "name": hpa.metadata.name,
        "min": spec.min_replicas if spec.min_replicas is not None else 1,
        "max": spec.max_replicas,
        "current": status.current_replicas or 0,
        "desired": status.desired_replicas or 0,
        "metrics": metrics,
        "scaling_active": able is None or able.status == "True",
        "scaling_message": able.message if able is not None and able.status != "True" else "",
    }


def _metric_name(metric: Any) -> str:
    if metric.type == "Pods":
        return f"pods/{metric.pods.metric.name}"
    if metric.type == "Resource":
        return f"resource/{metric.resource.name}"
    if metric.type == "External":
        return f"external/{metric.external.metric.name}"
    if metric.type == "Object":
        return f"object/{metric.object.metric.name}"
    return str(metric.type)


def _metric_values(metric: Any, current: Any) -> dict[str, str]:
    source = {"Pods": "pods", "Resource": "resource", "External": "external", "Object": "object"}
    attr = source.get(metric.type)
    target = getattr(getattr(metric, attr), "target", None) if attr else None
    now = getattr(getattr(current, attr), "current", None) if attr and current is not None else None

    def describe(value: Any) -> str:
        if value is None:
            return "<unknown>"
        if getattr(value, "average_utilization", None) is not None:
            return f"{value.average_utilization}%"
        for name in ("average_value", "value"):
            if getattr(value, name, None) is not None:
                return str(getattr(value, name))
        return "<unknown>"

    return {"current": describe(now), "target": describe(target)}


@dataclass
class ReleaseStatus:
    release: str
    namespace: str
    deployment: dict[str, Any] | None
    pods: list[dict[str, Any]] = field(default_factory=list)
    hpa: dict[str, Any] | None = None

    @property
    def healthy(self) -> bool:
        return (
            self.deployment is not None
            and self.deployment["state"] == "complete"
            and bool(self.pods)
            and all(p["ready"] for p in self.pods)
        )


def api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ApiClient from the kubeconfig (or the in-cluster service account); clear error if none."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (ConfigException, FileNotFoundError, OSError) as kube_error:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except ConfigException:
            where = kubeconfig or "$KUBECONFIG or ~/.kube/config"
            raise ClusterUnavailable(
                f"no Kubernetes cluster configured: cannot load a kubeconfig from {where} "
                f"({kube_error}) and not running inside a cluster"
            ) from kube_error


def collect_status(
    release: str,
    namespace: str,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
) -> ReleaseStatus:
    """Read the release's Deployment, pods and HPA from the cluster."""
    import urllib3
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = api_client(kubeconfig, context)
    labels = selector(release)
    try:
        deployments = client.AppsV1Api(api).list_namespaced_deployment(
            namespace, label_selector=labels
        )
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=labels)
        hpas = client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(
            namespace, label_selector=f"app.kubernetes.io/instance={release}"
        )
    except ApiException as error:
        raise ClusterUnavailable(
            f"the cluster refused the request: {error.status} {error.reason}"
        ) from error
    except urllib3.exceptions.HTTPError as error:
        raise ClusterUnavailable(f"the cluster does not answer: {error}") from error
    finally:
        api.close()
    return ReleaseStatus(
        release=release,
        namespace=namespace,
        deployment=summarize_deployment(deployments.items[0]) if deployments.items else None,
        pods=[summarize_pod(p) for p in sorted(pods.items, key=lambda p: p.metadata.name)],
        hpa=summarize_hpa(hpas.items[0]) if hpas.items else None,
    )
