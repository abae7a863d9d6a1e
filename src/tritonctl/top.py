"""``tritonctl top``: a live per-model view of a Triton server, built from its ``/metrics``.

Two scrapes ``interval`` seconds apart give the rates (``tritonctl.metrics.diff``); the latency
percentiles come from Triton's own summaries (``--metrics-config summary_latencies=true``), and
the drift columns from the gauges the post-processing models export.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from rich.table import Table

from tritonctl.metrics import Metrics, ModelDelta, diff_model, scrape

DRIFT_PSI = "tritonctl_drift_psi"
LOW_CONFIDENCE = "tritonctl_low_confidence_ratio"
DEFAULT_URL = "http://localhost:8002/metrics"


def metrics_url(url: str) -> str:
    """``host:port``, ``http://host:port`` or the full ``/metrics`` URL → the ``/metrics`` URL."""
    if "://" not in url:
        url = f"http://{url}"
    return url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"


@dataclass(frozen=True)
class TopRow:
    """One model's line in the view."""

    model: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    queue_ms: float
    batch_size: float
    cache_hit_ratio: float
    drift_psi: float
    low_confidence_ratio: float
    total_requests: float


def _summary_ms(metrics: Metrics, name: str, model: str, quantile: float) -> float:
    values = [
        s.value
        for s in metrics.select(name, model=model)
        if s.labels.get("quantile") and float(s.labels["quantile"]) == quantile
    ]
    return sum(values) / 1000.0 if values and not any(map(math.isnan, values)) else math.nan


def latency_ms(metrics: Metrics, model: str, quantile: float) -> float:
    """Triton's request-latency quantile; for ensembles, which export no request summary in
    2.51, the queue plus compute-infer quantiles (an approximation: quantiles do not add)."""
    value = _summary_ms(metrics, "nv_inference_request_summary_us", model, quantile)
    if math.isnan(value):
        value = _summary_ms(metrics, "nv_inference_queue_summary_us", model, quantile) + (
            _summary_ms(metrics, "nv_inference_compute_infer_summary_us", model, quantile)
        )
    return value


def _gauge(metrics: Metrics, name: str, model: str) -> float:
    values = [s.value for s in metrics.select(name, model=model)]
    return max(values) if values else math.nan


def rows(before: Metrics, after: Metrics) -> list[TopRow]:
    """Every model that has served a request or exports a drift gauge, by name."""
    drift_models = {
        s.labels["model"]
        for s in after.samples
        if s.name in (DRIFT_PSI, LOW_CONFIDENCE) and "model" in s.labels
    }
    result = []
    for name in sorted(set(after.models()) | drift_models):
        now = after.model(name)
        if now.request_success + now.request_failure == 0 and name not in drift_models:
            continue
        delta: ModelDelta = diff_model(before.model(name), now, after.taken_at - before.taken_at)
        lookups = now.cache_hits + now.cache_misses
        result.append(
            TopRow(
                model=name,
                requests_per_s=delta.requests / delta.seconds if delta.seconds > 0 else 0.0,
                p50_ms=latency_ms(after, name, 0.5),
                p99_ms=latency_ms(after, name, 0.99),
                queue_ms=delta.avg_queue_ms if delta.success else math.nan,
                batch_size=delta.avg_batch_size if delta.exec_count else math.nan,
                cache_hit_ratio=delta.cache_hit_ratio
                if delta.cache_hits + delta.cache_misses
                else (now.cache_hits / lookups if lookups else math.nan),
                drift_psi=_gauge(after, DRIFT_PSI, name),
                low_confidence_ratio=_gauge(after, LOW_CONFIDENCE, name),
                total_requests=now.request_success + now.request_failure,
            )
        )
    return result


def _fmt(value: float, spec: str) -> str:
    return "–" if math.isnan(value) else format(value, spec)


def _psi(value: float) -> str:
    if math.isnan(value):
        return "–"
    colour = "green" if value < 0.1 else "yellow" if value < 0.25 else "red"
    return f"[{colour}]{value:.3f}[/]"


def table(models: list[TopRow], title: str = "") -> Table:
    view = Table(title=title or None, title_justify="left")
    for header in (
        "model",
        "req/s",
        "p50 ms",
        "p99 ms",
        "queue ms",
        "batch",
        "cache hit",
        "drift PSI",
        "low conf",
        "requests",
    ):
        view.add_column(header, justify="left" if header == "model" else "right")
    for row in models:
        view.add_row(
            row.model,
            _fmt(row.requests_per_s, ".1f"),
            _fmt(row.p50_ms, ".2f"),
            _fmt(row.p99_ms, ".2f"),
            _fmt(row.queue_ms, ".2f"),
            _fmt(row.batch_size, ".1f"),
            _fmt(row.cache_hit_ratio * 100, ".0f")
            + ("" if math.isnan(row.cache_hit_ratio) else "%"),
            _psi(row.drift_psi),
            _fmt(row.low_confidence_ratio, ".3f"),
            _fmt(row.total_requests, ".0f"),
        )
    return view


def snapshots(url: str, interval: float) -> Iterator[tuple[Metrics, Metrics]]:
    """Successive (previous, current) scrape pairs, ``interval`` seconds apart."""
    before = scrape(url)
    while True:
        time.sleep(interval)
        after = scrape(url)
        yield before, after
        before = after


def once(url: str, interval: float = 1.0) -> Table:
    """The view from two scrapes ``interval`` seconds apart (``tritonctl top --once``)."""
    before, after = next(snapshots(url, interval))
    return table(rows(before, after), title=f"{url} · {time.strftime('%H:%M:%S')}")
