"""Read what a Locust run left in its folder: samples, failures, Locust's statistics, /metrics.

The verdict's figures come from the per-request samples, not from Locust's statistics: Locust
keeps latencies in a histogram rounded to two significant digits above 100 ms (an exact p99 of
213.1 ms reads 210), so its percentiles are shown for reference only. A request belongs to the
measured window when it was due (sent) inside it; requests sent in the window that were never
answered count as slower than every answered one.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritonctl.loadtest.slo import Figures
from tritonctl.metrics import Metrics, ModelDelta, diff

PERCENTILES = (0.5, 0.66, 0.75, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0)


def exact_percentile(values: np.ndarray, q: float) -> float:
    """The smallest value with at least ``q`` of ``values`` at or below it (no interpolation).

    An observed latency, never one between two requests; ``inf`` entries (unanswered requests)
    sort last. ``nan`` when there are no values.
    """
    if not len(values):
        return math.nan
    return float(np.percentile(values, q * 100.0, method="inverted_cdf"))


def locust_percentile(response_times: dict[int, int], num_requests: int, percent: float) -> int:
    """Locust's ``calculate_response_time_percentile`` over its rounded response-time histogram."""
    wanted = int(num_requests * percent)
    processed = 0
    for response_time in sorted(response_times, reverse=True):
        processed += response_times[response_time]
        if num_requests - processed <= wanted:
            return response_time
    return 0


@dataclass(frozen=True)
class LocustTotals:
    """Locust's aggregated statistics over the measured window."""

    requests: int
    failures: int
    start: float
    end: float
    total_response_time: float
    min_ms: float
    max_ms: float
    response_times: dict[int, int]

    @property
    def rps(self) -> float:
        """Locust's ``total_rps``: requests over first-to-last request of the window."""
        span = self.end - self.start
        return self.requests / span if span > 0 else 0.0

    @property
    def avg_ms(self) -> float:
        return self.total_response_time / self.requests if self.requests else 0.0

    def percentile(self, percent: float) -> float:
        return float(locust_percentile(self.response_times, self.requests, percent))

    def figures(self) -> Figures:
        return Figures(
            requests=self.requests,
            failures=self.failures,
            rps=self.rps,
            p50_ms=self.percentile(0.5),
            p95_ms=self.percentile(0.95),
            p99_ms=self.percentile(0.99),
            avg_ms=self.avg_ms,
        )


