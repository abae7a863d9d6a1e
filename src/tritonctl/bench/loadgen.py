"""A light asyncio closed-loop load generator: C coroutines, each sending its next request as
soon as the previous one returns, over Triton gRPC, Triton HTTP or a plain JSON HTTP endpoint.

It is deliberately small: requests are encoded once before the run (the corpus is cycled), and
each coroutine only awaits the call and appends a latency, so the client's own CPU share stays
low on a machine whose cores it shares with the server. That share is measured and reported.

Accounting: a request counts when it *completes* inside the measured window, whenever it
started. In a closed loop that is the window's true completion rate; counting only requests
that both start and end inside the window drops the ones straddling its edges (about one per
client at each edge) while still dividing by the full window, which reads low. A target may
send several texts per request (``items_per_request``, bulk requests): throughput is in texts
per second, latency per request.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np


class Target(Protocol):
    """Something the load generator can call: opened once, then ``call(i)`` sends sentence ``i``."""

    name: str

    async def open(self, texts: Sequence[str]) -> None: ...

    async def call(self, index: int) -> None: ...

    async def close(self) -> None: ...


@dataclass
class Point:
    """One measured point: a target at one concurrency, over the measured window only."""

    config: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    client_cpu_cores: float
    first_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    items_per_request: int = 1
    max_in_flight: int = 0

    @classmethod
    def measured(
        cls,
        config: str,
        concurrency: int,
        latencies_s: Sequence[float],
        *,
        requests: int,
        seconds: float,
        client_cpu_cores: float,
        errors: int = 0,
        first_error: str = "",
        extra: dict[str, Any] | None = None,
        items_per_request: int = 1,
        max_in_flight: int = 0,
    ) -> Point:
        """A point from the window's latencies (seconds) and what it served in ``seconds``.

        ``requests`` counts items (texts, images): requests times ``items_per_request``.
        """
        p50, p95, p99, mean = percentiles(latencies_s)
        return cls(
            config=config,
            concurrency=concurrency,
            requests=requests,
            errors=errors,
            seconds=seconds,
            throughput=requests / seconds if seconds > 0 else 0.0,
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            mean_ms=mean,
            client_cpu_cores=client_cpu_cores,
            first_error=first_error,
            extra=extra or {},
            items_per_request=items_per_request,
            max_in_flight=max_in_flight,
        )

    @property
    def client_cpu_share(self) -> float:
        """The client's CPU time as a fraction of the whole machine."""
        return self.client_cpu_cores / (os.cpu_count() or 1)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["client_cpu_share"] = round(self.client_cpu_share, 4)
        return data


def percentiles(latencies_s: Sequence[float]) -> tuple[float, float, float, float]:
    """p50, p95, p99 and mean in milliseconds (zeros when nothing was measured)."""
    if not latencies_s:
        return 0.0, 0.0, 0.0, 0.0
    values = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return float(p50), float(p95), float(p99), float(values.mean())


def in_window(
    records: Sequence[tuple[float, float, str]], window_start: float, window_end: float
) -> tuple[list[float], int, str]:
    """Latencies of the successes, the failure count and the first failure's message, over
    the requests that completed inside ``[window_start, window_end]``, whenever they started.

    ``records`` holds ``(start, end, error)`` per request, ``error`` empty for a success.
    """
    latencies: list[float] = []
    errors = 0
    first_error = ""
    for start, end, error in sorted(records, key=lambda record: record[1]):
        if not window_start <= end <= window_end:
            continue
        if error:
            errors += 1
            first_error = first_error or error
        else:
            latencies.append(end - start)
    return latencies, errors, first_error


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def closed_loop(
    target: Target,
    texts: Sequence[str],
    concurrency: int,
    *,
    warmup_s: float,
    duration_s: float,
    on_window_start: Callable[[], None] | None = None,
    on_window_end: Callable[[], None] | None = None,
) -> Point:
    """Drive ``target`` with ``concurrency`` closed-loop clients: warm up, then measure a window.

    Requests (and failures) that complete inside the window count; see the module docstring.
    """
    records: list[tuple[float, float, str]] = []  # (start, end, error message or "")
    counter = 0
    in_flight = 0
    max_in_flight = 0
    loop_start = time.perf_counter()
    window_start = loop_start + warmup_s
    window_end = window_start + duration_s
    cpu_at_window: list[float] = []
    items = max(int(getattr(target, "items_per_request", 1)), 1)

    async def worker() -> None:
        nonlocal counter, in_flight, max_in_flight
        while True:
            start = time.perf_counter()
            if start >= window_end:
                return
            index = counter % len(texts)
            counter += 1
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
            error = ""
            try:
                await target.call(index)
            except Exception as failure:  # noqa: BLE001 - every failure is counted, not raised
                error = f"{type(failure).__name__}: {failure}"
            finally:
                in_flight -= 1
            records.append((start, time.perf_counter(), error))

    async def cpu_marker() -> None:
        await asyncio.sleep(max(window_start - time.perf_counter(), 0))
        cpu_at_window.append(_cpu_seconds())
        if on_window_start is not None:
            await asyncio.to_thread(on_window_start)
        await asyncio.sleep(max(window_end - time.perf_counter(), 0))
        cpu_at_window.append(_cpu_seconds())
        if on_window_end is not None:
            await asyncio.to_thread(on_window_end)

    try:
        await target.open(texts)
        loop_start = time.perf_counter()
        window_start = loop_start + warmup_s
        window_end = window_start + duration_s
        await asyncio.gather(cpu_marker(), *(worker() for _ in range(concurrency)))
    finally:
        await target.close()
    cpu = (cpu_at_window[1] - cpu_at_window[0]) / duration_s if len(cpu_at_window) == 2 else 0.0
    latencies, errors, first_error = in_window(records, window_start, window_end)
    return Point.measured(
        target.name,
        concurrency,
        latencies,
        requests=len(latencies) * items,
        seconds=duration_s,
        client_cpu_cores=cpu,
        errors=errors,
        first_error=first_error,
        items_per_request=items,
        max_in_flight=max_in_flight,
    )


