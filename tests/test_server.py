"""The real tritonserver from the nvidia-pytriton wheel, on a tiny repository made by code."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.tiny_repository import make_tiny_repository
from tritonctl import TRITON_VERSION
from tritonctl.server import (
    LocalTriton,
    PortInUseError,
    ServerError,
    free_port,
    new_admin_key,
)

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_repository(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny(repo: Path) -> Iterator[LocalTriton]:
    """The defaults: no admin key, poll mode."""
    with LocalTriton(repo, exit_timeout=5) as server:
        yield server


@pytest.fixture(scope="module")
def keyed(repo: Path) -> Iterator[LocalTriton]:
    with LocalTriton(repo, models=["double"], exit_timeout=5, admin_key=new_admin_key()) as server:
        yield server


def _infer_http(server: LocalTriton, model: str, x: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_address)
    try:
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer(model, [inp]).as_numpy("Y")
    finally:
        client.close()


def _infer_grpc(server: LocalTriton, model: str, x: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        inp = grpcclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer(model, [inp]).as_numpy("Y")
    finally:
        client.close()


@pytest.mark.parametrize("infer", [_infer_http, _infer_grpc], ids=["http", "grpc"])
@pytest.mark.parametrize(
    "model, expected", [("double", lambda x: 2 * x), ("add_one", lambda x: x + 1)]
)
def test_serves_onnx_and_python_models(tiny: LocalTriton, infer, model: str, expected) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    np.testing.assert_allclose(infer(tiny, model, x), expected(x))


def test_models_are_ready_and_listed(tiny: LocalTriton) -> None:
    states = {s.name: s.state for s in tiny.model_states()}
    assert states == {"double": "READY", "add_one": "READY"}


def test_the_running_server_is_2_51_0(tiny: LocalTriton) -> None:
    assert tiny.metadata()["version"] == TRITON_VERSION == "2.51.0"
    client = grpcclient.InferenceServerClient(tiny.grpc_address)
    try:
        assert client.get_server_metadata(as_json=True)["version"] == "2.51.0"
    finally:
        client.close()


def test_every_listening_socket_is_on_loopback(tiny: LocalTriton) -> None:
    """The sockets the kernel holds, not the command line: HTTP, gRPC and metrics, nothing else."""
    assert tiny.process is not None
    listening = set()
    for pid in tiny.group_pids():
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN:
                # gRPC listens on an IPv6 socket bound to the v4-mapped loopback address.
                listening.add((conn.laddr.ip.removeprefix("::ffff:"), conn.laddr.port))
    assert listening == {
        ("127.0.0.1", tiny.http_port),
        ("127.0.0.1", tiny.grpc_port),
        ("127.0.0.1", tiny.metrics_port),
    }


def _http(server: LocalTriton, path: str, body: bytes | None, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"{server.url}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


HTTP_ADMIN_CALLS = [
    ("/v2/repository/index", b"{}"),
    ("/v2/repository/models/add_one/unload", b"{}"),
    ("/v2/systemsharedmemory/status", None),
    ("/v2/trace/setting", None),
    ("/v2/logging", None),
]


def _grpc_admin_calls(client: grpcclient.InferenceServerClient) -> list:
    return [
        lambda h: client.get_model_repository_index(headers=h),
        lambda h: client.unload_model("add_one", headers=h),
        lambda h: client.get_system_shared_memory_status(headers=h),
        lambda h: client.get_trace_settings(headers=h),
        lambda h: client.get_log_settings(headers=h),
    ]


def _restricted_flag(server: LocalTriton, flag: str) -> tuple[str, str]:
    """(header, value) from the running server's own command line (what ``ps`` shows)."""
    assert server.process is not None
    argv = psutil.Process(server.process.pid).cmdline()
    (arg,) = [a for a in argv if a.startswith(f"--{flag}=")]
    setting = arg.split(":", 1)[1]
    header, value = setting.rsplit("=", 1)
    return header, value


