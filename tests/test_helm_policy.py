"""Policy assertions on the rendered chart: versions, probes, shm, security, resources, args."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

import tritonctl
from tests import cluster_rules
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


def test_one_triton_version_per_release() -> None:
    """The chart's Triton is the Dockerfile's base image: NGC 25.08 (2.60.0) by default, 24.10
    (2.51.0, the wheel's server) when pinned for parity; the helm test uses the same release."""
    metadata = yaml.safe_load((hs.CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((hs.CHART / "values.yaml").read_text())
    assert values["triton"]["release"] == tritonctl.CHART_NGC_RELEASE == "25.08"
    assert metadata["appVersion"] == tritonctl.CHART_TRITON_VERSION == "2.60.0"
    assert metadata["annotations"]["tritonctl/ngc-image"] == tritonctl.CHART_NGC_IMAGE
    dockerfile = (hs.ROOT / "Dockerfile").read_text()
    assert re.search(
        rf"^ARG TRITON_IMAGE={re.escape(tritonctl.CHART_NGC_IMAGE)}@sha256:[0-9a-f]{{64}}$",
        dockerfile,
        re.M,
    )
    assert re.search(r"^FROM \$\{TRITON_IMAGE\} AS triton$", dockerfile, re.M)
    assert re.search(r"^USER 1000:1000$", dockerfile.split("AS triton")[1], re.M)
    deployment = hs.find(hs.objects(), "Deployment")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "2.60.0"
    test_pod = hs.find(hs.objects(), "Pod")
    assert test_pod["spec"]["containers"][0]["image"] == "nvcr.io/nvidia/tritonserver:25.08-py3-sdk"
    # Pinned to the local server's release: the SDK image follows, and so does NOTES.txt.
    local_tag = tritonctl.NGC_IMAGE.rsplit(":", 1)[1]
    assert local_tag == "24.10-py3" and tritonctl.TRITON_VERSION == "2.51.0"
    pinned = hs.COMBINATIONS["triton-24.10"]
    assert hs.find(hs.objects(pinned), "Pod")["spec"]["containers"][0]["image"] == (
        f"{tritonctl.NGC_IMAGE}-sdk"
    )
    assert "Triton 2.51.0 (NGC 24.10" in hs.chart.notes(hs.render(pinned))


def test_the_default_image_is_the_projects_not_the_stock_one() -> None:
    """The stock NGC image holds neither /models nor the tokenizers package: with
    repository.source=image it crash-loops, so the chart refuses it (issue 16 item 3)."""
    assert container()["image"] == "tritonctl-triton:0.1.0"
    stock = {"image": {"repository": "nvcr.io/nvidia/tritonserver", "tag": "25.08-py3"}}
    with pytest.raises(ChartError, match="stock NGC image"):
        hs.render(stock)
    # With the models elsewhere, the stock image is fine for ONNX-only repositories.
    assert container({**stock, **hs.COMBINATIONS["source-pvc"]})["image"].startswith("nvcr.io")


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
    assert script["data"]["helm_test.py"] == (
        hs.CHART / "files" / "helm_test.py"
    ).read_text().rstrip("\n")
    (test,) = pod["spec"]["containers"]
    assert test["command"] == ["python3", "/test/helm_test.py"]
    env = {e["name"]: e["value"] for e in test["env"]}
    assert env["TRITON_MODEL"] == "text_embedding"
    assert env["TRITON_HTTP"] == f"{hs.RELEASE}-tritonctl:8000"
    assert env["TRITON_RESTRICTED_APIS"] == "model-repository,shared-memory,trace,logging"
    # The key as a file from the release's Secret (no secret in an environment variable).
    assert env["TRITON_ADMIN_KEY_FILE"] == "/admin/admin-key"
    (key_volume,) = [v for v in pod["spec"]["volumes"] if "secret" in v]
    assert key_volume["secret"]["secretName"] == f"{hs.RELEASE}-tritonctl-admin-key"
    (open_test,) = hs.find(hs.objects({"restrictedApis": {"enabled": False}}), "Pod")["spec"][
        "containers"
    ]
    open_env = {e["name"]: e.get("value") for e in open_test["env"]}
    assert open_env["TRITON_RESTRICTED_APIS"] == "" and "TRITON_ADMIN_KEY_FILE" not in open_env


def test_helm_test_logs_are_readable_on_helm_3() -> None:
    """`helm test --logs` (NOTES.txt) exits 1 on Helm 3 when a test hook is not a Pod or is
    deleted on success (issue 16 item 6): the script's ConfigMap is a plain resource now."""
    docs = hs.objects()
    assert cluster_rules.helm3_test_logs_problems(docs) == []
    script = hs.find(docs, "ConfigMap", "-test")
    assert "helm.sh/hook" not in (script["metadata"].get("annotations") or {})
    policy = hs.find(docs, "Pod")["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    assert policy == "before-hook-creation"  # replaced by the next run, readable until then
    # The check itself: what the old chart rendered.
    old = [
        {"kind": "ConfigMap", "metadata": {"name": "t", "annotations": {"helm.sh/hook": "test"}}},
        {
            "kind": "Pod",
            "metadata": {
                "name": "p",
                "annotations": {
                    "helm.sh/hook": "test",
                    "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
                },
            },
        },
    ]
    assert len(cluster_rules.helm3_test_logs_problems(old)) == 2


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
        .replace("$user_models", "text_embedding")
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
    # The cached ensemble has no summary (tests/test_helm_triton_args.py shows it on the real
    # server): its latency alert is the mean over its requests (issue 16 item 9).
    mean = alerts["TritonMeanLatencyOverSLO"]
    user = f'{selector},model=~"text_embedding"'
    assert f"rate(nv_inference_request_duration_us{{{user}}}[5m])" in mean
    assert f"rate(nv_inference_request_success{{{user}}}[5m])" in mean
    assert mean.endswith("/ 1000 > 100")
    assert "nv_cache_num_hits_per_model" in recorded["tritonctl:cache_hit_ratio:rate5m"]
    assert "nv_inference_request_duration_us" in recorded["tritonctl:request_latency_us:mean5m"]
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
    assert "__TRITONCTL_USER_MODELS__" not in config_map["data"]["tritonctl.json"]
    (user_models,) = [v for v in dashboard["templating"]["list"] if v["name"] == "user_models"]
    assert user_models["query"] == "text_embedding"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in exprs:
        _promql(expr)
    text = "\n".join(exprs)
    for metric in (
        "nv_inference_request_success",  # throughput
        "nv_inference_request_summary_us",  # latency percentiles
        "nv_inference_request_duration_us",  # mean latency: all there is for cached models
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


def test_http_ingress_caps_the_body_below_what_the_release_survives() -> None:
    body_size = "nginx.ingress.kubernetes.io/proxy-body-size"
    docs = hs.objects(GRPC_INGRESS)
    http = hs.find(docs, "Ingress", "-http")["metadata"]["annotations"]
    assert http[body_size] == "3840k"  # 3.75 MiB: answered by 2.51, which crashes above ~4 MiB
    own = {"ingress": {**GRPC_INGRESS["ingress"], "http": {"annotations": {body_size: "1m"}}}}
    annotations = hs.find(hs.objects({**GRPC_INGRESS, **own}), "Ingress", "-http")["metadata"]
    assert annotations["annotations"] == {body_size: "1m"}  # the user's own wins, no duplicate
    pinned = {"triton": {"release": "24.10"}}
    for too_big in ("4m", "4096k", "5000000"):
        with pytest.raises(ChartError, match="below 4m"):
            hs.objects({**pinned, "ingress": {"enabled": True, "http": {"maxBodySize": too_big}}})
    # Triton 2.60 no longer crashes; it refuses inputs above --http-max-input-size (64 MiB).
    assert hs.objects({"ingress": {"enabled": True, "http": {"maxBodySize": "16m"}}})
    with pytest.raises(ChartError, match="http-max-input-size"):
        hs.objects({"ingress": {"enabled": True, "http": {"maxBodySize": "65m"}}})
    # The user's own annotation replaces maxBodySize: it may not open the crash either.
    for too_big in ("10m", "1g", "0"):
        with pytest.raises(
            ChartError, match=r"annotations\[nginx.ingress.kubernetes.io/proxy-body"
        ):
            hs.objects(
                {
                    **pinned,
                    "ingress": {"enabled": True, "http": {"annotations": {body_size: too_big}}},
                }
            )
    assert hs.objects(
        {**pinned, "ingress": {"enabled": True, "http": {"annotations": {body_size: "2m"}}}}
    )


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_a_body_size_of_zero_is_refused(kind: str) -> None:
    """nginx reads "0" as no limit at all (issue 16, smaller ones)."""
    with pytest.raises(ChartError, match="unlimited"):
        hs.objects({"ingress": {"enabled": True, kind: {"maxBodySize": "0"}}})
    with pytest.raises(ChartError, match="maxBodySize"):
        hs.objects({"ingress": {"enabled": True, kind: {"maxBodySize": "1g"}}})  # schema: k or m


def test_grpc_ingress_lifts_nginx_1m_body_limit() -> None:
    """ingress-nginx applies its 1m client_max_body_size to gRPC too, below the HTTP cap, while
    the docs send large batches over gRPC (issue 16 item 11)."""
    body_size = "nginx.ingress.kubernetes.io/proxy-body-size"
    grpc = hs.find(hs.objects(GRPC_INGRESS), "Ingress", "-grpc")["metadata"]["annotations"]
    assert grpc[body_size] == "64m"
    assert grpc["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    sizes = {"64m": 64 << 20, "3840k": 3840 << 10}
    http = hs.find(hs.objects(GRPC_INGRESS), "Ingress", "-http")["metadata"]["annotations"]
    assert sizes[grpc[body_size]] > sizes[http[body_size]]
    own = {"ingress": {"enabled": True, "grpc": {"annotations": {body_size: "256m"}}}}
    assert hs.find(hs.objects(own), "Ingress", "-grpc")["metadata"]["annotations"][body_size] == (
        "256m"
    )


def _inference_peers(values: dict[str, Any]) -> list[dict[str, Any]]:
    policy = hs.find(hs.objects(values), "NetworkPolicy")
    inference = policy["spec"]["ingress"][0]
    assert {p["port"] for p in inference["ports"]} == {"http", "grpc"}
    peers: list[dict[str, Any]] = inference["from"]
    return peers


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def test_network_policy_admits_the_ingress_controller_and_the_gateway() -> None:
    """With allowFrom empty only the release's namespace was admitted, so an ingress controller
    or Gateway in its own namespace could not reach the pods (issue 16 item 2)."""
    assert _namespace("ingress-nginx") not in _inference_peers({})
    peers = _inference_peers({"ingress": {"enabled": True}})
    assert _namespace("ingress-nginx") in peers and {"podSelector": {}} in peers
    own = _inference_peers(
        {"ingress": {"enabled": True}, "networkPolicy": {"ingressControllerNamespace": "traefik"}}
    )
    assert _namespace("traefik") in own and _namespace("ingress-nginx") not in own
    gateway = {
        "gateway": {
            "enabled": True,
            "parentRefs": [{"name": "gw", "namespace": "gateway"}, {"name": "local"}],
        }
    }
    peers = _inference_peers(gateway)
    assert _namespace("gateway") in peers and _namespace(hs.NAMESPACE) in peers
    explicit = {**gateway, "networkPolicy": {"gatewayNamespaces": ["envoy-gateway-system"]}}
    assert _namespace("envoy-gateway-system") in _inference_peers(explicit)
    with pytest.raises(ChartError, match="ingressControllerNamespace"):
        hs.render(
            {"ingress": {"enabled": True}, "networkPolicy": {"ingressControllerNamespace": ""}}
        )
    for values in (gateway, {"ingress": {"enabled": True}}):
        assert not hs.validate(hs.find(hs.objects(values), "NetworkPolicy"))


def test_custom_egress_keeps_dns() -> None:
    """A custom networkPolicy.egress used to lose name resolution (issue 16, smaller ones)."""
    storage = {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 443}]}
    policy = hs.find(hs.objects({"networkPolicy": {"egress": [storage]}}), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, rule = policy["spec"]["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert rule == storage
    assert not hs.validate(policy)
    assert "egress" not in hs.find(hs.objects(), "NetworkPolicy")["spec"]


def test_gpu_rollouts_do_not_need_a_spare_gpu() -> None:
    """maxSurge 1 on a fully used GPU pool leaves the surge pod Pending for ever (issue 16
    item 5): GPU pods replace one at a time by default; CPU pods keep the zero-downtime surge."""
    assert server()["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    gpu = server(hs.COMBINATIONS["gpu"])["spec"]["strategy"]["rollingUpdate"]
    assert gpu == {"maxSurge": 0, "maxUnavailable": 1}
    chosen = {**hs.COMBINATIONS["gpu"], "updateStrategy": {"maxSurge": "25%", "maxUnavailable": 0}}
    assert server(chosen)["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": "25%",
        "maxUnavailable": 0,
    }
    with pytest.raises(ChartError, match="updateStrategy"):
        hs.render({"updateStrategy": {"maxSurge": 1}})  # both keys, or none


@pytest.mark.parametrize(
    ("combination", "disk"), [("source-s3sync", "20Gi"), ("source-native-s3", "2Gi")]
)
def test_downloaded_models_request_node_disk(combination: str, disk: str) -> None:
    """The s3sync emptyDir (and /tmp for native sources) is node disk: without an
    ephemeral-storage request the scheduler may pick a node without room (issue 16)."""
    requests = container(hs.COMBINATIONS[combination])["resources"]["requests"]
    assert requests["ephemeral-storage"] == disk
    assert "ephemeral-storage" not in container()["resources"]["requests"]
    own = {
        **hs.COMBINATIONS[combination],
        "resources": {"requests": {"cpu": "2", "ephemeral-storage": "50Gi"}},
    }
    assert container(own)["resources"]["requests"]["ephemeral-storage"] == "50Gi"


def test_one_replica_with_a_disruption_budget_is_flagged() -> None:
    """maxUnavailable 1 with one replica lets a drain take the service down (issue 16)."""
    assert "WARNING: 1 replica" in hs.chart.notes(hs.render())
    assert "WARNING" not in hs.chart.notes(hs.render({"replicaCount": 2}))
    two = {"autoscaling": {"enabled": True, "minReplicas": 2}}
    assert "WARNING" not in hs.chart.notes(hs.render(two))
    readme = (hs.CHART / "README.md").read_text().splitlines()
    (row,) = [line for line in readme if line.startswith("| PodDisruptionBudget |")]
    assert "replicaCount" in row and "protects nothing" in row


def test_the_admin_key_can_be_stable_across_renders() -> None:
    """A generated key changes on every `helm template` (GitOps), rolling the pods each time
    (issue 16): restrictedApis.adminKey and existingSecret render the same bytes every time."""
    key = "k" * 40
    first = hs.chart.render({"restrictedApis": {"adminKey": key}}, chart=hs.CHART)
    second = hs.chart.render({"restrictedApis": {"adminKey": key}}, chart=hs.CHART)
    assert first == second
    secret = hs.find(hs.chart.manifests(first), "Secret")
    import base64

    assert base64.b64decode(secret["data"]["admin-key"]).decode() == key
    existing = {"restrictedApis": {"existingSecret": "mine"}}
    assert hs.chart.render(existing, chart=hs.CHART) == hs.chart.render(existing, chart=hs.CHART)
    # Generated: a new key per render, which NOTES.txt warns GitOps users about.
    generated = [hs.chart.render({}, chart=hs.CHART) for _ in range(2)]
    assert generated[0] != generated[1]
    assert "restrictedApis.existingSecret or restrictedApis.adminKey" in hs.chart.notes(
        generated[0]
    )
    for short in ("short", "k" * 31):
        with pytest.raises(ChartError, match="adminKey"):
            hs.render({"restrictedApis": {"adminKey": short}})


@pytest.mark.parametrize("headless", [True, False], ids=["headless", "web-ui"])
def test_the_locust_master_becomes_ready(tmp_path: Path, headless: bool) -> None:
    """The master's readiness probe must pass in both modes the README documents: workers reach
    the master through its Service, which routes only to ready pods. A real Locust master runs
    the rendered args (ports mapped to free local ones), and the probed port must open."""
    import socket
    import subprocess
    import sys
    import time

    from tritonctl.ports import free_port

    extra = ["--headless", "-u", "4", "-t", "5m"] if headless else []
    docs = hs.objects({"locust": {"enabled": True, "extraArgs": extra}})
    (master,) = hs.find(docs, "Deployment", "-locust-master")["spec"]["template"]["spec"][
        "containers"
    ]
    local = {"web": free_port(), "master": free_port()}
    named = {p["name"]: p["containerPort"] for p in master["ports"]}
    assert named == {"web": 8089, "master": 5557}  # Locust's defaults: the args set neither
    probed = master["readinessProbe"]["tcpSocket"]["port"]
    args = [
        f"--locustfile={hs.ROOT / 'loadtests' / 'locustfile.py'}"
        if a.startswith("--locustfile=")
        else a
        for a in master["args"]
    ]
    args += ["--web-host=127.0.0.1", f"--web-port={local['web']}"]
    args += ["--master-bind-host=127.0.0.1", f"--master-bind-port={local['master']}"]
    env = {**os.environ, **{e["name"]: e["value"] for e in master["env"]}, "HOME": str(tmp_path)}
    locust = Path(sys.executable).with_name("locust")
    process = subprocess.Popen(
        [str(locust), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, opened = time.monotonic() + 60, False
        while time.monotonic() < deadline and process.poll() is None and not opened:
            with socket.socket() as s:
                s.settimeout(1)
                opened = s.connect_ex(("127.0.0.1", local[probed])) == 0
            time.sleep(0.5)
        # The other port answering shows the master did start.
        with socket.socket() as s:
            started = s.connect_ex(("127.0.0.1", local["master"])) == 0
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert started, stderr[-2000:]
    assert opened, f"readiness probes port {probed!r}, which the master never opens ({extra})"
    notes = next(
        t
        for path, t in hs.render({"locust": {"enabled": True, "extraArgs": extra}}).items()
        if path.endswith("NOTES.txt")
    )
    assert ("open http://localhost:8089" in notes) is not headless  # no web UI when headless
