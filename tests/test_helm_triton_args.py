"""The chart's tritonserver arguments, run by the real Triton 2.51 binary (the one in the NGC image).

The pod's command line comes from the rendered Deployment; only what differs on this machine is
swapped: the repository path and ports (loopback, free ports from LocalTriton) and $(ADMIN_KEY),
which the kubelet expands from the Secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests import helm_support as hs
from tests.tiny_repository import make_tiny_repository
from tritonctl.server import LocalTriton

pytestmark = pytest.mark.server

ADMIN_KEY = "k8s-secret-value"
LOCAL = ("--model-repository=", "--http-port=", "--grpc-port=", "--metrics-port=")


def chart_args(values: dict) -> list[str]:
    deployment = hs.find(hs.objects(values), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tritonserver"]
    return [
        a.replace("$(ADMIN_KEY)", ADMIN_KEY) for a in container["args"] if not a.startswith(LOCAL)
    ]


class ChartedTriton(LocalTriton):
    """LocalTriton running the chart's flags: it reads model states with the chart's key."""

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"admin-key": ADMIN_KEY}

    def expected_models(self) -> list[str]:
        return ["double"]


def charted_server(kind: type[ChartedTriton], repository: Path, extra: list[str]) -> ChartedTriton:
    """A local server whose flags (cache, summaries, restricted APIs) all come from the chart."""
    return kind(
        repository,
        restrict_apis=False,
        cache_size=0,
        metrics_summaries=False,
        exit_timeout=5,
        extra_args=extra,
    )


@pytest.fixture(scope="module")
def charted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    repository = make_tiny_repository(tmp_path_factory.mktemp("charted"))
    extra = chart_args(
        {
            "server": {"loadModels": ["double"], "exitTimeoutSeconds": 5},
            "userFacingModels": ["double"],
        }
    )
    with charted_server(ChartedTriton, repository, extra) as server:
        yield server


def _post(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=b"{}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_explicit_mode_loads_only_the_listed_models(charted: LocalTriton) -> None:
    status, body = _post(f"{charted.url}/v2/repository/index", {"admin-key": ADMIN_KEY})
    assert status == 200
    states = {m["name"]: m.get("state") for m in json.loads(body)}
    assert states == {"double": "READY", "add_one": None}


def test_repository_api_needs_the_secret_key(charted: LocalTriton) -> None:
    assert _post(f"{charted.url}/v2/repository/index")[0] == 403
    assert _post(f"{charted.url}/v2/repository/index", {"admin-key": "wrong"})[0] == 403
    # Loading a model at run time is an admin action too.
    assert _post(f"{charted.url}/v2/repository/models/add_one/load")[0] == 403


def test_inference_stays_open_and_summaries_are_exported(charted: LocalTriton) -> None:
    client = httpclient.InferenceServerClient(charted.http_address)
    try:
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = httpclient.InferInput("X", [2, 4], "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_allclose(client.infer("double", [tensor]).as_numpy("Y"), 2 * x)
    finally:
        client.close()
    with urllib.request.urlopen(charted.metrics_url, timeout=10) as response:
        metrics = response.read().decode()
    # --metrics-config=summary_latencies=true came from the chart, not from LocalTriton.
    assert 'nv_inference_request_summary_us{model="double"' in metrics.replace(",quantile", "")
    for name in (
        "nv_inference_queue_duration_us",
        "nv_inference_request_success",
        "nv_inference_exec_count",
    ):
        assert f"{name}{{" in metrics


# The `helm test` script (helm/tritonctl/files/helm_test.py) against real servers --------------

HELM_TEST = hs.CHART / "files" / "helm_test.py"


def run_helm_test(server: LocalTriton, model: str) -> subprocess.CompletedProcess[str]:
    # The session server has its own key.
    env = {**os.environ, **pod_env({}, server, server.admin_key or ADMIN_KEY)}
    env["TRITON_MODEL"] = model
    return subprocess.run(
        [sys.executable, str(HELM_TEST)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_helm_test_fails_with_the_reason(charted: LocalTriton) -> None:
    result = run_helm_test(charted, "add_one")  # in the repository, but not loaded
    assert result.returncode == 1
    assert "FAILED" in result.stderr and "model add_one is not ready" in result.stderr


def test_helm_test_passes_on_the_real_text_embedding(triton: LocalTriton) -> None:
    result = run_helm_test(triton, "text_embedding")
    assert result.returncode == 0, result.stderr
    assert "unit norm, similar texts closer" in result.stdout
    assert "gRPC" in result.stdout and "403 without the admin key" in result.stdout


# The liveness probe (helm/tritonctl/files/liveness.py) against a real server -----------------


def liveness_command(http_port: int) -> list[str]:
    """The rendered exec liveness probe, for a server on ``http_port``."""
    deployment = hs.find(hs.objects({"ports": {"http": http_port}}), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command: list[str] = container["livenessProbe"]["exec"]["command"]
    assert command[0] == "python3" and command[-1] == str(http_port)
    return [sys.executable, *command[1:]]  # the project's interpreter stands for the image's


def probe(command: list[str], server_pid: int) -> subprocess.CompletedProcess[str]:
    # In the pod the probe sees only its container's processes; here, only this server's stubs.
    env = {**os.environ, "STUB_PARENT_PID": str(server_pid)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_liveness_probe_fails_on_a_dead_stub_and_a_dead_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    server = LocalTriton(make_tiny_repository(tmp_path), models=["add_one"], exit_timeout=5)
    command = liveness_command(server.http_port)
    with server:
        assert server.process is not None
        pid = server.process.pid
        healthy = probe(command, pid)
        assert healthy.returncode == 0, healthy.stderr
        stubs = [p for p in server.group_pids() if p != pid]
        assert stubs, "add_one runs in a Python backend stub"
        os.kill(stubs[0], signal.SIGKILL)
        time.sleep(0.5)
        assert server.is_live() and server.is_ready(), "Triton 2.51 still reports live and ready"
        dead = probe(command, pid)
        assert dead.returncode == 1 and "Python backend stub" in dead.stderr, dead.stderr
    gone = probe(command, pid)
    assert gone.returncode == 1 and "not live" in gone.stderr, gone.stderr


# Restricted APIs: what the probes need stays open -------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _schema_apis() -> list[str]:
    schema = json.loads((hs.CHART / "values.schema.json").read_text())
    apis: list[str] = schema["properties"]["restrictedApis"]["properties"]["apis"]["items"]["enum"]
    return apis


class KeyedHealthTriton(ChartedTriton):
    """Waits for readiness with the admin key, so it also starts when health is restricted."""

    def _get_ok(self, path: str) -> bool:
        try:
            return _get(f"{self.url}{path}", {"admin-key": ADMIN_KEY}) == 200
        except OSError:  # not listening yet
            return False


@pytest.mark.parametrize("restrict_health", [False, True])
def test_probes_answer_whatever_the_schema_lets_you_restrict(
    tmp_path: Path, restrict_health: bool
) -> None:
    """The probes send no admin key. Restricting `health`, which the schema used to accept, makes
    /v2/health/* answer 403 and the kubelet kill the pod (issue 16 item 4): the real server with
    every API the schema allows restricted, and then with health added."""
    apis = _schema_apis()
    assert "health" not in apis and {"inference", "metadata", "model-repository"} <= set(apis)
    extra = chart_args(
        {
            "server": {"loadModels": ["double"]},
            "userFacingModels": ["double"],
            "restrictedApis": {"apis": apis},
        }
    )
    if restrict_health:  # the schema refuses it now, so it is added to the rendered flags
        extra = [
            a.replace(":admin-key=", ",health:admin-key=", 1) if "-restricted-" in a else a
            for a in extra
        ]
    with charted_server(KeyedHealthTriton, make_tiny_repository(tmp_path), extra) as server:
        assert server.process is not None
        live = _get(f"{server.url}/v2/health/live")
        ready = _get(f"{server.url}/v2/health/ready")
        probe_result = probe(liveness_command(server.http_port), server.process.pid)
    if restrict_health:
        assert (live, ready) == (403, 403)
        assert probe_result.returncode == 1 and "not live" in probe_result.stderr
    else:
        assert (live, ready) == (200, 200)
        assert probe_result.returncode == 0, probe_result.stderr


# The chart's default flags on the real repository ---------------------------------------------

DEFAULT_MODELS = ["tokenizer", "text_encoder", "pooling", "text_embedding"]


class ChartedDefaults(ChartedTriton):
    def expected_models(self) -> list[str]:
        return DEFAULT_MODELS


@pytest.fixture(scope="module")
def charted_defaults(model_repository: Path) -> Iterator[LocalTriton]:
    """The real server with the chart's default flags over the repository the image holds."""
    with charted_server(ChartedDefaults, model_repository, chart_args({})) as server:
        yield server


def test_the_defaults_load_the_default_models(charted_defaults: LocalTriton) -> None:
    """The defaults' command line serves their models (issue 16 item 3, with
    tests/test_docker.py for what the image holds)."""
    status, body = _post(f"{charted_defaults.url}/v2/repository/index", {"admin-key": ADMIN_KEY})
    assert status == 200
    states = {m["name"]: m.get("state") for m in json.loads(body)}
    assert {m: states[m] for m in DEFAULT_MODELS} == dict.fromkeys(DEFAULT_MODELS, "READY")
    assert _post(f"{charted_defaults.url}/v2/repository/index")[0] == 403
    assert _get(f"{charted_defaults.url}/v2/health/ready") == 200


def _metrics(server: LocalTriton) -> dict[tuple[str, str], float]:
    """(series name, model) -> value, for the per-model series."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    values: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("#") or 'model="' not in line or "quantile" in line:
            continue
        name, rest = line.split("{", 1)
        model = rest.split('model="', 1)[1].split('"', 1)[0]
        values[(name, model)] = values.get((name, model), 0.0) + float(line.rsplit(" ", 1)[1])
    return values


def test_the_latency_alert_and_the_queue_signal_see_the_cached_ensemble(
    charted_defaults: LocalTriton,
) -> None:
    """What the alerts and the autoscaler read, on the real server after cached and uncached
    requests (issue 16 items 9 and 10):
    - the cached ensemble has no nv_inference_request_summary_us, so a p95 alert cannot see it;
    - the series TritonMeanLatencyOverSLO divides, and the cache-hit series, exist for it;
    - its own queue time stays near 0 while its requests queue in the composing models, so the
      queue signal takes the queue of every model over the ensemble's requests."""
    import concurrent.futures

    import tritonclient.grpc as grpcclient

    before = _metrics(charted_defaults)
    texts = [f"request {i} of the alert test about a cat on a mat" for i in range(48)]

    def embed(text: str) -> None:
        client = grpcclient.InferenceServerClient(charted_defaults.grpc_address)
        try:
            tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
            client.infer("text_embedding", [tensor])
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(embed, texts))  # misses, 8 at a time
        list(pool.map(embed, texts[:16]))  # hits
    after = _metrics(charted_defaults)

    def delta(name: str, model: str) -> float:
        return after.get((name, model), 0.0) - before.get((name, model), 0.0)

    assert ("nv_inference_request_summary_us_count", "text_embedding") not in after
    assert ("nv_inference_request_summary_us_count", "text_encoder") in after
    assert delta("nv_inference_request_success", "text_embedding") == 64
    assert delta("nv_inference_request_duration_us", "text_embedding") > 0
    assert delta("nv_cache_num_hits_per_model", "text_embedding") == 16
    assert delta("nv_cache_num_misses_per_model", "text_embedding") == 48
    composing = sum(
        delta("nv_inference_queue_duration_us", m) for m in ("tokenizer", "text_encoder", "pooling")
    )
    assert delta("nv_inference_queue_duration_us", "text_embedding") < composing / 10


# `helm test` as the rendered test pod runs it, whatever APIs the values restrict ------------


def pod_env(values: dict, server: LocalTriton, key: str = ADMIN_KEY) -> dict[str, str]:
    """The rendered `helm test` pod's environment, pointed at ``server``; the Secret volume that
    holds the release's admin key is laid out in a temporary folder, as the kubelet mounts it."""
    import atexit
    import shutil
    import tempfile

    pod = hs.find(hs.objects(values), "Pod", "-test-inference")
    (container,) = pod["spec"]["containers"]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert (
        env["TRITON_HTTP"] == "demo-tritonctl:8000" and env["TRITON_GRPC"] == "demo-tritonctl:8001"
    )
    env.update(TRITON_HTTP=server.http_address, TRITON_GRPC=server.grpc_address)
    if "TRITON_ADMIN_KEY_FILE" in env:
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        folder, name = env["TRITON_ADMIN_KEY_FILE"].rsplit("/", 1)
        secret = volumes[mounts[folder]]["secret"]
        assert secret["secretName"] == "demo-tritonctl-admin-key", secret
        assert {"key": "admin-key", "path": name} in secret["items"], secret
        scratch = tempfile.mkdtemp(prefix="tritonctl-helm-test-")
        atexit.register(shutil.rmtree, scratch, True)  # no key files left behind
        local = Path(scratch) / name
        local.write_text(key)
        env["TRITON_ADMIN_KEY_FILE"] = str(local)
    return env


#: restrictedApis.apis values the schema accepts, with what each breaks without care.
RESTRICTIONS = {
    # No model-repository: the repository API answers 200 without a key, as configured.
    "trace-logging": ["trace", "logging"],
    # Inference and metadata need the key: the test must send it.
    "every-api": _schema_apis(),
}


@pytest.mark.parametrize("restriction", sorted(RESTRICTIONS))
def test_helm_test_passes_whatever_the_values_restrict(
    model_repository: Path, restriction: str
) -> None:
    """`helm test` on a healthy release passes for every restrictedApis.apis the schema accepts:
    the real server with the chart's flags, and the test script with the rendered pod's env."""
    values = {"restrictedApis": {"apis": RESTRICTIONS[restriction]}}
    with charted_server(ChartedDefaults, model_repository, chart_args(values)) as server:
        env = {**os.environ, **pod_env(values, server)}
        result = subprocess.run(
            [sys.executable, str(HELM_TEST)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout


# The chart's Locust in open loop, run for real ------------------------------------------------


def _locust_requests(server: LocalTriton, env: dict[str, str], tmp_path: Path) -> int:
    """Requests a 2-user, 6 s headless Locust run with ``env`` sent to ``server``'s ``double``."""
    import csv

    run_env = {**os.environ, **env, "TRITON_MODEL": "double", "TRITON_PROTOCOL": "http"}
    tmp_path.mkdir(parents=True, exist_ok=True)
    run_env["HOME"] = str(tmp_path)
    locust = Path(sys.executable).with_name("locust")
    command = [str(locust), f"--locustfile={hs.ROOT / 'loadtests' / 'locustfile.py'}"]
    command += [f"--host=http://{server.http_address}", "--headless", "-u", "2", "-r", "2"]
    command += ["-t", "6s", "--csv", str(tmp_path / "run"), "--only-summary"]
    result = subprocess.run(
        command, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120
    )
    with open(tmp_path / "run_stats.csv") as stats:
        total = next(r for r in csv.DictReader(stats) if r["Name"] == "Aggregated")
    assert int(total["Failure Count"]) == 0, result.stderr[-2000:]
    return int(total["Request Count"])


def test_the_charts_locust_offers_the_arrival_rate(charted: LocalTriton, tmp_path: Path) -> None:
    """locust.arrivalRate makes each user send that many requests per second whatever the
    answers (open loop): the worker's rendered env, in a real Locust run against the real server.
    Closed loop (the default), the same users send as fast as the server answers."""

    def worker_env(values: dict) -> dict[str, str]:
        docs = hs.objects({"locust": {"enabled": True, **values}})
        (worker,) = hs.find(docs, "Deployment", "-locust-worker")["spec"]["template"]["spec"][
            "containers"
        ]
        return {e["name"]: e["value"] for e in worker["env"]}

    open_env = worker_env({"arrivalRate": 10, "arrivals": "constant"})
    assert open_env["LOADTEST_ARRIVAL_RATE"] == "10" and open_env["LOADTEST_ARRIVALS"] == "constant"
    offered = 2 * 10 * 6  # users × rate × seconds
    sent = _locust_requests(charted, open_env, tmp_path / "open")
    assert 0.7 * offered <= sent <= 1.1 * offered, (sent, offered)
    closed_env = worker_env({})
    assert "LOADTEST_ARRIVAL_RATE" not in closed_env
    assert _locust_requests(charted, closed_env, tmp_path / "closed") > 2 * offered


@pytest.mark.parametrize("api", ["inference", "metadata"])
def test_locust_is_refused_where_it_cannot_call_the_server(tmp_path: Path, api: str) -> None:
    """The chart's Locust sends no admin key: with inference or metadata restricted, every
    request of a real Locust run (the rendered worker env) fails, so the chart refuses the pair
    instead of deploying a load test that measures nothing but 403s."""
    restricted = {"restrictedApis": {"apis": [api, "model-repository"]}}
    values = {"server": {"loadModels": ["double"]}, "userFacingModels": ["double"], **restricted}
    with charted_server(
        ChartedTriton, make_tiny_repository(tmp_path), chart_args(values)
    ) as server:
        run_env = {**os.environ, "TRITON_MODEL": "double", "TRITON_PROTOCOL": "http"}
        locust = Path(sys.executable).with_name("locust")
        command = [str(locust), f"--locustfile={hs.ROOT / 'loadtests' / 'locustfile.py'}"]
        command += [f"--host=http://{server.http_address}", "--headless", "-u", "1", "-r", "1"]
        command += ["-t", "3s", "--csv", str(tmp_path / "run"), "--only-summary"]
        result = subprocess.run(
            command, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120
        )
    import csv

    output = result.stdout + result.stderr
    stats_file = tmp_path / "run_stats.csv"
    if stats_file.exists():  # it ran: every request failed
        with open(stats_file) as stats:
            total = next(r for r in csv.DictReader(stats) if r["Name"] == "Aggregated")
        assert int(total["Failure Count"]) == int(total["Request Count"]) > 0, output[-2000:]
    else:  # it could not even read the model's metadata
        assert "restricted" in output, output[-2000:]
    with pytest.raises(Exception, match=f"locust.enabled.*{api}"):
        hs.render({"locust": {"enabled": True}, **restricted})
