"""Read Triton's Prometheus ``/metrics`` text and turn two scrapes into per-request figures.

Triton's counters are cumulative since the server started, so a measurement is always the
difference of two snapshots::

    before = scrape(server.metrics_url)
    ...  # send load
    after = scrape(server.metrics_url)
    for model, delta in diff(before, after).items():
        print(model, delta.avg_queue_ms, delta.avg_batch_size)

``diff`` gives the server-side time per request the way perf_analyzer reports it: queue, compute
input, compute infer and compute output, each the counter's increase divided by the requests
that went through that stage (requests served from the response cache never reach compute).
"""

from __future__ import annotations

import math
import re
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

#: counter metric name -> ``ModelCounters`` field
COUNTERS = {
    "nv_inference_request_success": "request_success",
    "nv_inference_request_failure": "request_failure",
    "nv_inference_count": "inference_count",
    "nv_inference_exec_count": "exec_count",
    "nv_inference_request_duration_us": "request_duration_us",
    "nv_inference_queue_duration_us": "queue_duration_us",
    "nv_inference_compute_input_duration_us": "compute_input_duration_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_duration_us",
    "nv_inference_compute_output_duration_us": "compute_output_duration_us",
    "nv_cache_num_hits_per_model": "cache_hits",
    "nv_cache_num_misses_per_model": "cache_misses",
}

#: the latency summary Triton exports with ``--metrics-config summary_latencies=true``
REQUEST_SUMMARY = "nv_inference_request_summary_us"

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>.*)\})?"
    r"\s+(?P<value>\S+)(?:\s+(?P<timestamp>-?\d+))?\s*$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class MetricsError(ValueError):
    """The text is not valid Prometheus exposition format; the message names the line."""


@dataclass(frozen=True)
class Sample:
    """One line of the exposition: a metric name, its labels and its value."""

    name: str
    labels: Mapping[str, str]
    value: float


def _unescape(value: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], value)