def run_point(
    target: Target,
    texts: Sequence[str],
    concurrency: int,
    *,
    warmup_s: float,
    duration_s: float,
    on_window_start: Callable[[], None] | None = None,
    on_window_end: Callable[[], None] | None = None,
) -> Point:
    """``closed_loop`` in a fresh event loop (the CLI and the tuner are synchronous)."""
    return asyncio.run(
        closed_loop(
            target,
            texts,
            concurrency,
            warmup_s=warmup_s,
            duration_s=duration_s,
            on_window_start=on_window_start,
            on_window_end=on_window_end,
        )
    )


# Targets ---------------------------------------------------------------------------------------


def request_texts(texts: Sequence[Any], items: int) -> list[list[Any]]:
    """Request ``i`` carries ``items`` texts from ``i`` on, wrapping round the corpus."""
    return [[texts[(i + k) % len(texts)] for k in range(items)] for i in range(len(texts))]


def _text_inputs(
    module: Any, name: str, texts: Sequence[str], config: dict[str, Any], items: int = 1
) -> list[Any]:
    """One prepared BYTES input per request (``[items, 1]`` for a batching model, else ``[items]``)."""
    batching = int(config.get("max_batch_size", 0)) > 0
    inputs = []
    for group in request_texts(texts, items):
        shape = [len(group), 1] if batching else [len(group)]
        tensor = module.InferInput(name, shape, "BYTES")
        tensor.set_data_from_numpy(
            np.array(
                [t if isinstance(t, bytes) else t.encode() for t in group], dtype=np.object_
            ).reshape(shape)
        )
        inputs.append(tensor)
    return inputs


