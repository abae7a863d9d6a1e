"""Policy assertions on the rendered chart: versions, probes, shm, security, resources, args."""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest
import yaml

import tritonctl
from tests import helm_support as hs
from tritonctl.k8s.chart import ChartError

GRPC_INGRESS = hs.COMBINATIONS["ingress-gateway"]


def server(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return hs.find(hs.objects(values), "Deployment", "-tritonctl")


def container(values: dict[str, Any] | None = None) -> dict[str, Any]:
    (triton,) = server(values)["spec"]["template"]["spec"]["containers"]
    return triton


def args(values: dict[str, Any] | None = None) -> list[str]:
    return container(values)["args"]


def all_pod_specs(values: dict[str, Any]) -> list[dict[str, Any]]:
    docs = hs.objects(values)
    specs = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    return specs + [d["spec"] for d in docs if d["kind"] == "Pod"]


def test_one_triton_version_everywhere() -> None:
    metadata = yaml.safe_load((hs.CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((hs.CHART / "values.yaml").read_text())
    _, tag = tritonctl.NGC_IMAGE.rsplit(":", 1)
    assert metadata["appVersion"] == tritonctl.TRITON_VERSION
    assert metadata["annotations"]["tritonctl/ngc-image"] == tritonctl.NGC_IMAGE
    assert f"{values['image']['repository']}:{values['image']['tag']}" == tritonctl.NGC_IMAGE
    assert container()["image"] == tritonctl.NGC_IMAGE
    # The helm test's SDK image is the same NGC release.
    assert values["tests"]["image"]["tag"] == f"{tag}-sdk"
    dockerfile = (hs.ROOT / "Dockerfile").read_text()
    assert re.search(rf"^ARG TRITON_IMAGE={re.escape(tritonctl.NGC_IMAGE)}$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{TRITON_IMAGE\} AS triton$", dockerfile, re.M)
    assert re.search(r"^USER 1000:1000$", dockerfile.split("AS triton")[1], re.M)
    assert (
        hs.find(hs.objects(), "Deployment")["metadata"]["labels"]["app.kubernetes.io/version"]
        == tritonctl.TRITON_VERSION
    )


def test_probes_allow_long_model_loads() -> None:
    triton = container()
    startup, ready, live = triton["startupProbe"], triton["readinessProbe"], triton["livenessProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert ready["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    # Liveness also fails on a dead Python backend stub (run for real in test_helm_triton_args).
    script = (hs.CHART / "files" / "liveness.py").read_text()
    assert live["exec"]["command"] == ["python3", "-c", script, "8000"]
    plain = container({"probes": {"liveness": {"pythonStubs": False}}})["livenessProbe"]
    assert plain["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }


def test_dev_shm_is_memory_backed_with_a_limit() -> None:
    spec = server()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"]


@pytest.mark.parametrize("combination", ["defaults", "locust", "source-s3sync", "gpu"])
def test_every_pod_is_hardened(combination: str) -> None:
    for spec in all_pod_specs(hs.COMBINATIONS[combination]):
        assert spec["automountServiceAccountToken"] is False
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        writable = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc.get("privileged", False) is False
            assert c["resources"]["limits"]["memory"]
        assert "/tmp" in writable


def test_no_service_account_token() -> None:
    account = hs.find(hs.objects(), "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_cpu_only_by_default_and_a_gpu_when_asked() -> None:
    cpu = container()["resources"]
    assert "nvidia.com/gpu" not in cpu.get("limits", {}) and cpu["requests"]["cpu"]
    assert "--allow-gpu-metrics=false" in args()
    gpu_values = hs.COMBINATIONS["gpu"]
    gpu = container(gpu_values)["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == 1 and gpu["requests"]["nvidia.com/gpu"] == 1
    assert gpu["limits"]["memory"] == cpu["limits"]["memory"]
    spec = server(gpu_values)["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert "--allow-gpu-metrics=true" in args(gpu_values)


def test_replicas_spread_over_nodes_and_zones() -> None:
    spread = server()["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert all(
        c["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server" for c in spread
    )


def test_server_arguments() -> None:
    got = args()
    assert container()["command"] == ["tritonserver"]
    assert "--model-repository=/models" in got
    assert "--model-control-mode=explicit" in got
    assert [a for a in got if a.startswith("--load-model=")] == [
        "--load-model=tokenizer", "--load-model=text_encoder", "--load-model=pooling", "--load-model=text_embedding",
    ]  # fmt: skip
    assert "--metrics-config=summary_latencies=true" in got
    assert "--strict-readiness=true" in got
    mode_none = args(hs.COMBINATIONS["mode-none-no-restrictions"])
    assert "--model-control-mode=none" in mode_none
    assert not [
        a
        for a in mode_none
        if a.startswith(("--load-model", "--http-restricted", "--grpc-restricted"))
    ]


def test_admin_apis_are_restricted_with_a_key_from_a_secret() -> None:
    got = args()
    apis = "model-repository,shared-memory,trace,logging"
    assert f"--http-restricted-api={apis}:admin-key=$(ADMIN_KEY)" in got
    assert f"--grpc-restricted-protocol={apis}:admin-key=$(ADMIN_KEY)" in got
    env = {e["name"]: e for e in container()["env"]}
    secret_name = env["ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["name"]
    secret = hs.find(hs.objects(), "Secret")
    assert secret["metadata"]["name"] == secret_name and len(secret["data"]["admin-key"]) >= 40
    existing = {"restrictedApis": {"existingSecret": "my-admin-key"}}
    assert "Secret" not in hs.kinds(hs.objects(existing))
    assert {e["name"]: e for e in container(existing)["env"]}["ADMIN_KEY"]["valueFrom"][
        "secretKeyRef"
    ]["name"] == ("my-admin-key")


def test_in_flight_requests_finish_on_shutdown() -> None:
    spec = server()["spec"]["template"]["spec"]
    exit_timeout = int(
        next(a for a in args() if a.startswith("--exit-timeout-secs=")).split("=")[1]
    )
    sleep = int(container()["lifecycle"]["preStop"]["exec"]["command"][1])
    assert sleep > 0 and sleep + exit_timeout < spec["terminationGracePeriodSeconds"]
    assert server()["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize(
    ("combination", "repository"),
    [
        ("defaults", "/models"),
        ("source-pvc", "/models"),
        ("source-s3sync", "/models"),
        ("source-native-s3", "s3://models/tritonctl"),
        ("source-native-gs", "gs://models/tritonctl"),
    ],
)
def test_model_repository_sources(combination: str, repository: str) -> None:
    values = hs.COMBINATIONS[combination]
    assert f"--model-repository={repository}" in args(values)
    spec = server(values)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container(values)["volumeMounts"]}
    if combination == "source-pvc":
        assert volumes["model-repository"]["persistentVolumeClaim"] == {
            "claimName": "models",
            "readOnly": True,
        }
        assert mounts["model-repository"] == {
            "name": "model-repository", "mountPath": "/models", "readOnly": True, "subPath": "v1",
        }  # fmt: skip
    elif combination == "source-s3sync":
        (init,) = spec["initContainers"]
        assert init["args"][:2] == ["s3", "sync"]
        assert init["args"][-2:] == ["s3://models/tritonctl", "/models"]
        assert "--endpoint-url=http://minio.storage.svc:9000" in init["args"]
        assert init["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
        assert (
            "emptyDir" in volumes["model-repository"]
            and mounts["model-repository"]["readOnly"] is True
        )
    elif combination == "source-native-s3":
        assert container(values)["envFrom"] == [{"secretRef": {"name": "aws"}}]
        assert "model-repository" not in volumes
    elif combination == "source-native-gs":
        env = {e["name"]: e.get("value") for e in container(values)["env"]}
        assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/run/secrets/gcp/credentials.json"
        assert volumes["gcp-credentials"]["secret"]["secretName"] == "gcp"
    else:
        assert "model-repository" not in volumes and "initContainers" not in spec


def test_grpc_gets_a_headless_service_and_l7_routes() -> None:
    docs = hs.objects(GRPC_INGRESS)
    main = hs.find(docs, "Service", "-tritonctl")
    headless = hs.find(docs, "Service", "-tritonctl-grpc")
    assert main["spec"]["type"] == "ClusterIP"
    assert {p["name"] for p in main["spec"]["ports"]} == {"http", "grpc", "metrics"}
    assert headless["spec"]["clusterIP"] == "None"
    grpc_port = next(p for p in headless["spec"]["ports"] if p["name"] == "grpc")
    assert grpc_port["port"] == 8001 and grpc_port["appProtocol"] == "kubernetes.io/h2c"
    ingress = hs.find(docs, "Ingress", "-grpc")
    assert (
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    )
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {
        "name": "grpc"
    }
    assert "backend-protocol" not in str(
        hs.find(docs, "Ingress", "-http")["metadata"].get("annotations")
    )
    route = hs.find(docs, "GRPCRoute")
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": main["metadata"]["name"], "port": 8001}
    ]


def test_network_policy_and_disruption_budget() -> None:
    docs = hs.objects()
    policy = hs.find(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    inference, metrics = policy["spec"]["ingress"]
    assert {p["port"] for p in inference["ports"]} == {"http", "grpc"}
    assert {
        "podSelector": {"matchLabels": {"app.kubernetes.io/instance": hs.RELEASE}}
    } in inference["from"]
    assert [p["port"] for p in metrics["ports"]] == ["metrics"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in metrics["from"]
    budget = hs.find(docs, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == server()["spec"]["selector"]


def test_helm_test_pod_runs_the_shipped_script() -> None:
    docs = hs.objects()
    pod = hs.find(docs, "Pod")
    script = hs.find(docs, "ConfigMap", "-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert script["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert script["data"]["helm_test.py"] == (
        hs.CHART / "files" / "helm_test.py"
    ).read_text().rstrip("\n")
    (test,) = pod["spec"]["containers"]
    assert test["command"] == ["python3", "/test/helm_test.py"]
    env = {e["name"]: e["value"] for e in test["env"]}
    assert env["TRITON_MODEL"] == "text_embedding"
    assert (
        env["TRITON_HTTP"] == f"{hs.RELEASE}-tritonctl:8000" and env["TRITON_RESTRICTED"] == "true"
    )


def test_locust_runs_the_projects_loadtests() -> None:
    docs = hs.objects(hs.COMBINATIONS["locust"])
    master = hs.find(docs, "Deployment", "-locust-master")
    workers = hs.find(docs, "Deployment", "-locust-worker")
    assert workers["spec"]["replicas"] == 3
    m_args = master["spec"]["template"]["spec"]["containers"][0]["args"]
    w_args = workers["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--master" in m_args and "--headless" in m_args
    assert f"--master-host={master['metadata']['name']}" in w_args
    assert f"--host=grpc://{hs.RELEASE}-tritonctl:8001" in m_args
    assert "--locustfile=/loadtests/locustfile.py" in w_args
    assert (hs.ROOT / "loadtests" / "locustfile.py").is_file()
    # Locust pods are not the server: no Service or autoscaler selects them.
    assert master["metadata"]["labels"]["app.kubernetes.io/component"] == "locust-master"


def _promql(expr: str) -> None:
    """Parse with a real PromQL parser, Grafana variables replaced by sample values."""
    sample = (
        expr.replace("$__rate_interval", "1m")
        .replace("$namespace", "ml")
        .replace("$service", "demo")
    )
    promql_parser.parse(sample)


def test_alerts_cover_latency_errors_queue_and_drift() -> None:
    rule = hs.find(hs.objects(hs.COMBINATIONS["hpa-prometheus-adapter"]), "PrometheusRule")
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    for r in rules:
        _promql(r["expr"])
    alerts = {r["alert"]: r["expr"] for r in rules if "alert" in r}
    recorded = {r["record"]: r["expr"] for r in rules if "record" in r}
    selector = f'namespace="{hs.NAMESPACE}",service="{hs.RELEASE}-tritonctl"'
    assert (
        f'nv_inference_request_summary_us{{{selector},quantile="0.95"}}'
        in alerts["TritonP95LatencyOverSLO"]
    )
    assert alerts["TritonP95LatencyOverSLO"].endswith("/ 1000 > 100")
    assert "nv_inference_request_failure" in recorded["tritonctl:error_ratio:rate5m"]
    assert "tritonctl:error_ratio:rate5m" in alerts["TritonErrorRatioHigh"]
    assert "offset 30m" in alerts["TritonQueueTimeGrowing"]
    assert "nv_inference_queue_duration_us" in recorded["tritonctl:queue_us_per_request:rate1m"]
    # The gauges the drift monitor exports (tritonctl.drift_window), by the same names.
    from tritonctl.drift_window import LOW_METRIC, PSI_METRIC

    assert f"({PSI_METRIC}{{" in alerts["TritonModelDrift"]
    assert f"({LOW_METRIC}{{" in alerts["TritonLowConfidenceRatioHigh"]
    assert 'namespace="default"' not in json.dumps(rules)


def test_dashboard_shows_what_an_operator_needs() -> None:
    docs = hs.objects(hs.COMBINATIONS["hpa-prometheus-adapter"])
    config_map = hs.find(docs, "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["tritonctl.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in exprs:
        _promql(expr)
    text = "\n".join(exprs)
    for metric in (
        "nv_inference_request_success",  # throughput
        "nv_inference_request_summary_us",  # latency percentiles
        "nv_inference_queue_duration_us",  # queue ...
        "nv_inference_compute_infer_duration_us",  # ... vs compute
        "nv_inference_exec_count",  # batch size = count / exec_count
        "nv_cache_num_hits_per_model",  # cache hit ratio
        "nv_gpu_utilization",
        "nv_cpu_utilization",
        "nv_gpu_memory_used_bytes",
        "container_memory_working_set_bytes",
        "tritonctl_drift_psi",
    ):
        assert metric in text, metric
    batch = next(
        t["expr"]
        for p in dashboard["panels"]
        if "batch" in p["title"].lower()
        for t in p["targets"]
    )
    assert (
        batch.index("nv_inference_count")
        < batch.index("/ clamp_min(")
        < batch.index("nv_inference_exec_count")
    )


def test_http_ingress_caps_the_body_below_the_triton_251_crash() -> None:
    body_size = "nginx.ingress.kubernetes.io/proxy-body-size"
    docs = hs.objects(GRPC_INGRESS)
    http = hs.find(docs, "Ingress", "-http")["metadata"]["annotations"]
    assert http[body_size] == "3840k"  # 3.75 MiB: answered by 2.51, which crashes above ~4 MiB
    assert body_size not in hs.find(docs, "Ingress", "-grpc")["metadata"]["annotations"]
    own = {"ingress": {**GRPC_INGRESS["ingress"], "http": {"annotations": {body_size: "1m"}}}}
    annotations = hs.find(hs.objects({**GRPC_INGRESS, **own}), "Ingress", "-http")["metadata"]
    assert annotations["annotations"] == {body_size: "1m"}  # the user's own wins, no duplicate
    for too_big in ("4m", "4096k", "8M", "5000000"):
        with pytest.raises(ChartError, match="below 4m"):
            hs.objects(
                {**GRPC_INGRESS, "ingress": {"enabled": True, "http": {"maxBodySize": too_big}}}
            )
