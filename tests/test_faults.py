"""Faults under load, with `tritonctl serve` as users run it: a killed backend stub, a crashed server.

What Triton 2.51 does (observed here, and asserted below):
- A SIGKILLed Python backend stub is not restarted by Triton. The server and the model still
  report live and ready; each request to that model fails after ~1 s with gRPC ``INTERNAL``
  "Stub process '<instance>' is not healthy.". Other models are unaffected.
- ``tritonctl serve``'s watchdog notices the dead stub within a second and has Triton replace
  the model's instances (touching a marker in its private repository view; no load API is
  open); requests succeed again. Clients that use ``tritonctl.retry``'s defaults see no failure.
- An admin's unload (explicit model control, with the key) is left alone by the watchdog.
- An HTTP request body over ~4 MiB makes tritonserver 2.51 itself die with SIGSEGV (fixed
  upstream later, see SECURITY.md); ``tritonctl serve`` restarts it.
"""

from __future__ import annotations

import compileall
import concurrent.futures as cf
import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.test_cli_serve import Spawn, _serve, _wait_ready, wait_accepted
from tests.tiny_repository import make_tiny_repository
from tritonctl.client import infer as client_infer
from tritonctl.procfs import processes
from tritonctl.retry import RetryPolicy, call_with_retry, is_retryable
from tritonctl.watchdog import STUB_BINARY, _cmdline

pytestmark = pytest.mark.server


def _infer(client: grpcclient.InferenceServerClient, model: str, value: float) -> float:
    x = grpcclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.full((1, 4), value, dtype=np.float32))
    return float(client.infer(model, [x], client_timeout=30).as_numpy("Y")[0, 0])


def _stub_pids(server_pid: int, model: str) -> list[int]:
    found = []
    for pid, fields in processes():
        if fields[1] == str(server_pid):
            argv = _cmdline(pid)
            if argv and argv[0].endswith(STUB_BINARY) and f"/{model}/" in argv[1]:
                found.append(pid)
    return found


def _server_pid(serve_pid: int) -> int:
    """The tritonserver child of the `tritonctl serve` process."""
    for pid, fields in processes():
        if fields[1] == str(serve_pid):
            argv = _cmdline(pid)
            if argv and argv[0].endswith("tritonserver"):
                return pid
    raise LookupError("no tritonserver child")


@pytest.mark.parametrize("crash_in_reload", [False, True], ids=["reload", "server-dies-in-reload"])
def test_killed_stub_fails_fast_then_serve_reloads_the_model(
    tmp_path: Path, spawn: Spawn, crash_in_reload: bool
) -> None:
    repo = make_tiny_repository(tmp_path / "repo", delay_s=0.01, queue_delay_us=500)
    # Bytecode caches already there, as after any earlier run: nothing in the model's folder
    # changes, so a plain load request would be ignored by Triton and the stub stay dead.
    compileall.compile_dir(repo, quiet=2)
    process, ports = _serve(spawn, repo, "--exit-timeout", "5")
    _wait_ready(ports["grpc"], process)
    address = f"127.0.0.1:{ports['grpc']}"
    server_pid = _server_pid(process.pid)
    [stub] = _stub_pids(server_pid, "add_one")

    stop = threading.Event()
    plain: list[tuple[float, str]] = []  # (seconds taken, error or "ok") without retry
    retried: list[float] = []
    helper: list[float] = []  # tritonctl.client.infer with its default policy

    def load(kind: str) -> None:
        client = grpcclient.InferenceServerClient(address)
        i = 0
        while not stop.is_set():
            i += 1
            started = time.monotonic()
            try:
                if kind == "retry":
                    value = call_with_retry(_infer, client, "add_one", i, policy=RetryPolicy())
                    retried.append(value - i)
                elif kind == "helper":
                    x = grpcclient.InferInput("X", [1, 4], "FP32")
                    x.set_data_from_numpy(np.full((1, 4), i, dtype=np.float32))
                    y = client_infer(address, "add_one", [x], ["Y"])["Y"]
                    helper.append(float(y[0, 0]) - i)
                else:
                    assert _infer(client, "add_one", i) == i + 1
                    plain.append((time.monotonic() - started, "ok"))
            except InferenceServerException as error:
                plain.append((time.monotonic() - started, str(error)))
            time.sleep(0.02)
        client.close()

    threads = [threading.Thread(target=load, args=(k,)) for k in ("plain", "retry", "helper")]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    os.kill(stub, signal.SIGKILL)
    if crash_in_reload:  # as tritonserver 2.51 rarely does by itself (seen once in CI)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if [pid for pid in _stub_pids(server_pid, "add_one") if pid != stub]:
                os.kill(server_pid, signal.SIGSEGV)  # the new instance is starting
                break
            time.sleep(0.01)
    client = grpcclient.InferenceServerClient(address)
    during = []
    for i in range(3):  # the other model keeps answering during the outage
        during.append(_infer(client, "double", i))
    deadline, recovered_after = time.monotonic() + 30, None
    while time.monotonic() < deadline and recovered_after is None:
        try:
            _infer(client, "add_one", 0)
            recovered_after = time.monotonic() - deadline + 30
        except InferenceServerException:
            time.sleep(0.1)
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    after = [_infer(client, "add_one", i) for i in range(5)]
    client.close()
    serving_pid = _server_pid(process.pid)
    new_stubs = _stub_pids(serving_pid, "add_one")
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    said = " ".join(out.split())

    assert during == [0.0, 2.0, 4.0]
    assert recovered_after is not None and recovered_after < 15, recovered_after
    assert after == [1.0, 2.0, 3.0, 4.0, 5.0]
    # Rarely (seen once in CI), tritonserver 2.51 itself dies while it retires the instance whose
    # stub was killed; the watchdog then restarts the server, naming the cause and exit status.
    restarted = "the server exited while reloading 'add_one' (" in said
    assert restarted or not crash_in_reload, out
    if restarted:
        assert "restart 1/3" in said and serving_pid != server_pid, out
    else:
        assert "reloaded add_one" in said, out
        assert serving_pid == server_pid
    errors = [(took, e) for took, e in plain if e != "ok"]
    assert errors, "the outage should be visible to a client without retry"
    for took, error in errors:
        refused = restarted and "UNAVAILABLE" in error  # only while the server restarts
        assert ("is not healthy" in error or refused) and took < 5, (took, error)
    assert plain[-1][1] == "ok", "requests succeed again after the reload"
    assert retried and set(retried) == {1.0}, "with retry, every request got its answer"
    assert helper and set(helper) == {1.0}, "the client helper's defaults ride out the reload"
    assert new_stubs and stub not in new_stubs