def read_locust_json(path: Path) -> LocustTotals:
    """Aggregate the entries of Locust's ``--json-file`` (one per request name)."""
    entries = json.loads(path.read_text()) if path.exists() else []
    histogram: dict[int, int] = {}
    for entry in entries:
        for key, count in entry.get("response_times", {}).items():
            histogram[int(float(key))] = histogram.get(int(float(key)), 0) + int(count)
    starts = [e["start_time"] for e in entries if e.get("num_requests")]
    ends = [e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")]
    mins = [e["min_response_time"] for e in entries if e.get("min_response_time") is not None]
    return LocustTotals(
        requests=sum(int(e.get("num_requests", 0)) for e in entries),
        failures=sum(int(e.get("num_failures", 0)) for e in entries),
        start=min(starts) if starts else 0.0,
        end=max(ends) if ends else 0.0,
        total_response_time=sum(float(e.get("total_response_time", 0)) for e in entries),
        min_ms=min(mins) if mins else 0.0,
        max_ms=max((float(e.get("max_response_time", 0)) for e in entries), default=0.0),
        response_times=histogram,
    )


def read_failures(path: Path) -> list[dict[str, Any]]:
    """Rows of Locust's failures table: method, name, error (Triton's message), occurrences."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    failures = [
        {
            "method": row["Method"],
            "name": row["Name"],
            "error": row["Error"],
            "occurrences": int(row["Occurrences"]),
        }
        for row in rows
    ]
    return sorted(failures, key=lambda f: -f["occurrences"])


@dataclass(frozen=True)
class Samples:
    """Every request of the run, all processes merged, in the order they were due.

    ``end`` is ``nan`` for a request never answered (its latency and service time too).
    """

    sent: np.ndarray
    end: np.ndarray
    latency_ms: np.ndarray
    service_ms: np.ndarray
    ok: np.ndarray

    def __len__(self) -> int:
        return len(self.sent)

    @property
    def answered(self) -> np.ndarray:
        return ~np.isnan(self.end)

    def window(self, start: float, end: float | None = None) -> Samples:
        """The requests due in ``[start, end)``."""
        keep = self.sent >= start
        if end is not None:
            keep &= self.sent < end
        return Samples(
            self.sent[keep], self.end[keep], self.latency_ms[keep], self.service_ms[keep],
            self.ok[keep],
        )  # fmt: skip

    def figures(self, seconds: float) -> Figures:
        """Exact figures of these requests, sent over ``seconds``."""
        answered = self.answered
        good = answered & self.ok
        failures = int((answered & ~self.ok).sum())
        unanswered = int((~answered).sum())
        # Latency of every request that did not fail: unanswered ones are slower than any.
        latency = np.concatenate([self.latency_ms[good], np.full(unanswered, np.inf)])
        finite = self.latency_ms[good]
        p50, p95, p99 = (exact_percentile(latency, q) for q in (0.5, 0.95, 0.99))
        return Figures(
            requests=len(self),
            failures=failures,
            rps=int(good.sum()) / seconds if seconds > 0 else 0.0,
            p50_ms=0.0 if math.isnan(p50) else p50,
            p95_ms=0.0 if math.isnan(p95) else p95,
            p99_ms=0.0 if math.isnan(p99) else p99,
            avg_ms=float(finite.mean()) if len(finite) else 0.0,
            offered_rps=len(self) / seconds if seconds > 0 else 0.0,
            unanswered=unanswered,
            max_ms=float(finite.max()) if len(finite) else 0.0,
        )


def read_samples(folder: Path) -> Samples:
    parts = []
    for path in sorted(folder.glob("samples-*.csv")):
        data = np.genfromtxt(path, delimiter=",", skip_header=1, ndmin=2)
        if data.size:
            parts.append(data.reshape(-1, 5))
    if not parts:
        empty = np.zeros(0)
        return Samples(empty, empty, empty, empty, empty.astype(bool))
    data = np.concatenate(parts)
    data = data[np.argsort(data[:, 0], kind="stable")]
    return Samples(data[:, 0], data[:, 1], data[:, 2], data[:, 3], data[:, 4].astype(bool))


@dataclass(frozen=True)
class LoadGeneratorCpu:
    """The Locust processes' own CPU use over the window: the load generator's cost."""

    processes: int
    cores: float  # CPU seconds per second, summed over the processes
    busiest_process: float  # the same, for the busiest one (1.0 = a whole core)

    @property
    def machine_share(self) -> float:
        """The share of this machine's cores the load generator took."""
        return self.cores / (os.cpu_count() or 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "cpu_cores": round(self.cores, 3),
            "busiest_process_cores": round(self.busiest_process, 3),
            "machine_cores": os.cpu_count() or 1,
            "machine_share": round(self.machine_share, 3),
        }


def read_cpu(folder: Path, start: float, end: float) -> LoadGeneratorCpu | None:
    """CPU cores each Locust process used between ``start`` and ``end`` (interpolated)."""
    per_process = []
    for path in sorted(folder.glob("cpu-*.csv")):
        data = np.genfromtxt(path, delimiter=",", skip_header=1, ndmin=2).reshape(-1, 2)
        if len(data) < 2 or end <= start:
            continue
        used = np.interp([start, end], data[:, 0], data[:, 1])
        per_process.append(float(used[1] - used[0]) / (end - start))
    if not per_process:
        return None
    return LoadGeneratorCpu(len(per_process), sum(per_process), max(per_process))


def read_history(path: Path) -> list[dict[str, Any]]:
    """The ``Aggregated`` rows of Locust's ``_stats_history.csv``: time, users, counts."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") != "Aggregated":
                continue
            rows.append(
                {
                    "timestamp": float(row["Timestamp"]),
                    "users": int(row["User Count"]),
                    "requests": int(row["Total Request Count"]),
                    "failures": int(row["Total Failure Count"]),
                }
            )
    return rows


@dataclass
class ServerView:
    """Triton's own account of the window: per-model counter deltas from /metrics."""

    models: dict[str, ModelDelta] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""
    #: who answered each scrape: address, and for a local server its process id and start time
    servers: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def for_model(self, name: str) -> ModelDelta | None:
        return self.models.get(name)


def different_servers(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Why two scrapes came from different servers ("" when nothing says so)."""
    if not before or not after:
        return ""
    if before.get("pid") and (before.get("pid"), before.get("started_at")) != (
        after.get("pid"),
        after.get("started_at"),
    ):
        return (
            f"the local server was process {before.get('pid')} started at "
            f"{before.get('started_at')} for the first scrape and process {after.get('pid')} "
            f"started at {after.get('started_at')} for the second (it restarted)"
        )
    if before.get("address") != after.get("address"):
        return (
            f"the first scrape was answered by {before.get('address')} and the second by "
            f"{after.get('address')} (a load balancer in front of several servers?); point "
            "--metrics-url at one pod"
        )
    return ""


def read_server_view(
    folder: Path, events: dict[str, Any], model: str, steps: list[str] | None = None
) -> ServerView:
    before_path, after_path = folder / "metrics_before.prom", folder / "metrics_after.prom"
    if not (before_path.exists() and after_path.exists()):
        reason = "; ".join(events.get("errors", [])) or "no metrics URL"
        return ServerView(error=f"Triton /metrics not scraped ({reason})")
    servers = {
        "before": events.get("metrics_before_server") or {},
        "after": events.get("metrics_after_server") or {},
    }
    mixed = different_servers(servers["before"], servers["after"])
    if mixed:
        return ServerView(error=f"no server breakdown: {mixed}", servers=servers)
    before = Metrics.parse(before_path.read_text(), events.get("metrics_before_at", 0.0))
    after = Metrics.parse(after_path.read_text(), events.get("metrics_after_at", 0.0))
    deltas = diff(before, after)
    # The model under test first, then its ensemble steps in pipeline order, then the rest.
    rank = {name: i for i, name in enumerate([model, *(steps or [])])}
    ordered = dict(
        sorted(deltas.items(), key=lambda kv: (rank.get(kv[0], len(rank)), -kv[1].requests))
    )
    warnings = [
        f"{name}: a counter went down between the scrapes (the model or the server restarted); "
        "its figures count from the restart"
        for name, delta in ordered.items()
        if delta.restarted
    ]
    return ServerView(
        ordered, max(after.taken_at - before.taken_at, 0.0), servers=servers, warnings=warnings
    )


@dataclass
class Measurement:
    """Everything one run produced, parsed."""

    folder: Path
    totals: LocustTotals
    failures: list[dict[str, Any]]
    samples: Samples
    history: list[dict[str, Any]]
    events: dict[str, Any]
    server: ServerView

    @property
    def warmup_end(self) -> float:
        return float(self.events.get("warmup_end") or self.events.get("test_start") or 0.0)

    @property
    def window_end(self) -> float:
        """End of the measured window (the drain follows it)."""
        end = self.events.get("window_end") or self.events.get("test_stop")
        if end:
            return float(end)
        return float(self.samples.sent.max()) if len(self.samples) else self.warmup_end

    @property
    def window_s(self) -> float:
        return max(self.window_end - self.warmup_end, 0.0)

    @property
    def measured(self) -> Samples:
        """The requests due inside the measured window."""
        return self.samples.window(self.warmup_end, self.window_end)

    def figures(self) -> Figures:
        """Exact figures of the window's requests (what the objectives are checked against)."""
        return self.measured.figures(self.window_s)

    def load_generator(self) -> LoadGeneratorCpu | None:
        return read_cpu(self.folder, self.warmup_end, self.window_end)

    def server_warnings(self, model: str) -> list[str]:
        """The server's view next to the client's: does /metrics see the load that was sent?"""
        warnings = list(self.server.warnings)
        target = self.server.for_model(model)
        answered = int(self.measured.answered.sum())
        if target is not None and answered >= 50 and target.requests < 0.75 * answered:
            warnings.append(
                f"Triton counted {target.requests:.0f} requests for {model} in the window, the "
                f"client {answered}: the metrics endpoint may be one of several servers behind "
                "a load balancer, so its breakdown describes that one only"
            )
        return warnings


def read_measurement(folder: Path, model: str, steps: list[str] | None = None) -> Measurement:
    events_path = folder / "events.json"
    events = json.loads(events_path.read_text()) if events_path.exists() else {}
    return Measurement(
        folder=folder,
        totals=read_locust_json(folder / "locust_stats.json"),
        failures=read_failures(folder / "locust_failures_final.csv"),
        samples=read_samples(folder),
        history=read_history(folder / "locust_stats_history.csv"),
        events=events,
        server=read_server_view(folder, events, model, steps),
    )
