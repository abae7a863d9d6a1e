"""`tritonctl serve` as a user runs it: a real process, real signals, real failures."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient

from tests.tiny_repository import add_failing_model, make_tiny_repository
from tritonctl.server import free_port

pytestmark = pytest.mark.server


def _serve(repo: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    args = [
        sys.executable, "-m", "tritonctl", "serve", "--model-repository", str(repo),
        "--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"]),
        "--metrics-port", str(ports["metrics"]), "--timeout", "120", *extra,
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, ports


def _processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(path) in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return [p for p in found if p.pid != os.getpid()]


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


def test_failing_initialize_exits_nonzero_with_the_models_error(tmp_path: Path) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    add_failing_model(repo)
    process, _ = _serve(repo)
    out, _ = process.communicate(timeout=180)
    assert process.returncode != 0
    assert "broken_init" in out
    assert "weights are corrupt" in out
    assert not _processes_using(repo)


def test_broken_config_exits_nonzero_naming_the_problem(tmp_path: Path) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    config = repo / "double" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size", "max_batch_sise"))
    process, _ = _serve(repo)
    out, _ = process.communicate(timeout=180)
    assert process.returncode != 0
    assert "double" in out
    assert "max_batch_sise" in out
    assert not _processes_using(repo)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_answers_every_accepted_request_and_leaves_nothing(
    tmp_path: Path, signum: signal.Signals
) -> None:
    repo = make_tiny_repository(tmp_path / "repo", delay_s=1.5, queue_delay_us=1000)
    process, ports = _serve(repo, "--exit-timeout", "20")
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
        time.sleep(0.7)  # requests are now inside the model's 1.5 s execute
        process.send_signal(signum)
        results = [f.result(timeout=60) for f in futures]
    out, _ = process.communicate(timeout=60)
    assert results == [i + 1 for i in range(8)]
    assert process.returncode == 0, out
    assert signum.name in out
    assert "add_one" in out and "READY" in out, "serve prints the loaded models"
    time.sleep(0.5)
    assert not _processes_using(repo), "no server or stub process may be left"


def test_serve_restarts_a_crashed_server(tmp_path: Path) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    process, ports = _serve(repo, "--exit-timeout", "5", "--max-restarts", "1")
    _wait_ready(ports["grpc"], process)
    [server] = [p for p in _processes_using(repo) if p.name() == "tritonserver"]
    server.kill()
    server.wait(10)
    _wait_ready(ports["grpc"], process)  # back on the same ports
    [restarted] = [p for p in _processes_using(repo) if p.name() == "tritonserver"]
    assert restarted.pid != server.pid
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert "restart 1/1" in out
    assert process.returncode == 0, out