def _admin(url: str, path: str, key: str) -> int:
    request = urllib.request.Request(f"{url}{path}", data=b"{}", headers={"admin-key": key})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_watchdog_leaves_an_admins_unload_alone(tmp_path: Path, spawn: Spawn) -> None:
    """Explicit model control with a key: an unloaded model stays unloaded (its stub exiting is
    not a crash), and a stub killed after the admin loads the model again is replaced."""
    repo = make_tiny_repository(tmp_path / "repo")
    key_file = tmp_path / "key"
    key_file.write_text("an-admin-key")
    key_file.chmod(0o600)
    process, ports = _serve(
        spawn,
        repo,
        "--exit-timeout",
        "5",
        "--model-control",
        "explicit",
        "--admin-key-file",
        str(key_file),
    )
    _wait_ready(ports["grpc"], process)
    url = f"http://127.0.0.1:{ports['http']}"
    server_pid = _server_pid(process.pid)
    assert _stub_pids(server_pid, "add_one")
    assert _admin(url, "/v2/repository/models/add_one/unload", "an-admin-key") == 200
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports['grpc']}")
    # The watchdog notes what it saw in the server log: wait for its round, not for a time a
    # loaded machine may not give it.
    log = tmp_path / f"serve-{ports['http']}.log"
    deadline = time.monotonic() + 60
    while "no longer reports it READY" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "no watchdog round noticed the unload in 60 s"
        time.sleep(0.2)
    time.sleep(2)  # two more rounds, in which it must not load the model again
    assert not client.is_model_ready("add_one"), "the watchdog must not undo the unload"

    assert _admin(url, "/v2/repository/models/add_one/load", "an-admin-key") == 200
    [stub] = _stub_pids(server_pid, "add_one")
    os.kill(stub, signal.SIGKILL)
    deadline, answer = time.monotonic() + 30, None
    while answer is None and time.monotonic() < deadline:
        try:
            answer = _infer(client, "add_one", 1)
        except InferenceServerException:
            time.sleep(0.2)
    client.close()
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    text = " ".join(out.split())
    assert answer == 2.0, text
    assert "add_one exited and Triton no longer reports it READY" in text, text
    assert text.count("reloaded add_one") == 1, text