class _TritonTarget:
    """What the gRPC and HTTP targets share: one prepared request per text, sent by index."""

    model: str
    output_name: str
    items_per_request: int
    _client: Any
    _inputs: list[Any]
    _outputs: list[Any]

    async def call(self, index: int) -> None:
        result = await self._client.infer(self.model, [self._inputs[index]], outputs=self._outputs)
        output = result.as_numpy(self.output_name)
        if output is None:
            raise RuntimeError(f"{self.model}: no {self.output_name} in the response")
        if len(output) != self.items_per_request:
            raise RuntimeError(
                f"{self.model}: {len(output)} rows of {self.output_name} for"
                f" {self.items_per_request} items"
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class TritonGrpcTarget(_TritonTarget):
    """A Triton model with one ``TEXT`` (BYTES) input, over ``tritonclient.grpc.aio``.

    ``shm_output`` receives the output into a system shared-memory region per concurrent slot
    (the shared-memory client path); the API is restricted, hence ``headers``.
    """

    def __init__(
        self,
        address: str,
        model: str,
        *,
        name: str | None = None,
        input_name: str = "TEXT",
        output_name: str = "EMBEDDING",
        headers: dict[str, str] | None = None,
        items_per_request: int = 1,
    ) -> None:
        self.address, self.model, self.name = address, model, name or model
        self.input_name, self.output_name = input_name, output_name
        self.headers = headers or {}
        self.items_per_request = items_per_request
        self._client: Any = None
        self._inputs: list[Any] = []
        self._outputs: list[Any] = []

    async def open(self, texts: Sequence[str]) -> None:
        import tritonclient.grpc.aio as grpcclient

        self._client = grpcclient.InferenceServerClient(self.address)
        config = await self._client.get_model_config(self.model, as_json=True)
        self._inputs = _text_inputs(
            grpcclient, self.input_name, texts, config["config"], self.items_per_request
        )
        self._outputs = [grpcclient.InferRequestedOutput(self.output_name)]


class TritonHttpTarget(_TritonTarget):
    """The same call over ``tritonclient.http.aio`` (binary tensor data, JSON header)."""

    def __init__(
        self,
        address: str,
        model: str,
        *,
        name: str | None = None,
        input_name: str = "TEXT",
        output_name: str = "EMBEDDING",
        concurrency: int = 64,
        items_per_request: int = 1,
    ) -> None:
        self.address, self.model, self.name = address, model, name or f"{model} (http)"
        self.input_name, self.output_name = input_name, output_name
        self.concurrency = concurrency
        self.items_per_request = items_per_request
        self._client: Any = None
        self._inputs: list[Any] = []
        self._outputs: list[Any] = []

    async def open(self, texts: Sequence[str]) -> None:
        import tritonclient.http.aio as httpclient

        self._client = httpclient.InferenceServerClient(self.address, conn_limit=self.concurrency)
        config = await self._client.get_model_config(self.model)
        self._inputs = _text_inputs(
            httpclient, self.input_name, texts, config, self.items_per_request
        )
        self._outputs = [httpclient.InferRequestedOutput(self.output_name, binary_data=True)]


class JsonHttpTarget:
    """A hand-written JSON endpoint via aiohttp: ``POST {"texts": [...]}`` answered by
    ``{"embeddings": [[...], ...]}``, one row per text (the FastAPI and LitServe peers)."""

    def __init__(
        self, url: str, *, name: str = "fastapi", concurrency: int = 64, items_per_request: int = 1
    ) -> None:
        self.url, self.name, self.concurrency = url, name, concurrency
        self.items_per_request = items_per_request
        self._session: Any = None
        self._bodies: list[bytes] = []

    async def open(self, texts: Sequence[str]) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.concurrency)
        self._session = aiohttp.ClientSession(connector=connector)
        self._bodies = [
            json.dumps({"texts": group}).encode()
            for group in request_texts(texts, self.items_per_request)
        ]

    async def call(self, index: int) -> None:
        async with self._session.post(
            self.url, data=self._bodies[index], headers={"content-type": "application/json"}
        ) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
            rows = json.loads(body).get("embeddings")
            if not isinstance(rows, list) or len(rows) != self.items_per_request:
                raise RuntimeError(f"expected {self.items_per_request} embeddings: {body[:200]!r}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class TritonGrpcShmTarget(TritonGrpcTarget):
    """gRPC with the output written by the server into system shared memory (one slot: c=1).

    The embedding then skips the protobuf response body; the region is registered through the
    restricted shared-memory API, so ``headers`` must carry the admin key.
    """

    def __init__(self, address: str, model: str, *, output_bytes: int = 384 * 4, **kw: Any) -> None:
        super().__init__(address, model, **kw)
        self.name = kw.get("name") or f"{model} (grpc+shm)"
        # gRPC carries the restricted-API key as metadata "triton-grpc-protocol-<header>".
        prefix = "triton-grpc-protocol-"
        self.headers = {
            (k if k.startswith(prefix) else prefix + k): v for k, v in self.headers.items()
        }
        self.output_bytes = output_bytes
        self._region = f"tritonctl_bench_{os.getpid()}"
        self._handle: Any = None

    async def open(self, texts: Sequence[str]) -> None:
        import tritonclient.utils.shared_memory as shm

        await super().open(texts)
        self._handle = shm.create_shared_memory_region(
            self._region, f"/{self._region}", self.output_bytes
        )
        await self._client.register_system_shared_memory(
            self._region, f"/{self._region}", self.output_bytes, headers=self.headers
        )
        self._outputs[0].set_shared_memory(self._region, self.output_bytes)

    async def call(self, index: int) -> None:
        import tritonclient.utils.shared_memory as shm

        await self._client.infer(self.model, [self._inputs[index]], outputs=self._outputs)
        shm.get_contents_as_numpy(self._handle, np.float32, [1, self.output_bytes // 4])

    async def close(self) -> None:
        import tritonclient.utils.shared_memory as shm

        try:
            if self._client is not None and self._handle is not None:
                await self._client.unregister_system_shared_memory(
                    self._region, headers=self.headers
                )
        finally:
            if self._handle is not None:
                shm.destroy_shared_memory_region(self._handle)
                self._handle = None
            await super().close()
