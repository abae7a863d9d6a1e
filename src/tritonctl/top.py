"""``tritonctl top``: a live per-model view of a Triton server, built from its ``/metrics``.

Two scrapes ``interval`` seconds apart give the rates (``tritonctl.metrics.diff``); the latency
percentiles come from Triton's own summaries (``--metrics-config summary_latencies=true``), and
the drift columns from the gauges the post-processing models export. A drift monitor whose
window is still filling shows ``warming (n/N)``: no score is published below N items.

The table fits the terminal: model names are never cut; columns that do not fit are dropped,
least useful first, after the headers have been shortened.

When the server runs on this machine, a second table shows each process's CPU % and resident
memory: ``tritonserver`` itself and every Python backend stub, by model name (the step a
pipeline waits on is the stub at 100 % of a core), beside Triton's own machine-wide
``nv_cpu_utilization`` and ``nv_cpu_memory_used_bytes``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table

from tritonctl.bench.profile import process_cpu_seconds, stub_pids
from tritonctl.drift_window import LOW_METRIC, MIN_SAMPLES_METRIC, PSI_METRIC, SAMPLES_METRIC
from tritonctl.metrics import Metrics, ModelDelta, diff_model, scrape
from tritonctl.procfs import processes
from tritonctl.server import _cmdline

DRIFT_PSI, LOW_CONFIDENCE = PSI_METRIC, LOW_METRIC
DEFAULT_URL = "http://localhost:8002/metrics"
SERVER_BINARY = "tritonserver"


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
    #: items in the drift window (the least filled of the model's signals) and the minimum a
    #: score needs; NaN where the model exports no drift gauges
    drift_samples: float = math.nan
    drift_min_samples: float = math.nan

    @property
    def warming(self) -> bool:
        """A drift monitor whose window is still below the minimum: no score yet."""
        return math.isnan(self.drift_psi) and self.drift_samples < self.drift_min_samples


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


def _gauge(metrics: Metrics, name: str, model: str, pick: Callable[..., float] = max) -> float:
    """The largest (or ``pick``) of a model's gauges, NaN values left out; NaN if none is set."""
    values = [s.value for s in metrics.select(name, model=model) if not math.isnan(s.value)]
    return pick(values) if values else math.nan


def rows(before: Metrics, after: Metrics) -> list[TopRow]:
    """Every model that has served a request or exports a drift gauge, by name."""
    drift_models = {
        s.labels["model"]
        for s in after.samples
        if s.name in (DRIFT_PSI, LOW_CONFIDENCE, SAMPLES_METRIC) and "model" in s.labels
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
                drift_samples=_gauge(after, SAMPLES_METRIC, name, pick=min),
                drift_min_samples=_gauge(after, MIN_SAMPLES_METRIC, name),
            )
        )
    return result


# --- the model table ------------------------------------------------------------------------


def _fmt(value: float, spec: str) -> str:
    return "–" if math.isnan(value) else format(value, spec)


def _percent(value: float) -> str:
    return "–" if math.isnan(value) else f"{value * 100:.0f}%"


def drift_cell(row: TopRow) -> str:
    """The PSI coloured by its reading, ``warming (n/N)`` below the minimum window, or –."""
    if row.warming:
        return f"[dim]warming ({row.drift_samples:.0f}/{row.drift_min_samples:.0f})[/]"
    value = row.drift_psi
    if math.isnan(value):
        return "–"
    colour = "green" if value < 0.1 else "yellow" if value < 0.25 else "red"
    return f"[{colour}]{value:.3f}[/]"


@dataclass(frozen=True)
class Column:
    header: str
    short: str  # the header when the full ones do not fit
    cell: Callable[[TopRow], str]