def test_admin_apis_are_closed_to_every_caller_without_a_key(tiny: LocalTriton) -> None:
    """No key exists: what ``ps`` shows names a header no HTTP or gRPC client can send."""
    header, value = _restricted_flag(tiny, "http-restricted-api")
    assert "admin-key" not in header
    for path, body in HTTP_ADMIN_CALLS:
        assert _http(tiny, path, body, {}) == 403, path
        assert _http(tiny, path, body, {"admin-key": value}) == 403, path
        with pytest.raises(ValueError, match="Invalid header name"):
            _http(tiny, path, body, {header: value})
    # Sent raw, the name stops at its first ':', so the server sees another header.
    name, rest = header.split(":", 1)
    with socket.create_connection(("127.0.0.1", tiny.http_port), timeout=10) as sock:
        sock.sendall(
            f"GET /v2/logging HTTP/1.1\r\nHost: x\r\n{header}: {value}\r\n"
            f"{name}: {rest}={value}\r\nConnection: close\r\n\r\n".encode()
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 403"), "raw request was not refused"

    grpc_header, grpc_value = _restricted_flag(tiny, "grpc-restricted-protocol")
    client = grpcclient.InferenceServerClient(tiny.grpc_address)
    try:
        for call in _grpc_admin_calls(client):
            for headers in (None, {"admin-key": grpc_value}, {grpc_header.split(":")[0]: "x"}):
                with pytest.raises(InferenceServerException) as refused:
                    call(headers)
                assert "restricted" in str(refused.value), refused.value
            # Triton expects it as "triton-grpc-protocol-<name>": illegal either way.
            for name in (grpc_header, f"triton-grpc-protocol-{grpc_header}"):
                with pytest.raises(ValueError, match="metadata was invalid"):
                    call({name: grpc_value})
    finally:
        client.close()
    assert {s.name for s in tiny.model_states()} == {"add_one", "double"}, "nothing unloaded"


def test_an_admin_key_opens_the_admin_apis(keyed: LocalTriton) -> None:
    key = keyed.admin_key
    assert key
    for path, body in HTTP_ADMIN_CALLS:
        if "unload" in path:
            continue
        assert _http(keyed, path, body, {}) == 403, path
        assert _http(keyed, path, body, {"admin-key": "wrong"}) == 403, path
        assert _http(keyed, path, body, {"admin-key": key}) == 200, path
    client = grpcclient.InferenceServerClient(keyed.grpc_address)
    grpc_key = keyed.grpc_admin_headers
    assert grpc_key == {"triton-grpc-protocol-admin-key": key}
    try:
        for call in _grpc_admin_calls(client)[2:]:
            for wrong in (None, {"admin-key": key}, {"triton-grpc-protocol-admin-key": "x"}):
                with pytest.raises(InferenceServerException, match="restricted"):
                    call(wrong)
            call(grpc_key)
        assert client.get_model_repository_index(headers=grpc_key, as_json=True)
    finally:
        client.close()


def test_the_load_api_is_off_even_with_the_key(keyed: LocalTriton) -> None:
    """Poll mode: Triton itself refuses load and unload, so a leaked key cannot load code."""
    assert _http(keyed, "/v2/repository/models/add_one/load", b"{}", keyed.admin_headers) == 503
    client = grpcclient.InferenceServerClient(keyed.grpc_address)
    try:
        for call in (client.load_model, client.unload_model):
            with pytest.raises(InferenceServerException, match="not allowed if polling"):
                call("double", headers=keyed.grpc_admin_headers)
    finally:
        client.close()
    assert keyed.model_ready("double") and not keyed.model_ready("add_one")


def test_explicit_model_control_needs_a_key(repo: Path) -> None:
    with pytest.raises(ValueError, match="admin_key"):
        LocalTriton(repo, model_control="explicit")


def test_stubs_see_their_run_dir_and_their_regions_are_private(tiny: LocalTriton) -> None:
    assert tiny.run is not None and tiny.run.path.is_dir()
    stubs = [pid for pid, _ in tiny.stubs()]
    assert len(stubs) == 3, "add_one and two double instances run in stubs"
    for pid in stubs:
        assert psutil.Process(pid).environ()["TRITONCTL_RUN_DIR"] == str(tiny.run.path)
    regions = tiny.run.regions()
    assert len(regions) == len(stubs)
    for region in regions:
        assert region.stat().st_mode & 0o777 == 0o600, region


def test_a_reloaded_models_new_region_is_private_too(tiny: LocalTriton) -> None:
    """A reload starts new stubs, and the Python backend makes their regions 0644 again: they
    must not stay readable by other users (they did, until a watchdog check happened to run)."""
    assert tiny.run is not None
    before = set(tiny.run.regions())
    loads = tiny.loads_completed("add_one")
    tiny.reload("add_one")
    deadline = time.monotonic() + 120
    while tiny.loads_completed("add_one") == loads or len(tiny.stubs()) != 3:
        assert time.monotonic() < deadline, "add_one was not reloaded within 120 s"
        time.sleep(0.2)
    new = set(tiny.run.regions()) - before
    assert new, "the reload made no new region"
    # The guard chmods within milliseconds; the 5 s only absorbs a loaded CI machine.
    deadline = time.monotonic() + 5
    while (readable := [r for r in new if r.exists() and r.stat().st_mode & 0o077]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not readable, [f"{r.name}: {oct(r.stat().st_mode & 0o777)}" for r in readable]


def test_the_watchdog_replaces_a_stub_that_died_before_it_ever_saw_it(tiny: LocalTriton) -> None:
    """A stub killed right after a load, before any watchdog round saw it alive (a round a
    second, later on a loaded machine), is still a lost instance: Triton leaves it a zombie
    and keeps reporting the model READY. It used to stay dead (CI: test_faults'
    test_the_watchdog_leaves_an_admins_unload_alone got no answer in 30 s)."""
    from tritonctl.watchdog import StubWatchdog, is_dead

    watchdog = StubWatchdog(tiny)  # no round yet: it has seen no stub
    [stub] = [pid for pid, argv in tiny.stubs() if "/add_one/" in argv[1] and not is_dead(pid)]
    os.kill(stub, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not is_dead(stub):
        assert time.monotonic() < deadline, "the stub did not die"
        time.sleep(0.05)
    assert tiny.model_ready("add_one"), "Triton reports the model READY with its stub dead"
    report = watchdog.check()
    assert any("reloaded add_one" in line for line in report), report
    x = np.ones((1, 4), dtype=np.float32)
    assert (_infer_grpc(tiny, "add_one", x) == 2).all()
    assert watchdog.check() == [], "nothing more to do"


def test_the_watchdog_leaves_a_smaller_instance_count_alone(repo: Path, tmp_path: Path) -> None:
    """Lowering a model's instance count in the served repository (poll mode) makes Triton stop
    one of its stubs. That is no crash: the watchdog used to take it for one, reload the model
    expecting the old count and, never getting it, raise ``RecoveryError`` after its timeout,
    upon which ``tritonctl serve`` restarts the whole server."""
    from tritonctl.model_config import load_config, save_config
    from tritonctl.watchdog import RecoveryError, StubWatchdog, stubs

    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = load_config(copy / "add_one")
    config.instance_group[0].count = 2
    save_config(config, copy / "add_one")
    with LocalTriton(copy, models=["add_one"], exit_timeout=5) as server:
        watchdog = StubWatchdog(server, reload_timeout=20)
        assert len(watchdog.snapshot()) == 2
        loads = server.loads_completed("add_one")
        config.instance_group[0].count = 1
        save_config(config, copy / "add_one")
        deadline = time.monotonic() + 60
        while len(stubs(server)) != 1 or server.loads_completed("add_one") == loads:
            assert time.monotonic() < deadline, "Triton did not apply the new count"
            time.sleep(0.2)
        try:
            report = watchdog.check()
        except RecoveryError as error:
            pytest.fail(f"a smaller instance count was taken for a crash: {error}")
        assert not any("reloaded" in line for line in report), report
        x = np.ones((1, 4), dtype=np.float32)
        assert (_infer_grpc(server, "add_one", x) == 2).all()


@pytest.mark.parametrize("model", ["double", "add_one"])
def test_dynamic_batching_forms_batches(tiny: LocalTriton, model: str) -> None:
    client = grpcclient.InferenceServerClient(tiny.grpc_address)

    def stats() -> tuple[int, int]:
        s = client.get_inference_statistics(model_name=model, as_json=True)["model_stats"][0]
        # A reloaded model starts from zero, and JSON leaves out fields that are zero.
        return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))

    before = stats()

    def one(i: int) -> np.ndarray:
        return _infer_grpc(tiny, model, np.full((1, 4), i, dtype=np.float32))

    with cf.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    after = stats()
    client.close()
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 64
    assert executions < inferences, f"no batching: {executions} executions for {inferences}"
    for i, y in enumerate(results):
        assert y[0, 0] == (2 * i if model == "double" else i + 1)


# Own servers: stop, crash, ports, parent death -------------------------------------------


def test_a_crashed_server_leaves_no_process_region_or_folder(repo: Path) -> None:
    server = LocalTriton(repo, exit_timeout=5)
    with server:
        assert server.process is not None and server.run is not None
        regions, run_dir = server.run.regions(), server.run.path
        assert len(regions) == 3
        group = server.group_pids()
        server.process.kill()  # no graceful exit: Triton unlinks nothing itself
        server.process.wait(10)
    assert not [r for r in regions if r.exists()], "the dead server's stub regions were unlinked"
    assert not run_dir.exists()
    assert not [p for p in group if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_the_log_is_appended_across_starts(repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = LocalTriton(repo, models=["double"], exit_timeout=5, log_file=log)
    for _ in range(2):
        with server:
            pass
    text = log.read_text()
    assert text.count("starting tritonserver 2.51.0") == 2
    assert text.count("successfully loaded 'double'") == 2, "the first start's lines are kept"


def test_a_taken_port_is_named_with_its_holder(repo: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = LocalTriton(repo, models=["double"], http_port=port, exit_timeout=5)
        with pytest.raises(PortInUseError) as taken:
            server.start()
    message = str(taken.value)
    assert f"HTTP port {port} on 127.0.0.1 is already in use" in message
    assert f"by pid {os.getpid()} (" in message, message
    assert server.process is None, "nothing was started"


def test_a_picked_port_taken_before_the_start_is_picked_again(repo: Path) -> None:
    server = LocalTriton(repo, models=["double"], exit_timeout=5)
    taken = server.grpc_port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with server:
            assert server.grpc_port != taken
            assert server.is_ready()


def test_free_port_never_hands_out_a_port_twice() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_a_server_started_from_a_short_lived_thread_keeps_running(repo: Path) -> None:
    """PR_SET_PDEATHSIG fires when the forking *thread* exits: servers are forked elsewhere."""
    server = LocalTriton(repo, models=["double"], exit_timeout=5)
    try:
        starter = threading.Thread(target=server.start)
        starter.start()
        starter.join()
        time.sleep(1.0)
        assert server.running and server.is_ready()
    finally:
        server.stop()


CHILD = """
import sys, time
from tritonctl.server import LocalTriton
server = LocalTriton(sys.argv[1], models=["double"], exit_timeout=5).start()
print(server.process.pid, server.http_port, flush=True)
time.sleep(600)
"""


def test_the_server_dies_with_the_process_that_started_it(repo: Path) -> None:
    """SIGKILL of the parent (no cleanup code runs): the server must not keep the port."""
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(repo)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pid, port = (int(v) for v in parent.stdout.readline().split())
        assert psutil.pid_exists(pid)
        parent.kill()
        parent.wait(10)
        server = psutil.Process(pid)
        server.wait(30)  # SIGTERM from the kernel, then Triton's own graceful exit
    except BaseException:
        parent.kill()
        raise
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))  # the port is free again


def test_model_states_read_from_the_index_with_a_key(keyed: LocalTriton) -> None:
    states = {s.name: s.state for s in keyed.model_states()}
    assert states == {"double": "READY"}
    index = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{keyed.url}/v2/repository/index", data=b"{}", headers=keyed.admin_headers
            ),
            timeout=10,
        ).read()
    )
    assert [m["name"] for m in index] == ["double"], "the view holds only the served models"


