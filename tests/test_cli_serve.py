"""`tritonctl serve` as a user runs it: a real process, real signals, real failures.

Every ``serve`` runs under the ``spawn`` fixture (conftest), which kills it and everything it
started when the test ends, whether the test passed or not.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient

from tests.tiny_repository import add_failing_model, make_tiny_repository
from tritonctl.metrics import scrape
from tritonctl.server import free_port

pytestmark = pytest.mark.server

Spawn = Callable[..., "subprocess.Popen[str]"]


def _serve(
    spawn: Spawn, repo: Path, *extra: str, ports: dict[str, int] | None = None
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """``tritonctl serve`` on ``repo``, its log next to the repository (not in the cache)."""
    ports = ports or {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    args = [
        sys.executable, "-m", "tritonctl", "serve", "--model-repository", str(repo),
        "--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"]),
        "--metrics-port", str(ports["metrics"]), "--timeout", "120",
        "--log-file", str(repo.parent / f"serve-{ports['http']}.log"), *extra,
    ]  # fmt: skip
    return spawn(args), ports


def _processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            uses = any(str(path) in part for part in proc.info["cmdline"] or [])
            if uses and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return [p for p in found if p.pid != os.getpid()]


def _tritonservers(serve: subprocess.Popen[str]) -> list[psutil.Process]:
    """The tritonserver started by ``serve`` (a child; it runs in a session of its own)."""
    try:
        children = psutil.Process(serve.pid).children()
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if c.name() == "tritonserver"]


def _wait_ready(grpc_port: int, process: subprocess.Popen[str], timeout: float = 120) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if client.is_server_ready():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.3)
    finally:
        client.close()
    raise TimeoutError("server not ready")


def accepted(metrics_port: int) -> int:
    """Requests add_one has accepted and not answered: executing plus waiting in its queue."""
    metrics = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    executing = sum(s.value for s in metrics.select("tiny_add_one_executing"))
    pending = sum(
        s.value for s in metrics.select("nv_inference_pending_request_count", model="add_one")
    )
    return int(executing + pending)


def wait_accepted(metrics_port: int, futures: list[cf.Future[float]], timeout: float = 60) -> None:
    """Until every request of ``futures`` is inside Triton (or already answered)."""
    deadline = time.monotonic() + timeout
    while (seen := accepted(metrics_port) + sum(f.done() for f in futures)) < len(futures):
        assert time.monotonic() < deadline, f"only {seen} of {len(futures)} accepted"
        time.sleep(0.05)


def test_failing_initialize_exits_nonzero_with_the_models_error(
    tmp_path: Path, spawn: Spawn
) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    add_failing_model(repo)
    process, _ = _serve(spawn, repo)
    out, _ = process.communicate(timeout=180)
    assert process.returncode != 0
    assert "broken_init" in out
    assert "weights are corrupt" in out
    assert not _processes_using(repo)


def test_broken_config_exits_nonzero_naming_the_problem(tmp_path: Path, spawn: Spawn) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    config = repo / "double" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size", "max_batch_sise"))
    process, _ = _serve(spawn, repo)
    out, _ = process.communicate(timeout=180)
    assert process.returncode != 0
    assert "double" in out
    assert "max_batch_sise" in out
    assert not _processes_using(repo)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_answers_every_accepted_request_and_leaves_nothing(
    tmp_path: Path, spawn: Spawn, signum: signal.Signals
) -> None:
    repo = make_tiny_repository(tmp_path / "repo", delay_s=1.5, queue_delay_us=1000)
    process, ports = _serve(spawn, repo, "--exit-timeout", "20")
    _wait_ready(ports["grpc"], process)
    assert _processes_using(repo), "server and stub processes should be running"

    def infer(i: int) -> float:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports['grpc']}")
        try:
            x = grpcclient.InferInput("X", [1, 4], "FP32")
            x.set_data_from_numpy(np.full((1, 4), i, dtype=np.float32))
            return float(client.infer("add_one", [x], client_timeout=60).as_numpy("Y")[0, 0])
        finally:
            client.close()

    with cf.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(infer, i) for i in range(8)]
        wait_accepted(ports["metrics"], futures)  # all 8 inside Triton: executing or queued
        process.send_signal(signum)
        results = [f.result(timeout=60) for f in futures]
    out, _ = process.communicate(timeout=60)
    assert results == [i + 1 for i in range(8)]
    assert process.returncode == 0, out
    assert signum.name in out
    assert "add_one" in out and "READY" in out, "serve prints the loaded models"
    time.sleep(0.5)
    assert not _processes_using(repo), "no server or stub process may be left"


def _kill_server_and_wait(process: subprocess.Popen[str], grpc_port: int) -> int:
    [server] = _tritonservers(process)
    server.kill()
    server.wait(10)
    _wait_ready(grpc_port, process)  # back on the same ports
    [restarted] = _tritonservers(process)
    assert restarted.pid != server.pid
    return restarted.pid


def test_serve_restarts_a_crashed_server_and_logs_why(tmp_path: Path, spawn: Spawn) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    process, ports = _serve(spawn, repo, "--exit-timeout", "5", "--max-restarts", "1")
    _wait_ready(ports["grpc"], process)
    _kill_server_and_wait(process, ports["grpc"])
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    assert "exited unexpectedly (signal SIGKILL)" in out and "restart 1/1 in 1 s" in out, out
    log = (tmp_path / f"serve-{ports['http']}.log").read_text()
    assert log.count("starting tritonserver 2.51.0") == 2, "the crashed start's log is kept"
    assert "exited unexpectedly (signal SIGKILL)" in log, "the restart and its cause are logged"


def test_restarts_back_off_and_their_count_resets_after_healthy_uptime(
    tmp_path: Path, spawn: Spawn
) -> None:
    """Crashes in a row wait longer each time; a crash after healthy uptime starts the count
    again, so a few crashes spread over time never take the service down for good."""
    repo = make_tiny_repository(tmp_path / "repo")
    process, ports = _serve(
        spawn, repo, "--exit-timeout", "5", "--max-restarts", "2", "--healthy-after", "30"
    )
    _wait_ready(ports["grpc"], process)
    _kill_server_and_wait(process, ports["grpc"])  # restart 1/2 after 1 s
    _kill_server_and_wait(process, ports["grpc"])  # well within 30 s: restart 2/2 after 2 s
    time.sleep(31)  # healthy for longer than --healthy-after
    _kill_server_and_wait(process, ports["grpc"])  # the count started again: restart 1/2
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    restarts = re.findall(r"restart (\d)/2 in (\d+) s", out)
    assert restarts == [("1", "1"), ("2", "2"), ("1", "1")], out
    assert "no restarts left" not in out
    assert process.returncode == 0, out


def test_no_restarts_left_after_crashes_in_a_row(tmp_path: Path, spawn: Spawn) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    process, ports = _serve(spawn, repo, "--exit-timeout", "5", "--max-restarts", "0")
    _wait_ready(ports["grpc"], process)
    [server] = _tritonservers(process)
    server.kill()
    out, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "exited unexpectedly (signal SIGKILL)" in out and "no restarts left" in out, out


def test_sigkill_of_serve_leaves_no_server_behind(tmp_path: Path, spawn: Spawn) -> None:
    """The server gets SIGTERM when serve dies (PR_SET_PDEATHSIG): no orphan keeps the ports,
    and a new serve on the same ports starts."""
    repo = make_tiny_repository(tmp_path / "repo")
    process, ports = _serve(spawn, repo, "--exit-timeout", "5")
    _wait_ready(ports["grpc"], process)
    [server] = _tritonservers(process)
    group = [server.pid, *(c.pid for c in server.children())]
    process.kill()
    process.wait(10)
    _, alive = psutil.wait_procs([psutil.Process(p) for p in group], timeout=30)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
    again, _ = _serve(spawn, repo, "--exit-timeout", "5", ports=ports)
    _wait_ready(ports["grpc"], again)


def test_a_second_serve_on_taken_ports_names_the_holder(tmp_path: Path, spawn: Spawn) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    first, ports = _serve(spawn, repo, "--exit-timeout", "5")
    _wait_ready(ports["grpc"], first)
    [server] = _tritonservers(first)
    second, _ = _serve(spawn, repo, "--exit-timeout", "5", ports=ports)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 1, out
    assert f"HTTP port {ports['http']} on 127.0.0.1 is already in use by pid {server.pid}" in out
    assert "tritonserver" in out
    assert "not loaded" not in out
    assert first.poll() is None, "the first server is untouched"


@pytest.mark.parametrize("extra", [[], ["--no-restrict"]])
def test_explicit_model_control_always_needs_a_key(tmp_path: Path, extra: list[str]) -> None:
    """An open load API runs any caller's model.py: --no-restrict must not open it (SECURITY.md)."""
    repo = make_tiny_repository(tmp_path / "repo")
    refused = subprocess.run(
        [sys.executable, "-m", "tritonctl", "serve", "--model-repository", str(repo),
         "--model-control", "explicit", *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    out = refused.stderr + refused.stdout
    assert refused.returncode == 2 and "--admin-key-file" in out, out


def test_serve_never_shows_an_admin_key(tmp_path: Path, spawn: Spawn) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    refused = subprocess.run(
        [sys.executable, "-m", "tritonctl", "serve", "--model-repository", str(repo),
         "--admin-key", "on-the-command-line"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "--admin-key-file" in refused.stderr + refused.stdout

    key = "k-" + os.urandom(8).hex()
    key_file = tmp_path / "admin.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    process, ports = _serve(spawn, repo, "--exit-timeout", "5", "--admin-key-file", str(key_file))
    _wait_ready(ports["grpc"], process)
    [server] = _tritonservers(process)
    assert key not in " ".join(psutil.Process(process.pid).cmdline()), "not on serve's argv"
    # The documented limit, which serve warns about: Triton takes the key on its command line.
    assert f"admin-key={key}" in " ".join(server.cmdline())
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert key not in out, "the key is never printed"
    assert "admin-key" in out
    warned = "every local user can read" in " ".join(out.split())
    assert warned or "hidepid" in Path("/proc/mounts").read_text()