#: display order
COLUMNS = {
    "req/s": Column("req/s", "req/s", lambda r: _fmt(r.requests_per_s, ".1f")),
    "p50": Column("p50 ms", "p50", lambda r: _fmt(r.p50_ms, ".1f")),
    "p99": Column("p99 ms", "p99", lambda r: _fmt(r.p99_ms, ".1f")),
    "queue": Column("queue ms", "queue", lambda r: _fmt(r.queue_ms, ".2f")),
    "batch": Column("batch", "bat", lambda r: _fmt(r.batch_size, ".1f")),
    "cache": Column("cache hit", "hit", lambda r: _percent(r.cache_hit_ratio)),
    "drift": Column("drift PSI", "PSI", drift_cell),
    "low": Column("low conf", "low", lambda r: _fmt(r.low_confidence_ratio, ".3f")),
    "requests": Column("requests", "reqs", lambda r: _fmt(r.total_requests, ".0f")),
}
#: what is kept longest when the terminal is narrow, most important first
PRIORITY = ("req/s", "p99", "drift", "p50", "queue", "batch", "cache", "low", "requests")


def _model_table(models: Sequence[TopRow], keys: Sequence[str], short: bool, title: str) -> Table:
    view = Table(title=title or None, title_justify="left", pad_edge=False, expand=False)
    width = max([len("model"), *(len(r.model) for r in models)])
    view.add_column("model", justify="left", no_wrap=True, min_width=width)
    shown = [k for k in COLUMNS if k in keys]
    for key in shown:
        column = COLUMNS[key]
        view.add_column(column.short if short else column.header, justify="right", no_wrap=True)
    for row in models:
        view.add_row(row.model, *(COLUMNS[k].cell(row) for k in shown))
    return view


def _width(console: Console, renderable: RenderableType) -> int:
    """The width ``renderable`` takes unwrapped (measured as if the terminal had no limit)."""
    unlimited = console.options.update_width(1_000_000)
    return Measurement.get(console, unlimited, renderable).maximum


def table(
    models: list[TopRow], title: str = "", width: int | None = None, console: Console | None = None
) -> Table:
    """The model table, as wide as it needs but no wider than ``width`` (the terminal's):
    full names always, then as many columns as fit (``PRIORITY``), full headers if they fit."""
    from tritonctl.console import console as default_console

    console = console or default_console
    width = width or console.width
    for count in range(len(PRIORITY), -1, -1):
        for short in (False, True):
            view = _model_table(models, PRIORITY[:count], short, title)
            if _width(console, view) <= width:
                return view
    return view  # model names alone are wider than the terminal: rich wraps the rest


# --- processes: tritonserver and its stubs --------------------------------------------------


@dataclass(frozen=True)
class ProcessSample:
    """CPU seconds and resident memory of a server's processes at one moment."""

    taken_at: float
    names: dict[int, str]  # pid -> "tritonserver" or the model a stub serves
    cpu_seconds: dict[int, float]
    rss_bytes: dict[int, int]


@dataclass(frozen=True)
class ProcessRow:
    name: str
    processes: int
    cpu_percent: float  # of one core, summed over the name's processes
    rss_bytes: int


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for pid, fields in processes():
        tree.setdefault(int(fields[1]), []).append(pid)
    return tree


def server_pid(url: str) -> int | None:
    """The local ``tritonserver`` whose metrics endpoint is ``url``, or None (a remote server,
    or one this user cannot see)."""
    parts = urlsplit(metrics_url(url))
    if parts.hostname not in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or parts.port is None:
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = _cmdline(int(entry.name))
            if argv and Path(argv[0]).name == SERVER_BINARY and _metrics_port(argv) == parts.port:
                return int(entry.name)
    return None


def _metrics_port(argv: Sequence[str]) -> int:
    """The metrics port a ``tritonserver`` command line asks for (8002 unless it says)."""
    for index, arg in enumerate(argv):
        if arg.startswith("--metrics-port="):
            return int(arg.split("=", 1)[1])
        if arg == "--metrics-port" and index + 1 < len(argv):
            return int(argv[index + 1])
    return 8002


