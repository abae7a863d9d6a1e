"""A light asyncio closed-loop load generator: C coroutines, each sending its next request as
soon as the previous one returns, over Triton gRPC, Triton HTTP or a plain JSON HTTP endpoint.

It is deliberately small: requests are encoded once before the run (the corpus is cycled), and
each coroutine only awaits the call and appends a latency, so the client's own CPU share stays
low on a machine whose cores it shares with the server. That share is measured and reported.
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
    ) -> Point:
        """A point from the window's latencies (seconds) and what it served in ``seconds``."""
        p50, p95, p99, mean = percentiles(latencies_s)
        return cls(
            config=config,
            concurrency=concurrency,
            requests=requests,
            errors=errors,
            seconds=seconds,
            throughput=requests / seconds,
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            mean_ms=mean,
            client_cpu_cores=client_cpu_cores,
            first_error=first_error,
            extra=extra or {},
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

    Only requests that start and end inside the measured window count, so the warm-up and
    the drain at the end do not blur the figures.
    """
    latencies: list[float] = []
    errors = 0
    first_error = ""
    counter = 0
    loop_start = time.perf_counter()
    window_start = loop_start + warmup_s
    window_end = window_start + duration_s
    cpu_at_window: list[float] = []

    async def worker() -> None:
        nonlocal counter, errors, first_error
        while True:
            start = time.perf_counter()
            if start >= window_end:
                return
            index = counter % len(texts)
            counter += 1
            try:
                await target.call(index)
            except Exception as error:  # noqa: BLE001 - every failure is counted, not raised
                end = time.perf_counter()
                if start >= window_start and end <= window_end:
                    errors += 1
                    first_error = first_error or f"{type(error).__name__}: {error}"
                continue
            end = time.perf_counter()
            if start >= window_start and end <= window_end:
                latencies.append(end - start)

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
    return Point.measured(
        target.name,
        concurrency,
        latencies,
        requests=len(latencies),
        seconds=duration_s,
        client_cpu_cores=cpu,
        errors=errors,
        first_error=first_error,
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


def _text_inputs(module: Any, name: str, texts: Sequence[str], config: dict[str, Any]) -> list[Any]:
    """One prepared BYTES input per text (``[1, 1]`` for a batching model, else ``[1]``)."""
    shape = [1, 1] if int(config.get("max_batch_size", 0)) > 0 else [1]
    inputs = []
    for text in texts:
        tensor = module.InferInput(name, shape, "BYTES")
        tensor.set_data_from_numpy(np.array([text.encode()], dtype=np.object_).reshape(shape))
        inputs.append(tensor)
    return inputs


class _TritonTarget:
    """What the gRPC and HTTP targets share: one prepared request per text, sent by index."""

    model: str
    output_name: str
    _client: Any
    _inputs: list[Any]
    _outputs: list[Any]

    async def call(self, index: int) -> None:
        result = await self._client.infer(self.model, [self._inputs[index]], outputs=self._outputs)
        if result.as_numpy(self.output_name) is None:
            raise RuntimeError(f"{self.model}: no {self.output_name} in the response")

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
    ) -> None:
        self.address, self.model, self.name = address, model, name or model
        self.input_name, self.output_name = input_name, output_name
        self.headers = headers or {}
        self._client: Any = None
        self._inputs: list[Any] = []
        self._outputs: list[Any] = []

    async def open(self, texts: Sequence[str]) -> None:
        import tritonclient.grpc.aio as grpcclient

        self._client = grpcclient.InferenceServerClient(self.address)
        config = await self._client.get_model_config(self.model, as_json=True)
        self._inputs = _text_inputs(grpcclient, self.input_name, texts, config["config"])
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
    ) -> None:
        self.address, self.model, self.name = address, model, name or f"{model} (http)"
        self.input_name, self.output_name = input_name, output_name
        self.concurrency = concurrency
        self._client: Any = None
        self._inputs: list[Any] = []
        self._outputs: list[Any] = []

    async def open(self, texts: Sequence[str]) -> None:
        import tritonclient.http.aio as httpclient

        self._client = httpclient.InferenceServerClient(self.address, conn_limit=self.concurrency)
        config = await self._client.get_model_config(self.model)
        self._inputs = _text_inputs(httpclient, self.input_name, texts, config)
        self._outputs = [httpclient.InferRequestedOutput(self.output_name, binary_data=True)]


class JsonHttpTarget:
    """A hand-written JSON endpoint (``POST {"text": ...}`` → ``{"embedding": [...]}``) via aiohttp."""

    def __init__(self, url: str, *, name: str = "fastapi", concurrency: int = 64) -> None:
        self.url, self.name, self.concurrency = url, name, concurrency
        self._session: Any = None
        self._bodies: list[bytes] = []

    async def open(self, texts: Sequence[str]) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.concurrency)
        self._session = aiohttp.ClientSession(connector=connector)
        self._bodies = [json.dumps({"text": text}).encode() for text in texts]

    async def call(self, index: int) -> None:
        async with self._session.post(
            self.url, data=self._bodies[index], headers={"content-type": "application/json"}
        ) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")

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
