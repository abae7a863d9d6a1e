"""Read what a Locust run left in its folder: final statistics, samples, failures, /metrics.

Headline figures come from Locust's own final statistics (``locust_stats.json``, the window after
the warm-up), with percentiles computed exactly as Locust computes them, so they agree with
Locust's tables. The per-request samples give the time series for the plots.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tritonctl.loadtest.slo import Figures
from tritonctl.metrics import Metrics, ModelDelta, diff

PERCENTILES = (0.5, 0.66, 0.75, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0)


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
    """Every request of the run, all processes merged, sorted by completion time."""

    timestamp: np.ndarray
    latency_ms: np.ndarray
    ok: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamp)

    def window(self, start: float, end: float | None = None) -> Samples:
        keep = self.timestamp >= start
        if end is not None:
            keep &= self.timestamp <= end
        return Samples(self.timestamp[keep], self.latency_ms[keep], self.ok[keep])


def read_samples(folder: Path) -> Samples:
    parts = []
    for path in sorted(folder.glob("samples-*.csv")):
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        if data.size:
            parts.append(data)
    if not parts:
        empty = np.zeros(0)
        return Samples(empty, empty, empty.astype(bool))
    data = np.concatenate(parts)
    data = data[np.argsort(data[:, 0], kind="stable")]
    return Samples(data[:, 0], data[:, 1], data[:, 2].astype(bool))


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

    def for_model(self, name: str) -> ModelDelta | None:
        return self.models.get(name)


def read_server_view(
    folder: Path, events: dict[str, Any], model: str, steps: list[str] | None = None
) -> ServerView:
    before_path, after_path = folder / "metrics_before.prom", folder / "metrics_after.prom"
    if not (before_path.exists() and after_path.exists()):
        reason = "; ".join(events.get("errors", [])) or "no metrics URL"
        return ServerView(error=f"Triton /metrics not scraped ({reason})")
    before = Metrics.parse(before_path.read_text(), events.get("metrics_before_at", 0.0))
    after = Metrics.parse(after_path.read_text(), events.get("metrics_after_at", 0.0))
    deltas = diff(before, after)
    # The model under test first, then its ensemble steps in pipeline order, then the rest.
    rank = {name: i for i, name in enumerate([model, *(steps or [])])}
    ordered = dict(
        sorted(deltas.items(), key=lambda kv: (rank.get(kv[0], len(rank)), -kv[1].requests))
    )
    return ServerView(ordered, max(after.taken_at - before.taken_at, 0.0))


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
    def window_s(self) -> float:
        """The measured window: end of warm-up to test stop (Locust's span if unknown)."""
        stop = self.events.get("test_stop")
        if stop and self.events.get("warmup_end"):
            return max(float(stop) - self.warmup_end, 0.0)
        return max(self.totals.end - self.totals.start, 0.0)

    def figures(self) -> Figures:
        """Locust's figures, with throughput over the whole measured window."""
        figures = self.totals.figures()
        window = self.window_s
        rps = figures.requests / window if window > 0 else figures.rps
        return replace(figures, rps=rps)


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
