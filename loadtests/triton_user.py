"""A Locust ``User`` that sends inference requests to Triton over gRPC or HTTP.

Closed loop (the default): each user sends its next request when the previous one is answered.
Open loop (``LOADTEST_ARRIVAL_RATE`` > 0): each user sends that many requests per second on the
schedule of ``arrivals.py`` (``LOADTEST_ARRIVALS``: ``poisson`` or ``constant``), whatever the
answers. Its scheduler never waits: each request is noted as due on time and queued for one of
``LOADTEST_MAX_IN_FLIGHT`` (default 256) sending greenlets; one that waits for a free sender
keeps its due time, and one still queued when the run ends is reported as unanswered.

Each request fires one Locust ``request`` event: ``request_type`` is the protocol, ``name`` the
model, ``response_time`` the latency in milliseconds from the intended send time (closed loop:
from the actual send), and ``context`` carries ``sent`` (that time, Unix seconds) and
``service_ms`` (actual send to answer). Transport errors and Triton's error responses
(``InferenceServerException``) are failures carrying Triton's message.

The request's tensors come from the model's own metadata (names, datatypes, shapes), so any
model works; BYTES inputs get texts or PNG images (see ``payloads``), numeric ones random data.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import arrivals
import gevent.lock
import gevent.pool
import gevent.queue
import measurement
import numpy as np
import payloads
from locust import User, constant, task
from tritonclient.utils import InferenceServerException, triton_to_np_dtype


class TritonRequestError(Exception):
    """A failed inference, with Triton's status and message (what Locust's failure table shows)."""


def split_host(host: str | None, protocol: str) -> str:
    """``host:port`` from Locust's ``--host`` (``grpc://h:8001``, ``http://h:8000`` or ``h:port``)."""
    if not host:
        return "127.0.0.1:8001" if protocol == "grpc" else "127.0.0.1:8000"
    if "://" not in host:
        return host.rstrip("/")
    parts = urlsplit(host)
    if parts.port is None:
        return f"{parts.hostname}:{8001 if protocol == 'grpc' else 8000}"
    return f"{parts.hostname}:{parts.port}"


#: Clients not yet closed. Closing a gRPC channel needs gevent's loop running: left to
#: ``__del__`` at interpreter exit it can hang the process for good.
_OPEN_CLIENTS: list[Any] = []


def close_client(client: Any) -> None:
    """Close ``client`` now, and make the close its ``__del__`` will attempt a no-op."""
    if client in _OPEN_CLIENTS:
        _OPEN_CLIENTS.remove(client)
    with contextlib.suppress(Exception):  # best effort: the process is ending
        client.close()
    client.close = lambda: None


def close_all_clients() -> None:
    """Close the clients of users that were stopped mid-request (their ``on_stop`` never ran)."""
    while _OPEN_CLIENTS:
        close_client(_OPEN_CLIENTS[-1])


ARRIVAL_RATE = float(os.environ.get("LOADTEST_ARRIVAL_RATE", "0") or 0)
ARRIVALS = os.environ.get("LOADTEST_ARRIVALS", "poisson").lower()
MAX_IN_FLIGHT = int(os.environ.get("LOADTEST_MAX_IN_FLIGHT", "256") or 256)


def make_client(protocol: str, address: str, connections: int = 1) -> Any:
    """A client; ``connections`` is the HTTP connection pool (gRPC multiplexes one channel)."""
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(address)
    if protocol == "http":
        import tritonclient.http as httpclient

        # Network timeouts well above any latency objective, so slow answers count as slow, not lost.
        return httpclient.InferenceServerClient(
            address, connection_timeout=30, network_timeout=120, concurrency=connections
        )
    raise ValueError(f"unknown protocol {protocol!r}: use grpc or http")


@dataclass(frozen=True)
class InputSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


#: (protocol, address, model, batch) -> its inputs; filled by the first user of each process.
_SPECS: dict[tuple[str, str, str, int], list[InputSpec]] = {}
#: One user at a time prepares: the first builds the payload pools (a second or so of CPU, with
#: imports that yield to other greenlets), the rest then find them cached instead of all
#: building them at once and stalling the whole process.
_PREPARE = gevent.lock.BoundedSemaphore()

#: Inputs assumed for models whose metadata cannot be read (e.g. a model that does not exist):
#: requests still go out, and fail with Triton's own error.
DEFAULT_INPUTS = {
    "digit_classifier": [InputSpec("IMAGE", "BYTES", (-1, 1))],
}
TEXT_INPUT = [InputSpec("TEXT", "BYTES", (-1, 1))]


