"""Triton Python (BLS) model: route each request to an accurate or a fast pipeline.

Served twice, configured by ``config.pbtxt`` parameters (the same file for both):

- ``text_embedding_adaptive``: ``text_embedding`` (FP32, accurate) or ``text_embedding_int8``;
- ``digit_classifier_adaptive``: ``digit_classifier_teacher`` or ``digit_classifier_student``.

Inputs and outputs are those of the routed pipelines, plus an output ``ROUTE`` (BYTES, per
item: ``b"accurate"`` or ``b"fast"``) that says which one answered.

Request parameters (all optional):

- ``route``: ``accurate`` or ``fast`` forces the route.
- ``deadline_ms``: the caller's latency budget. If the accurate route's expected latency for
  the current queue exceeds it, the request goes to the fast route, whatever its priority.
- ``priority_class``: ``high`` (accuracy matters: accurate route unless the deadline says
  otherwise) or ``low`` (the default: accurate route unless the server is under pressure).
  ``priority`` itself is Triton's reserved scheduling parameter, hence the name.

Queue pressure: the items the router is working on right now, across all its instances.
The router runs several instances (``instance_group`` count N, KIND_CPU) because an
``execute`` waits for its BLS calls (async ``execute`` overlaps only in decoupled models,
which Triton's HTTP and unary gRPC endpoints refuse): with one instance the router is a
serial stage and adds a full pipeline round trip to every queued batch. Each instance writes
the size of the batch it is executing into its own slot of a small shared file (one int64 per
instance, ``<tmp>/tritonctl_adaptive_<server pid>_<model>``, no lock needed since each slot
has one writer) and zeroes it when the batch is answered; the pressure an ``execute`` sees is
the sum of all slots, its own batch included. At or above the config parameter
``pressure_threshold`` low-priority requests are shed to the fast route, and an instance keeps
shedding for ``pressure_hold_ms`` (200) after it last saw that pressure: in a closed loop the
in-flight count dips whenever a wave of responses has gone out and the next requests are still
in the router's queue, and without the hold those dips sent a few % of an overload's requests
to the slow route, right into its p95. (The Python backend
cannot read Triton's statistics or metrics in-process; the batches its scheduler hands over are
the server's own view of the load.) The accurate route's expected latency is an EWMA of its
measured milliseconds per item (kept in the same file, so all instances share it) times the
pressure.

The requests of a route go to their pipeline as one BLS request (inputs concatenated), and
the two routes run concurrently (``async_exec``). ``calls_per_route`` (config parameter, 1) can
split a route into that many concurrent BLS requests; in Triton 2.51 (this machine, 12
clients, forced fast route, one instance) 2 calls per execute measured p50 103 ms / p95
1,013 ms against 59 / 143 ms with one, hence the default. A call that fails is retried request
by request so that one bad input fails only its own request.
"""

import asyncio
import contextlib
import json
import mmap
import os
import tempfile
import time

import numpy as np
import triton_python_backend_utils as pb_utils

ROUTES = ("accurate", "fast")
PRIORITIES = ("high", "low")


def choose(params, pressure, threshold, accurate_ms):
    """The route for one request: ``params`` its parameters, ``pressure`` the items queued."""
    route = params.get("route")
    if route is not None:
        if route not in ROUTES:
            raise ValueError(f"parameter route must be one of {ROUTES}, got {route!r}")
        return route
    priority = params.get("priority_class", "low")
    if priority not in PRIORITIES:
        raise ValueError(f"parameter priority_class must be one of {PRIORITIES}, got {priority!r}")
    deadline = params.get("deadline_ms")
    if deadline is not None:
        try:
            deadline = float(deadline)
        except (TypeError, ValueError):
            raise ValueError(f"parameter deadline_ms must be a number, got {deadline!r}") from None
        if deadline <= 0:
            raise ValueError(f"parameter deadline_ms must be positive, got {deadline}")
        if accurate_ms * pressure > deadline:
            return "fast"
    if priority == "high":
        return "accurate"
    return "fast" if pressure >= threshold else "accurate"


def _parameter(config, key, default):
    return config.get("parameters", {}).get(key, {}).get("string_value") or default


