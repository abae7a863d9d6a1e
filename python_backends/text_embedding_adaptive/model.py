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

Queue pressure: the model has a dynamic batcher, so each ``execute`` receives every request
that waited in Triton's queue for it (up to ``max_batch_size``). That number of items is the
pressure: at or above the config parameter ``pressure_threshold`` low-priority requests are shed
to the fast route. (The Python backend cannot read Triton's statistics or metrics; the batch the
scheduler hands over is the server's own view of the queue.) The accurate route's expected
latency is an EWMA of its measured milliseconds per item times the pressure.

The requests of a route go to their pipeline as one BLS request (inputs concatenated), and
the two routes run concurrently (``async_exec``). ``calls_per_route`` (config parameter, 1) can
split a route into that many concurrent BLS requests, so that the pipeline's batchers spread the
items over all encoder instances; in Triton 2.51 (this machine, 12 clients, forced fast route)
2 concurrent calls per execute measured p50 103 ms / p95 1,013 ms against 59 / 143 ms with one,
hence the default. A call that fails is retried request by
request so that one bad input fails only its own request.
"""

import asyncio
import json
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
        self.alpha = float(_parameter(config, "ewma_alpha", "0.2"))
        self.calls_per_route = max(1, int(_parameter(config, "calls_per_route", "1")))
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"] if o["name"] != "ROUTE"]
        self.ms_per_item = {route: 0.0 for route in ROUTES}
        # The family must outlive its metrics: keep a reference.
        self.family = family = pb_utils.MetricFamily(
            name="tritonctl_adaptive_route_total",
            description="items each adaptive model sent to each route",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.counters = {r: family.Metric(labels={"model": self.name, "route": r}) for r in ROUTES}

    def execute(self, requests):
        responses = [None] * len(requests)
        tensors = []  # per request: {input name: array}
        for r in requests:
            tensors.append(
                {n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs}
            )
        pressure = sum(len(t[self.inputs[0]]) for t in tensors)
        groups = {route: [] for route in ROUTES}
        for index, request in enumerate(requests):
            try:
                params = json.loads(request.parameters() or "{}")
                route = choose(params, pressure, self.threshold, self.ms_per_item["accurate"])
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
        old = self.ms_per_item[route]
        self.ms_per_item[route] = elapsed if old == 0 else old + self.alpha * (elapsed - old)
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
