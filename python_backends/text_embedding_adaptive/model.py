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
the size of the batch it is executing into its own row of a small shared file and zeroes it
when the batch is answered; the pressure an ``execute`` sees is the sum over the rows whose
owner is alive, its own batch included. At or above the config parameter
``pressure_threshold`` low-priority requests are shed to the fast route, and an instance keeps
shedding for ``pressure_hold_ms`` (200) after it last saw that pressure: in a closed loop the
in-flight count dips whenever a wave of responses has gone out and the next requests are still
in the router's queue, and without the hold those dips sent a few % of an overload's requests
to the slow route, right into its p95. (The Python backend cannot read Triton's statistics or
metrics in-process; the batches its scheduler hands over are the server's own view of the
load.)

The shared file: ``$TRITONCTL_RUN_DIR/adaptive-<model>.slots`` (the server's own run folder,
removed with it; ``<tmp>/tritonctl_adaptive_<server pid>_<model>`` for a server started
without tritonctl, those of dead servers removed at the next start). A row is (owner pid,
owner start time, items). An instance claims a free row, or one whose owner is gone, under a
lock when it starts, with zero items; it releases it in ``finalize`` and never deletes the
file (other instances, and those Triton adds when the instance count changes, keep using it).
A stub that is killed mid-batch leaves its row behind: a row whose owner is dead or a zombie
(what a killed stub stays under Triton) does not count, so a crash cannot pin the pressure.

Deadlines: the accurate route's expected latency is an EWMA of its measured milliseconds per
item (kept in the same file, so all instances share it, and exported as the gauge
``tritonctl_adaptive_ms_per_item``) times the pressure. The estimate learns only from requests
that take that route, so it decays while that route goes unmeasured: it halves every
``estimate_half_life_ms`` (2000) since the last measurement, until a deadline request is sent
there again and measured. One slow burst (long texts) cannot keep deadline requests on the
fast route for good; under a real overload the decayed estimate lets a request through now and
then, whose measurement restores it.

The requests of a route go to their pipeline as one BLS request (inputs concatenated), and
the two routes run concurrently (``async_exec``). ``calls_per_route`` (config parameter, 1) can
split a route into that many concurrent BLS requests; in Triton 2.51 (12 clients, forced fast
route, one instance) 2 calls per execute measured p50 103 ms / p95 1,013 ms against 59 / 143
ms with one, hence the default. Errors:

- a transient failure (the pipeline unloaded or not ready, a dead stub, a full queue, a
  timeout) sends the requests that did not force their route to the other route, as one call;
  a request that forced it, or that the other route fails too, gets the error as UNAVAILABLE,
  which clients retry (every error used to be INVALID_ARG, never retried);
- any other failure of a call with several requests is retried request by request, all at
  once, so that one bad input fails only its own request; a request that fails alone gets the
  pipeline's message as INVALID_ARG (BLS in Triton 2.51 reports a step's INVALID_ARG as
  INTERNAL; other codes pass through). Each answer object is built for its own request: one
  response object returned for two requests crashed the server (SIGSEGV in the backend).
"""

import asyncio
import contextlib
import fcntl
import glob
import json
import math
import mmap
import os
import re
import tempfile
import time

import numpy as np
import triton_python_backend_utils as pb_utils

ROUTES = ("accurate", "fast")
PRIORITIES = ("high", "low")
#: Rows in the shared file: instances of this server's generation plus those replacing them
#: during a reload, plus rows of killed stubs not yet reclaimed.
ROWS = 256
#: Header words (float64): ms-per-item EWMA per route, when each route was last measured
#: (``time.monotonic``: one clock for every process); the rest spare.
HEADER = 8


def deadline_ms(value):
    """The ``deadline_ms`` parameter as a finite positive number of milliseconds."""
    if isinstance(value, bool):  # JSON true is not 1 ms
        raise ValueError(f"parameter deadline_ms must be a number of milliseconds, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"parameter deadline_ms must be a number of milliseconds, got {value!r}"
        ) from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"parameter deadline_ms must be finite and positive, got {value!r}")
    return number


def choose(params, pressure, threshold, accurate_ms):
    """(route, forced) for one request: ``params`` its parameters, ``pressure`` the items in
    flight, ``accurate_ms`` the accurate route's expected milliseconds per item."""
    route = params.get("route")
    if route is not None:
        if route not in ROUTES:
            raise ValueError(f"parameter route must be one of {ROUTES}, got {route!r}")
        return route, True
    priority = params.get("priority_class", "low")
    if priority not in PRIORITIES:
        raise ValueError(f"parameter priority_class must be one of {PRIORITIES}, got {priority!r}")
    preferred = "accurate" if priority == "high" or pressure < threshold else "fast"
    deadline = params.get("deadline_ms")
    if deadline is not None:
        deadline = deadline_ms(deadline)
        if accurate_ms * pressure > deadline:
            return "fast", False
    return preferred, False


