"""A Locust ``User`` that sends inference requests to Triton over gRPC or HTTP.

Each request fires one Locust ``request`` event: ``request_type`` is the protocol, ``name`` the
model, ``response_time`` the wall time of ``client.infer`` in milliseconds. Transport errors and
Triton's error responses (``InferenceServerException``) are failures carrying Triton's message.

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

import gevent.lock
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


def make_client(protocol: str, address: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(address)
    if protocol == "http":
        import tritonclient.http as httpclient

        # Network timeouts well above any latency objective, so slow answers count as slow, not lost.
        return httpclient.InferenceServerClient(address, connection_timeout=30, network_timeout=120)
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
    """Closed-loop client: sends the next request as soon as the previous one is answered."""

    abstract = True
    model: str = "text_embedding"
    protocol: str = "grpc"
    batch: int = int(os.environ.get("TRITON_BATCH", "1"))
    wait_time = constant(float(os.environ.get("TRITON_WAIT_S", "0")))

    def on_start(self) -> None:
        self.address = split_host(self.host, self.protocol)
        self.client = make_client(self.protocol, self.address)
        _OPEN_CLIENTS.append(self.client)
        self.rng = random.Random(id(self))
        with _PREPARE:
            self.specs = model_inputs(
                self.client, self.protocol, self.address, self.model, self.batch
            )
            build_inputs(self.protocol, self.specs, self.rng)  # builds the payload pools, untimed

    def on_stop(self) -> None:
        close_client(self.client)

    @task
    def infer(self) -> None:
        inputs = build_inputs(self.protocol, self.specs, self.rng)
        exception: Exception | None = None
        length = 0
        start = time.perf_counter()
        try:
            result = self.client.infer(self.model, inputs)
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            length = response_bytes(result, self.protocol)
        except InferenceServerException as error:
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            status = error.status()
            message = error.message() or str(error)
            exception = TritonRequestError(f"{status}: {message}" if status else message)
        except Exception as error:  # noqa: BLE001 - transport failures are failed requests too
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            exception = TritonRequestError(f"{type(error).__name__}: {error}")
        self.environment.events.request.fire(
            request_type=self.protocol,
            name=self.model,
            response_time=elapsed_ms,
            response_length=length,
            exception=exception,
            context={},
        )