def _parse_labels(text: str, lineno: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _LABEL.match(text, position)
        if not match:
            raise MetricsError(f"line {lineno}: cannot parse labels {{{text}}}")
        labels[match.group(1)] = _unescape(match.group(2))
        position = match.end()
    return labels


def _parse_value(text: str, lineno: int) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise MetricsError(f"line {lineno}: value {text!r} is not a number") from None


def parse_samples(text: str) -> Iterator[Sample]:
    """Every sample of a Prometheus text exposition, comments skipped."""
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise MetricsError(f"line {lineno}: not a metric sample: {line[:120]!r}")
        labels = _parse_labels(match.group("labels") or "", lineno)
        yield Sample(match.group("name"), labels, _parse_value(match.group("value"), lineno))


@dataclass(frozen=True)
class ModelCounters:
    """One model's cumulative counters (summed over its versions) at one moment."""

    model: str
    request_success: float = 0.0
    request_failure: float = 0.0
    inference_count: float = 0.0
    exec_count: float = 0.0
    request_duration_us: float = 0.0
    queue_duration_us: float = 0.0
    compute_input_duration_us: float = 0.0
    compute_infer_duration_us: float = 0.0
    compute_output_duration_us: float = 0.0
    cache_hits: float = 0.0
    cache_misses: float = 0.0
    #: quantile (0.5, 0.9, ...) -> request latency in µs over Triton's recent window
    request_summary_us: Mapping[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Metrics:
    """A parsed scrape of ``/metrics``: all samples, and the time it was taken."""

    samples: tuple[Sample, ...]
    taken_at: float = 0.0

    @classmethod
    def parse(cls, text: str, taken_at: float | None = None) -> Metrics:
        return cls(tuple(parse_samples(text)), time.time() if taken_at is None else taken_at)

    def select(self, name: str, **labels: str) -> list[Sample]:
        """Samples called ``name`` whose labels include every ``labels`` pair."""
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the matching samples (0.0 if none): e.g. a counter over all versions of a model."""
        return float(sum(s.value for s in self.select(name, **labels)))

    def models(self) -> list[str]:
        """Names of the models that appear in Triton's per-model counters."""
        names = {
            s.labels["model"] for s in self.samples if s.name in COUNTERS and "model" in s.labels
        }
        return sorted(names)

    def model(self, name: str) -> ModelCounters:
        """The counters of model ``name`` (all zero if Triton does not report it)."""
        values = {attr: self.value(metric, model=name) for metric, attr in COUNTERS.items()}
        summary: dict[float, float] = {}
        for sample in self.select(REQUEST_SUMMARY, model=name):
            quantile = sample.labels.get("quantile")
            if quantile is not None and not math.isnan(sample.value):
                key = float(quantile)
                summary[key] = summary.get(key, 0.0) + sample.value
        return ModelCounters(model=name, request_summary_us=summary, **values)


def scrape(url: str, timeout: float = 5.0) -> Metrics:
    """Fetch and parse a ``/metrics`` endpoint (e.g. ``LocalTriton.metrics_url``)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode("utf-8", errors="replace")
    return Metrics.parse(text)


def _per(total_us: float, count: float) -> float:
    return total_us / count / 1000.0 if count > 0 else 0.0


@dataclass(frozen=True)
class ModelDelta:
    """What one model did between two scrapes, and the per-request figures derived from it."""

    model: str
    seconds: float
    success: float
    failure: float
    inference_count: float
    exec_count: float
    request_duration_us: float
    queue_duration_us: float
    compute_input_duration_us: float
    compute_infer_duration_us: float
    compute_output_duration_us: float
    cache_hits: float
    cache_misses: float
    #: a counter went down between the scrapes: the figures count from the restart
    restarted: bool = False

    @property
    def requests(self) -> float:
        return self.success + self.failure

    @property
    def computed(self) -> float:
        """Successful requests that ran the model (not answered from the response cache)."""
        return max(self.success - self.cache_hits, 0.0)

    @property
    def avg_request_ms(self) -> float:
        return _per(self.request_duration_us, self.success)

    @property
    def avg_queue_ms(self) -> float:
        return _per(self.queue_duration_us, self.success)

    @property
    def avg_compute_input_ms(self) -> float:
        return _per(self.compute_input_duration_us, self.computed)

    @property
    def avg_compute_infer_ms(self) -> float:
        return _per(self.compute_infer_duration_us, self.computed)

    @property
    def avg_compute_output_ms(self) -> float:
        return _per(self.compute_output_duration_us, self.computed)

    @property
    def avg_batch_size(self) -> float:
        """Inferences per model execution: how well the dynamic batcher grouped requests."""
        return self.inference_count / self.exec_count if self.exec_count > 0 else 0.0

    @property
    def throughput(self) -> float:
        """Inferences per second over the interval."""
        return self.inference_count / self.seconds if self.seconds > 0 else 0.0

    @property
    def cache_hit_ratio(self) -> float:
        lookups = self.cache_hits + self.cache_misses
        return self.cache_hits / lookups if lookups > 0 else 0.0

    def as_dict(self) -> dict[str, float | str]:
        """Counters and per-request figures (milliseconds), for JSON reports."""
        return {
            "model": self.model,
            "seconds": round(self.seconds, 3),
            "success": self.success,
            "failure": self.failure,
            "inference_count": self.inference_count,
            "exec_count": self.exec_count,
            "cache_hits": self.cache_hits,
            "avg_request_ms": round(self.avg_request_ms, 4),
            "avg_queue_ms": round(self.avg_queue_ms, 4),
            "avg_compute_input_ms": round(self.avg_compute_input_ms, 4),
            "avg_compute_infer_ms": round(self.avg_compute_infer_ms, 4),
            "avg_compute_output_ms": round(self.avg_compute_output_ms, 4),
            "avg_batch_size": round(self.avg_batch_size, 3),
            "throughput": round(self.throughput, 3),
            "restarted": self.restarted,
        }


def restarted(before: ModelCounters, after: ModelCounters) -> bool:
    """Whether any cumulative counter of the model went down: it (or its server) restarted."""
    return any(float(getattr(after, attr)) < float(getattr(before, attr)) for attr in _FIELDS)


_FIELDS = tuple(COUNTERS.values())


def diff_model(before: ModelCounters, after: ModelCounters, seconds: float = 0.0) -> ModelDelta:
    """The change of one model's counters between two scrapes.

    A restart resets every counter of the model together, so it is detected per model, not per
    counter: if any counter went down, all of them count from zero. (Per counter, a queue time
    that restarted next to a request count that had already grown past its old value would be
    divided by the wrong number of requests.)
    """
    reset = restarted(before, after)

    def change(attr: str) -> float:
        old, new = float(getattr(before, attr)), float(getattr(after, attr))
        return new if reset else new - old

    return ModelDelta(
        model=after.model,
        seconds=seconds,
        success=change("request_success"),
        failure=change("request_failure"),
        inference_count=change("inference_count"),
        exec_count=change("exec_count"),
        request_duration_us=change("request_duration_us"),
        queue_duration_us=change("queue_duration_us"),
        compute_input_duration_us=change("compute_input_duration_us"),
        compute_infer_duration_us=change("compute_infer_duration_us"),
        compute_output_duration_us=change("compute_output_duration_us"),
        cache_hits=change("cache_hits"),
        cache_misses=change("cache_misses"),
        restarted=reset,
    )


def diff(
    before: Metrics,
    after: Metrics,
    models: Iterable[str] | None = None,
    *,
    active_only: bool = True,
) -> dict[str, ModelDelta]:
    """Per-model change between two scrapes, by model name.

    ``models`` limits it to those names; ``active_only`` drops models that served nothing in between.
    """
    names = list(models) if models is not None else after.models()
    seconds = max(after.taken_at - before.taken_at, 0.0)
    deltas = {name: diff_model(before.model(name), after.model(name), seconds) for name in names}
    if active_only:
        deltas = {n: d for n, d in deltas.items() if d.requests > 0 or d.exec_count > 0}
    return deltas