def _parameter(config, key, default):
    return config.get("parameters", {}).get(key, {}).get("string_value") or default


def _start_time(pid):
    """``pid``'s start time (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


def _shared_path(model):
    run_dir = os.environ.get("TRITONCTL_RUN_DIR")
    if run_dir and os.path.isdir(run_dir):
        return os.path.join(run_dir, f"adaptive-{model}.slots")
    # A server started without tritonctl: the server's pid names the file; those of servers
    # that no longer run are removed here, since nobody else would.
    folder = tempfile.gettempdir()
    for path in glob.glob(os.path.join(folder, "tritonctl_adaptive_*")):
        match = re.fullmatch(r"tritonctl_adaptive_(\d+)_.+", os.path.basename(path))
        if match and _start_time(int(match.group(1))) is None:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return os.path.join(folder, f"tritonctl_adaptive_{os.getppid()}_{model}")


class SharedLoad:
    """Items in flight per router instance, and the routes' ms-per-item EWMA, in a file every
    instance of the model maps (see the module docstring)."""

    #: How long a row owner's liveness is trusted before ``/proc`` is read again.
    RECHECK = 0.25

    def __init__(self, model):
        self.path = _shared_path(model)
        size = 8 * (HEADER + 3 * ROWS)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one claim at a time
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
            # Several writers, last one wins: fine for estimates; aligned 8-byte stores are atomic.
            self.header = np.frombuffer(self.map, dtype=np.float64, count=HEADER)
            self.rows = np.frombuffer(
                self.map, dtype=np.int64, count=3 * ROWS, offset=8 * HEADER
            ).reshape(ROWS, 3)
            self.row = self._claim()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # the map holds a duplicate of fd: unlock explicitly
            os.close(fd)
        self.alive = {}  # (pid, start) -> (alive, checked at)

    def _claim(self):
        me, started = os.getpid(), _start_time(os.getpid())
        for row, (pid, start, _) in enumerate(self.rows.tolist()):
            if pid == 0 or pid == me or _start_time(pid) != start:
                self.rows[row, 2] = 0
                self.rows[row, 1] = started
                self.rows[row, 0] = me
                return row
        raise RuntimeError(f"all {ROWS} rows of {self.path} belong to running router instances")

    def _counts(self, pid, start, now):
        known = self.alive.get((pid, start))
        if known is None or now - known[1] > self.RECHECK:
            known = (_start_time(pid) == start, now)
            self.alive[(pid, start)] = known
        return known[0]

    def start(self, items):
        """Record this instance's batch; return the items in flight across live instances."""
        self.rows[self.row, 2] = items
        busy = np.flatnonzero(self.rows[:, 2])
        now = time.monotonic()
        total = items
        for row in busy.tolist():
            pid, start, count = self.rows[row].tolist()
            if row != self.row and count > 0 and self._counts(pid, start, now):
                total += count
        if len(self.alive) > 4 * ROWS:
            self.alive.clear()
        return total

    def done(self):
        self.rows[self.row, 2] = 0

    def ms_per_item(self, route, half_life, now=None):
        """The route's EWMA, halved every ``half_life`` seconds since its last measurement."""
        i = ROUTES.index(route)
        age = (time.monotonic() if now is None else now) - self.header[2 + i]
        return float(self.header[i]) * 0.5 ** (max(age, 0.0) / half_life)

    def measured(self, route, ms, alpha, half_life):
        """Fold one measurement into the route's (decayed) EWMA; return the new estimate."""
        i = ROUTES.index(route)
        now = time.monotonic()
        old = self.ms_per_item(route, half_life, now)
        self.header[i] = ms if old == 0 else old + alpha * (ms - old)
        self.header[2 + i] = now
        return float(self.header[i])

    def close(self):
        # Release the row; never delete the file: other instances still map it.
        self.rows[self.row, 2] = 0
        self.rows[self.row, 0] = 0
        del self.rows, self.header
        self.map.close()


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
        self.half_life = float(_parameter(config, "estimate_half_life_ms", "2000")) / 1000.0
        self.high_until = 0.0
        self.alpha = float(_parameter(config, "ewma_alpha", "0.2"))
        self.calls_per_route = max(1, int(_parameter(config, "calls_per_route", "1")))
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"] if o["name"] != "ROUTE"]
        self.load = SharedLoad(self.name)
        # The families must outlive their metrics: keep references.
        self.family = family = pb_utils.MetricFamily(
            name="tritonctl_adaptive_route_total",
            description="items each adaptive model sent to each route",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.counters = {r: family.Metric(labels={"model": self.name, "route": r}) for r in ROUTES}
        self.estimate_family = estimates = pb_utils.MetricFamily(
            name="tritonctl_adaptive_ms_per_item",
            description="the adaptive router's estimate of each route's milliseconds per item",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.estimates = {
            r: estimates.Metric(labels={"model": self.name, "route": r}) for r in ROUTES
        }
        for route in ROUTES:
            self.estimates[route].set(self.load.ms_per_item(route, self.half_life))

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
        forced = set()
        accurate_ms = self.load.ms_per_item("accurate", self.half_life)
        for index, request in enumerate(requests):
            try:
                params = json.loads(request.parameters() or "{}")
                route, force = choose(params, pressure, self.threshold, accurate_ms)
            except ValueError as error:
                responses[index] = self._error(str(error))
                continue
            groups[route].append(index)
            if force:
                forced.add(index)
        calls = [
            (route, chunk.tolist())
            for route, idx in groups.items()
            if idx
            for chunk in np.array_split(np.array(idx), min(len(idx), self.calls_per_route))
        ]
        results = asyncio.run(self._run_all(calls, tensors, forced))
        for (_, indices), outputs in zip(calls, results, strict=True):
            for index, output in zip(indices, outputs, strict=True):
                responses[index] = output
        return responses

    async def _run_all(self, calls, tensors, forced):
        return await asyncio.gather(
            *(self._run(route, idx, tensors, forced) for route, idx in calls)
        )

    async def _run(self, route, indices, tensors, forced, fallback=True):
        """Answers for ``indices`` from one BLS call to ``route``; on a transient failure the
        requests that did not force their route go to the other one, on any other failure
        each request is retried on its own (all at once) so that a bad input fails alone."""
        sizes = [len(tensors[i][self.inputs[0]]) for i in indices]
        batch = {n: np.concatenate([tensors[i][n] for i in indices]) for n in self.inputs}
        start = time.perf_counter()
        response = await self._call(route, batch)
        if not response.has_error():
            ms = (time.perf_counter() - start) * 1000.0 / max(sum(sizes), 1)
            self.estimates[route].set(self.load.measured(route, ms, self.alpha, self.half_life))
            self.counters[route].increment(sum(sizes))
            return self._split(response, route, sizes)
        error = response.error()
        if _transient(error):
            answers = {}
            movable = [i for i in indices if i not in forced] if fallback else []
            if movable:
                other = ROUTES[1 - ROUTES.index(route)]
                moved = await self._run(other, movable, tensors, forced, fallback=False)
                answers = dict(zip(movable, moved, strict=True))
            message = f"route {route!r} ({self.models[route]}) failed: {error.message()}"
            unavailable = pb_utils.TritonError.UNAVAILABLE
            return [
                answers[i] if i in answers else self._error(message, unavailable) for i in indices
            ]
        if len(indices) > 1:
            singles = [self._run(route, [i], tensors, forced, fallback) for i in indices]
            return [answer for answers in await asyncio.gather(*singles) for answer in answers]
        return [self._error(error.message(), _input_code(error))]

    def _split(self, response, route, sizes):
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
    def _error(message, code=None):
        code = pb_utils.TritonError.INVALID_ARG if code is None else code
        return pb_utils.InferenceResponse(
            output_tensors=[], error=pb_utils.TritonError(message, code)
        )


#: What BLS reports (as INTERNAL, in Triton 2.51) when a pipeline is unloaded, loading, its stub
#: died or its queue is full: a transient state of this server, which a client should retry.
TRANSIENT = (
    "is not ready",
    "is not found",
    "has no available versions",
    "is not healthy",
    "exceeds maximum queue size",
    "timed out",
    "timeout",
)


def _transient(error):
    unavailable = (pb_utils.TritonError.UNAVAILABLE, pb_utils.TritonError.NOT_FOUND)
    return error.code() in unavailable or any(t in error.message() for t in TRANSIENT)


def _input_code(error):
    """The code of a pipeline's refusal of one request: BLS in Triton 2.51 turns a step's
    INVALID_ARG into INTERNAL, so INTERNAL (and UNKNOWN) read as the input's fault, which the
    ensemble itself reports as INVALID_ARG; other codes pass through."""
    internal = (pb_utils.TritonError.INTERNAL, pb_utils.TritonError.UNKNOWN)
    return pb_utils.TritonError.INVALID_ARG if error.code() in internal else error.code()
