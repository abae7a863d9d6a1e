"""``tritonctl.client`` retries transient failures against the real server, never bad input.

- A request refused for what it is (an empty text: ``INVALID_ARGUMENT`` / 400) reaches the
  server exactly once, with a retry policy (counted in Triton's own statistics).
- A refused connection is retried per the policy, and ``retry=None`` sends once.
- Clients started before the server get their answer once it comes up (both protocols).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.tiny_repository import make_tiny_repository
from tritonctl.client import InferenceError, embed, infer
from tritonctl.retry import RetryPolicy
from tritonctl.server import LocalTriton, free_port

pytestmark = pytest.mark.server

PROTOCOLS = ("grpc", "http")


def _inferences(server: LocalTriton, model: str) -> int:
    """Items ``model`` received (2.51 counts a Python model's error response as a success)."""
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
    finally:
        client.close()
    return sum(int(s.get("inference_count", 0)) for s in stats)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_input_is_sent_exactly_once(triton: LocalTriton, protocol: str) -> None:
    url = triton.grpc_address if protocol == "grpc" else triton.http_address
    before = _inferences(triton, "tokenizer")
    with pytest.raises(InferenceError, match="empty") as raised:
        embed([""], url, protocol=protocol, retry=RetryPolicy(attempts=5, initial_backoff=0.01))
    assert "gave up" not in str(raised.value)
    assert _inferences(triton, "tokenizer") == before + 1
    # The same client still answers valid requests.
    assert embed(["a valid sentence"], url, protocol=protocol).shape == (1, 384)


def _x(protocol: str, value: float = 1.0) -> object:
    import tritonclient.http as httpclient

    module = grpcclient if protocol == "grpc" else httpclient
    x = module.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.full((1, 4), value, dtype=np.float32))
    return x


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refused_connection_is_retried_unless_turned_off(protocol: str) -> None:
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    policy = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02)
    with pytest.raises(InferenceError, match="gave up after 3 attempts"):
        infer(url, "add_one", [_x(protocol)], ["Y"], protocol, retry=policy)
    with pytest.raises((InferenceError, OSError)) as once:
        infer(url, "add_one", [_x(protocol)], ["Y"], protocol, retry=None)
    assert "gave up" not in str(once.value)


def test_clients_started_before_the_server_get_their_answer(tmp_path: Path) -> None:
    repository = make_tiny_repository(tmp_path / "repo")
    server = LocalTriton(
        repository, models=["add_one"], http_port=free_port(), grpc_port=free_port(), exit_timeout=5
    )
    policy = RetryPolicy(attempts=60, initial_backoff=0.1, max_backoff=1.0, deadline=150)
    urls = {"grpc": server.grpc_address, "http": server.http_address}
    starter = threading.Timer(1.0, server.start)
    try:
        with cf.ThreadPoolExecutor(2) as pool:
            started = time.monotonic()
            calls = {
                p: pool.submit(infer, urls[p], "add_one", [_x(p, 2.0)], ["Y"], p, retry=policy)
                for p in PROTOCOLS
            }
            time.sleep(0.5)
            assert not any(c.done() for c in calls.values()), "answered before the server ran"
            starter.start()
            for protocol, call in calls.items():
                y = call.result(timeout=180)["Y"]
                np.testing.assert_array_equal(y, np.full((1, 4), 3.0, np.float32), protocol)
        print(f"\nanswered {time.monotonic() - started:.1f} s after the first attempt")
    finally:
        starter.join()
        server.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_attempt_outlives_the_deadline(tmp_path: Path, protocol: str) -> None:
    """Each attempt gets the time left as its timeout: a model that takes 4 s cannot hold a
    call with a 1 s deadline for 4 s."""
    repository = make_tiny_repository(tmp_path / "repo", delay_s=4.0, queue_delay_us=0)
    with LocalTriton(repository, models=["add_one"], exit_timeout=10) as server:
        url = server.grpc_address if protocol == "grpc" else server.http_address
        started = time.monotonic()
        with pytest.raises(InferenceError):
            infer(url, "add_one", [_x(protocol)], ["Y"], protocol, retry=RetryPolicy(deadline=1.0))
        took = time.monotonic() - started
    assert took < 3.0, f"the call took {took:.1f} s with a 1 s deadline"


def test_the_default_policy_keeps_trying_until_its_deadline() -> None:
    """Replacing a model's instances takes seconds (8 router instances: about 10 s), and each
    attempt on a dead stub fails only after ~1 s: the default policy must keep trying for its
    30 s, not give up after a fixed handful of attempts (it used to stop after 5, ~5.5 s)."""
    from tritonclient.utils import InferenceServerException

    from tritonctl.retry import RetriesExhausted, call_with_retry

    now = [0.0]

    def dead_stub() -> None:
        now[0] += 1.0  # Triton answers "not healthy" after about a second
        raise InferenceServerException("Stub process 'm_0' is not healthy.", "StatusCode.INTERNAL")

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(RetriesExhausted) as gave_up:
        call_with_retry(dead_stub, policy=RetryPolicy(), sleep=sleep, clock=lambda: now[0])
    assert 29.0 <= now[0] <= 30.0 + 1.0, f"gave up after {now[0]:.1f} s"
    assert gave_up.value.attempts >= 12