class SharedLoad:
    """Items in flight per router instance, and the routes' ms-per-item EWMA, in a file every
    instance of the model maps: an estimate one instance measured serves them all."""

    def __init__(self, model, instances, slot):
        path = os.path.join(tempfile.gettempdir(), f"tritonctl_adaptive_{os.getppid()}_{model}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            size = 8 * (instances + len(ROUTES))
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.path = path
        # Several writers, last one wins: fine for an estimate; aligned 8-byte stores are atomic.
        self.ms_per_item = np.frombuffer(self.map, dtype=np.float64, count=len(ROUTES))
        self.slots = np.frombuffer(
            self.map, dtype=np.int64, count=instances, offset=8 * len(ROUTES)
        )
        self.slot = slot

    def start(self, items):
        """Record this instance's batch; return the items in flight across all instances."""
        self.slots[self.slot] = items
        return int(self.slots.sum())

    def done(self):
        self.slots[self.slot] = 0

    def close(self):
        self.done()
        del self.slots, self.ms_per_item
        self.map.close()
        with contextlib.suppress(FileNotFoundError):  # another instance was first
            os.unlink(self.path)


def _instance_slot(config, instance_name):
    """(instances, this one's index): instance names are ``<group name>_<index in group>``."""
    names = [
        f"{group.get('name') or config['name']}_{i}"
        for group in config.get("instance_group", [])
        for i in range(int(group.get("count", 1)))
    ]
    if instance_name in names:
        return len(names), names.index(instance_name)
    return max(len(names), 1) + 1, max(len(names), 1)  # unknown naming: a slot of its own


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.models = {
            "accurate": _parameter(config, "accurate_model", ""),
            "fast": _parameter(config, "fast_model", ""),
        }
        if not all(self.models.values()):
            raise pb_utils.TritonModelException("set parameters accurate_model and fast_model")
        self.threshold = int(_parameter(config, "pressure_threshold", "8"))
        self.hold = float(_parameter(config, "pressure_hold_ms", "200")) / 1000.0
        self.high_until = 0.0
        self.alpha = float(_parameter(config, "ewma_alpha", "0.2"))
        self.calls_per_route = max(1, int(_parameter(config, "calls_per_route", "1")))
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"] if o["name"] != "ROUTE"]
        instances, slot = _instance_slot(config, args["model_instance_name"])
        self.load = SharedLoad(self.name, instances, slot)
        # The family must outlive its metrics: keep a reference.
        self.family = family = pb_utils.MetricFamily(
            name="tritonctl_adaptive_route_total",
            description="items each adaptive model sent to each route",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.counters = {r: family.Metric(labels={"model": self.name, "route": r}) for r in ROUTES}

    def execute(self, requests):
        tensors = []  # per request: {input name: array}
        for r in requests:
            tensors.append(
                {n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs}
            )
        pressure = self.load.start(sum(len(t[self.inputs[0]]) for t in tensors))
        now = time.monotonic()
        if pressure >= self.threshold:
            self.high_until = now + self.hold
        elif now < self.high_until:
            pressure = self.threshold  # hold: one lull between batches does not end an overload
        try:
            return self._route(requests, tensors, pressure)
        finally:
            self.load.done()

    def finalize(self):
        self.load.close()

    def _route(self, requests, tensors, pressure):
        responses = [None] * len(requests)
        groups = {route: [] for route in ROUTES}
        for index, request in enumerate(requests):
            try:
                params = json.loads(request.parameters() or "{}")
                route = choose(params, pressure, self.threshold, self.load.ms_per_item[0])
            except ValueError as error:
                responses[index] = self._error(str(error))
                continue
            groups[route].append(index)
        calls = [
            (route, chunk.tolist())
            for route, idx in groups.items()
            if idx
            for chunk in np.array_split(np.array(idx), min(len(idx), self.calls_per_route))
        ]
        results = asyncio.run(self._run_all(calls, tensors))
        for (route, indices), outputs in zip(calls, results, strict=True):
            self.counters[route].increment(sum(len(tensors[i][self.inputs[0]]) for i in indices))
            for index, output in zip(indices, outputs, strict=True):
                responses[index] = output
        return responses

    async def _run_all(self, calls, tensors):
        return await asyncio.gather(*(self._run(route, idx, tensors) for route, idx in calls))

    async def _run(self, route, indices, tensors):
        """One BLS call for all ``indices``; per-request retries only if it fails."""
        sizes = [len(tensors[i][self.inputs[0]]) for i in indices]
        batch = {n: np.concatenate([tensors[i][n] for i in indices]) for n in self.inputs}
        start = time.perf_counter()
        response = await self._call(route, batch)
        if response.has_error():
            if len(indices) == 1:
                return [self._error(response.error().message())]
            return [(await self._run(route, [i], tensors))[0] for i in indices]
        elapsed = (time.perf_counter() - start) * 1000.0 / max(sum(sizes), 1)
        ewma, i = self.load.ms_per_item, ROUTES.index(route)
        ewma[i] = elapsed if ewma[i] == 0 else ewma[i] + self.alpha * (elapsed - ewma[i])
        arrays = {
            n: pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in self.outputs
        }
        offsets = np.cumsum(sizes)[:-1]
        split = {n: np.split(a, offsets) for n, a in arrays.items()}
        label = np.array([route.encode()], dtype=object)
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(n, split[n][k]) for n in self.outputs]
                + [pb_utils.Tensor("ROUTE", np.repeat(label, size).reshape(size, 1))]
            )
            for k, size in enumerate(sizes)
        ]

    def _call(self, route, batch):
        request = pb_utils.InferenceRequest(
            model_name=self.models[route],
            requested_output_names=self.outputs,
            inputs=[pb_utils.Tensor(n, a) for n, a in batch.items()],
        )
        return request.async_exec()

    @staticmethod
    def _error(message):
        return pb_utils.InferenceResponse(
            output_tensors=[], error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
        )