def _rss_bytes(pid: int) -> int | None:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def sample_processes(pid: int) -> ProcessSample:
    """The server ``pid`` and its descendants, each named by what it serves."""
    tree, family, queue = _children(), [pid], [pid]
    while queue:
        children = tree.get(queue.pop(), [])
        family += children
        queue += children
    names = {pid: SERVER_BINARY}
    for model, pids in stub_pids(family).items():
        names.update(dict.fromkeys(pids, model))
    rss = {p: r for p in names if (r := _rss_bytes(p)) is not None}
    return ProcessSample(time.monotonic(), names, process_cpu_seconds(list(names)), rss)


def process_rows(before: ProcessSample, after: ProcessSample) -> list[ProcessRow]:
    """Per name (the server, each model's stubs): CPU % over the interval and resident memory,
    busiest first."""
    seconds = after.taken_at - before.taken_at
    totals: dict[str, list[float]] = {}
    for pid, name in after.names.items():
        if pid not in after.cpu_seconds:
            continue  # exited between the two samples
        used = after.cpu_seconds[pid] - before.cpu_seconds.get(pid, after.cpu_seconds[pid])
        entry = totals.setdefault(name, [0, 0.0, 0])
        entry[0] += 1
        entry[1] += used / seconds * 100.0 if seconds > 0 else math.nan
        entry[2] += after.rss_bytes.get(pid, 0)
    found = [ProcessRow(n, int(c), cpu, int(rss)) for n, (c, cpu, rss) in totals.items()]
    return sorted(found, key=lambda r: -r.cpu_percent if not math.isnan(r.cpu_percent) else 0)


def process_table(found: Sequence[ProcessRow], metrics: Metrics) -> Table:
    """Processes beside Triton's own (machine-wide) CPU and memory metrics."""
    utilization = (
        metrics.value("nv_cpu_utilization") if metrics.select("nv_cpu_utilization") else math.nan
    )
    used = metrics.value("nv_cpu_memory_used_bytes")
    total = metrics.value("nv_cpu_memory_total_bytes")
    caption = f"Triton: machine CPU {_percent(utilization)}"
    if total:
        caption += f", memory {used / 2**30:.1f} of {total / 2**30:.1f} GiB"
    view = Table(caption=caption, caption_justify="left", pad_edge=False)
    view.add_column("process (model)", no_wrap=True)
    for header in ("procs", "CPU %", "RSS MiB"):
        view.add_column(header, justify="right", no_wrap=True)
    for row in found:
        view.add_row(
            row.name,
            str(row.processes),
            _fmt(row.cpu_percent, ".0f"),
            f"{row.rss_bytes / 2**20:.0f}",
        )
    return view


# --- the view -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Two scrapes (and, for a local server, two process samples) ``interval`` apart."""

    before: Metrics
    after: Metrics
    processes: tuple[ProcessSample, ProcessSample] | None = None


def snapshots(url: str, interval: float) -> Iterator[Snapshot]:
    """Successive snapshots, ``interval`` seconds apart."""
    pid = server_pid(url)
    before = scrape(url)
    procs = sample_processes(pid) if pid else None
    while True:
        time.sleep(interval)
        after = scrape(url)
        if pid and not Path(f"/proc/{pid}").exists():  # restarted (serve --max-restarts)
            pid, procs = server_pid(url), None
        now = sample_processes(pid) if pid else None
        yield Snapshot(before, after, (procs, now) if procs and now else None)
        before, procs = after, now


def view(snapshot: Snapshot, title: str = "", width: int | None = None) -> RenderableType:
    """The model table and, for a local server, the process table below it."""
    models = table(rows(snapshot.before, snapshot.after), title=title, width=width)
    if snapshot.processes is None:
        return models
    found = process_rows(*snapshot.processes)
    return Group(models, process_table(found, snapshot.after))


def once(url: str, interval: float = 1.0, width: int | None = None) -> RenderableType:
    """The view from two scrapes ``interval`` seconds apart (``tritonctl top --once``)."""
    snapshot = next(snapshots(url, interval))
    return view(snapshot, title=f"{url} · {time.strftime('%H:%M:%S')}", width=width)