def test_a_model_triton_skips_fails_the_start_at_once(repo: Path, tmp_path: Path) -> None:
    """A model with no version folder is left out of Triton's index (not UNAVAILABLE) and the
    server never gets ready: the start fails as soon as Triton has printed its model table,
    naming the model and the reason, instead of waiting out the timeout."""
    broken = tmp_path / "repo"
    shutil.copytree(repo, broken, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(broken / "double", broken / "no_version")
    shutil.rmtree(broken / "no_version" / "1")
    config = broken / "no_version" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "double"', 'name: "no_version"'))
    server = LocalTriton(broken, exit_timeout=5)
    started = time.monotonic()
    reason = r"(No model version was found|at least one version must be available)"
    with pytest.raises(ServerError, match=rf"no_version: .*{reason}"):
        server.start(timeout=150)
    assert time.monotonic() - started < 120, "failed fast, not at the timeout"


def test_a_python_model_without_model_py_fails_the_start_at_once(
    repo: Path, tmp_path: Path
) -> None:
    """Triton 2.51 never finishes loading a Python model whose ``model.py`` is missing: the stub
    it runs to auto-complete the config logs "Python model file not found" and exits, and the
    load waits forever (no model table, never ready). The start must fail on that line, naming
    the model, instead of waiting out its timeout."""
    broken = tmp_path / "repo"
    shutil.copytree(repo, broken, ignore=shutil.ignore_patterns("__pycache__"))
    (broken / "add_one" / "1" / "model.py").unlink()
    server = LocalTriton(broken, exit_timeout=5)
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"add_one: .*Python model file not found"):
        server.start(timeout=150)
    assert time.monotonic() - started < 60, "failed fast, not at the timeout"
    assert not server.running


def test_a_run_folder_is_kept_while_its_server_outlives_its_owner() -> None:
    """A killed owner's server may run on (its graceful exit, loading or unloading models) and
    make regions: its folder, by which the regions are found, goes only once it is gone too.
    A process with the folder in ``TRITONCTL_RUN_DIR`` stands in for that server here."""
    from tritonctl import rundir

    run = rundir.RunDir.create(label="outlived")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run.path / "owner").write_text(f"{dead.pid}\n")
    region = rundir.SHM_DIR / f"{run.shm_prefix}test"
    region.write_bytes(b"\0" * 16)
    server = subprocess.Popen(["sleep", "60"], env={**os.environ, rundir.ENV_VAR: str(run.path)})
    try:
        assert run.path not in rundir.remove_stale()
        assert run.path.is_dir() and region.exists(), "removed while its server still ran"
    finally:
        server.kill()
        server.wait()
    try:
        assert run.path in rundir.remove_stale()
        assert not run.path.exists() and not region.exists()
    finally:
        run.remove()