def concrete_shape(shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    """Metadata shape with the batch dimension (the first -1) set to ``batch``, other -1 to 1."""
    out: list[int] = []
    for i, dim in enumerate(shape):
        out.append((batch if i == 0 else 1) if dim < 0 else dim)
    return tuple(out)


def model_inputs(
    client: Any, protocol: str, address: str, model: str, batch: int
) -> list[InputSpec]:
    key = (protocol, address, model, batch)
    if key not in _SPECS:
        try:
            if protocol == "grpc":
                meta = client.get_model_metadata(model, as_json=True)
            else:
                meta = client.get_model_metadata(model)
            specs = [
                InputSpec(item["name"], item["datatype"], tuple(int(d) for d in item["shape"]))
                for item in meta.get("inputs", [])
            ]
        except InferenceServerException:
            specs = DEFAULT_INPUTS.get(model, TEXT_INPUT)
        _SPECS[key] = [InputSpec(s.name, s.datatype, concrete_shape(s.shape, batch)) for s in specs]
    return _SPECS[key]


def build_inputs(protocol: str, specs: list[InputSpec], rng: random.Random) -> list[Any]:
    if protocol == "grpc":
        from tritonclient.grpc import InferInput
    else:
        from tritonclient.http import InferInput  # type: ignore[assignment]
    inputs = []
    for spec in specs:
        if spec.datatype == "BYTES":
            data = payloads.sample_bytes(spec.name, spec.shape, rng)
        else:
            data = payloads.sample_numeric(
                spec.shape, np.dtype(triton_to_np_dtype(spec.datatype)), rng
            )
        tensor = InferInput(spec.name, list(spec.shape), spec.datatype)
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def response_bytes(result: Any, protocol: str) -> int:
    """Bytes of all output tensors (decoding them also checks the answer is well-formed)."""
    if protocol == "grpc":
        names = [o.name for o in result.get_response().outputs]
    else:
        names = [o["name"] for o in result.get_response().get("outputs", [])]
    total = 0
    for name in names:
        array = result.as_numpy(name)
        if array is not None:
            total += sum(len(x) for x in array.flat) if array.dtype == np.object_ else array.nbytes
    return total


class TritonUser(User):
    """Closed-loop client by default; an open-loop sender when ``LOADTEST_ARRIVAL_RATE`` is set."""

    abstract = True
    model: str = "text_embedding"
    protocol: str = "grpc"
    batch: int = int(os.environ.get("TRITON_BATCH", "1"))
    wait_time = constant(float(os.environ.get("TRITON_WAIT_S", "0")))
    arrival_rate: float = ARRIVAL_RATE

    def on_start(self) -> None:
        self.address = split_host(self.host, self.protocol)
        open_loop = self.arrival_rate > 0
        self.client = make_client(self.protocol, self.address, MAX_IN_FLIGHT if open_loop else 1)
        _OPEN_CLIENTS.append(self.client)
        self.rng = random.Random(id(self))
        self.senders: gevent.pool.Group | None = None
        self.queue: gevent.queue.Queue[tuple[list[Any], float, int]] = gevent.queue.Queue()
        with _PREPARE:
            self.specs = model_inputs(
                self.client, self.protocol, self.address, self.model, self.batch
            )
            build_inputs(self.protocol, self.specs, self.rng)  # builds the payload pools, untimed
        if open_loop:
            self.senders = gevent.pool.Group()
            for _ in range(MAX_IN_FLIGHT):
                self.senders.spawn(self._sender)

    def on_stop(self) -> None:
        if self.senders is not None:
            # Requests still out or queued stay in measurement's table: reported as unanswered.
            # Wait for the senders to die first: one still running after the close would fail
            # on the closed channel and be counted as an error instead.
            self.senders.kill(block=True, timeout=5)
        close_client(self.client)

    def _sender(self) -> None:
        while True:
            inputs, sent, token = self.queue.get()
            self.send(inputs, sent, token)

    @task
    def infer(self) -> None:
        if self.senders is None:
            self.send(build_inputs(self.protocol, self.specs, self.rng))
            return
        # Open loop: this task never returns; Locust kills it when the run stops.
        for sent in arrivals.send_times(self.arrival_rate, ARRIVALS, time.time(), self.rng):
            inputs = build_inputs(self.protocol, self.specs, self.rng)  # while waiting
            delay = sent - time.time()
            if delay > 0:
                gevent.sleep(delay)
            self.queue.put((inputs, sent, measurement.request_due(sent)))  # never blocks

    def send(self, inputs: list[Any], sent: float | None = None, token: int | None = None) -> None:
        """One request; its latency counts from ``sent`` (when it was due), else from now."""
        exception: Exception | None = None
        length = 0
        start = time.time()
        if sent is None:
            sent = start
            token = measurement.request_due(sent)
        try:
            result = self.client.infer(self.model, inputs)
            end = time.time()
            length = response_bytes(result, self.protocol)
        except InferenceServerException as error:
            end = time.time()
            status = error.status()
            message = error.message() or str(error)
            exception = TritonRequestError(f"{status}: {message}" if status else message)
        except Exception as error:  # noqa: BLE001 - transport failures are failed requests too
            end = time.time()
            exception = TritonRequestError(f"{type(error).__name__}: {error}")
        if token is not None:
            measurement.request_done(token)
        self.environment.events.request.fire(
            request_type=self.protocol,
            name=self.model,
            response_time=(end - sent) * 1000.0,
            response_length=length,
            exception=exception,
            context={"sent": sent, "service_ms": (end - start) * 1000.0},
        )