def test_oversize_http_body_crashes_triton_251_and_serve_restarts_it(
    tmp_path: Path, spawn: Spawn
) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    process, ports = _serve(spawn, repo, "--exit-timeout", "5", "--max-restarts", "1")
    _wait_ready(ports["grpc"], process)
    body = json.dumps(
        {
            "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}],
            "parameters": {"padding": "x" * (5 << 20)},
        }
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports['http']}/v2/models/double/infer", data=body
    )
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(request, timeout=30)
    time.sleep(1)
    _wait_ready(ports["grpc"], process, timeout=120)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports['grpc']}")
    assert _infer(client, "double", 3) == 6
    client.close()
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert "exited unexpectedly (signal SIGSEGV)" in out and "restart 1/1" in out, out


@pytest.mark.parametrize(
    "status, message, retry",
    [
        ("StatusCode.UNAVAILABLE", "Exceeds maximum queue size", True),
        ("503", "Exceeds maximum queue size", True),
        ("StatusCode.INTERNAL", "Stub process 'add_one_0_0' is not healthy.", True),
        ("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'X'", False),
        ("400", "failed to parse the request JSON buffer", False),
        (
            "StatusCode.NOT_FOUND",
            "Request for unknown model: 'double' has no available versions",
            True,
        ),
        ("StatusCode.NOT_FOUND", "Request for unknown model: 'nope' is not found", False),
    ],
)
def test_what_is_retried(status: str, message: str, retry: bool) -> None:
    assert is_retryable(InferenceServerException(message, status)) is retry


class _Highest(random.Random):
    """A random source that always draws the top of the range."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_refused_connection_is_retried_with_growing_backoff() -> None:
    from tritonctl.retry import RetriesExhausted
    from tritonctl.server import free_port

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{free_port()}")
    policy = RetryPolicy(attempts=5, initial_backoff=0.01, max_backoff=0.5, multiplier=4)
    pauses: list[float] = []
    with pytest.raises(RetriesExhausted) as gave_up:
        call_with_retry(
            _infer, client, "double", 1, policy=policy, sleep=pauses.append, rng=_Highest()
        )
    assert gave_up.value.attempts == 5
    # Each pause's ceiling grows 4x until the cap: the top of each range is what _Highest draws.
    assert pauses == pytest.approx([0.01, 0.04, 0.16, 0.5])
    # With a real random source every pause is drawn from its own, growing range.
    seeded: list[float] = []
    with pytest.raises(RetriesExhausted):
        call_with_retry(
            _infer, client, "double", 1, policy=policy, sleep=seeded.append, rng=random.Random(7)
        )
    client.close()
    reference = random.Random(7)
    assert seeded == [reference.uniform(0, cap) for cap in (0.01, 0.04, 0.16, 0.5)]


def test_bad_input_is_never_retried(tmp_path: Path) -> None:
    from tritonctl.server import LocalTriton

    repo = make_tiny_repository(tmp_path / "repo")
    calls = []
    with LocalTriton(repo, models=["double"], exit_timeout=5) as server:
        client = grpcclient.InferenceServerClient(server.grpc_address)

        def wrong_shape() -> object:
            calls.append(1)
            x = grpcclient.InferInput("X", [1, 3], "FP32")
            x.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
            return client.infer("double", [x])

        with pytest.raises(InferenceServerException) as error:
            call_with_retry(wrong_shape, policy=RetryPolicy(attempts=5))
        client.close()
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert len(calls) == 1


def test_new_requests_during_drain_are_refused_cleanly(tmp_path: Path, spawn: Spawn) -> None:
    """SIGTERM: accepted requests are answered, new ones are refused quickly, nothing is left."""
    from tests.test_cli_serve import _processes_using

    repo = make_tiny_repository(tmp_path / "repo", delay_s=1.5, queue_delay_us=1000)
    process, ports = _serve(spawn, repo, "--exit-timeout", "20")
    _wait_ready(ports["grpc"], process)
    address = f"127.0.0.1:{ports['grpc']}"

    def accepted(i: int) -> float:
        client = grpcclient.InferenceServerClient(address)
        try:
            return _infer(client, "add_one", i)
        finally:
            client.close()

    with cf.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(accepted, i) for i in range(6)]
        wait_accepted(ports["metrics"], futures)  # all 6 inside Triton before the signal
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = []
        for i in range(3):
            client = grpcclient.InferenceServerClient(address)
            started = time.monotonic()
            with pytest.raises(InferenceServerException) as error:
                _infer(client, "double", i)
            refused.append((time.monotonic() - started, error.value))
            client.close()
        results = [f.result(timeout=60) for f in futures]
    out, _ = process.communicate(timeout=60)
    assert results == [i + 1 for i in range(6)]
    for took, error in refused:
        assert took < 2.0, took
        assert is_retryable(error), (error.status(), error.message())
    assert process.returncode == 0, out
    time.sleep(0.5)
    assert not _processes_using(repo)
