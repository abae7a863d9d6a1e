"""Measurement window: discard the warm-up and scrape Triton's ``/metrics`` around what is kept.

On the master (or the only process), ``LOADTEST_WARMUP_S`` seconds after the test starts, the
statistics are reset (on every worker too) and Triton's metrics are scraped. The window ends
``LOADTEST_DURATION_S`` seconds later (when the test stops, if unset), with a second scrape;
the load goes on until Locust's ``--run-time`` ends, so requests sent late in the window can
still be answered (the drain).

With ``LOADTEST_OUTPUT_DIR`` set, that folder receives:

- ``events.json``: the window's Unix times, and who answered each scrape (the address it came
  from; with ``LOADTEST_SERVER_PID``, that local server's process id and start time), so two
  scrapes from different servers (a restart, a load balancer) are not mixed;
- ``metrics_before.prom`` / ``metrics_after.prom``;
- ``samples-<pid>.csv``: every request of each process: when it was due (``sent``), when it was
  answered (``end``, empty if it never was), latency from ``sent``, service time, success;
- ``cpu-<pid>.csv``: the process's own CPU seconds over time (the load generator's cost);
- at exit, ``locust_stats_final.csv`` / ``locust_failures_final.csv`` (Locust's own tables,
  written by its ``StatsCSV`` once every worker's last report is in).

``TRITON_METRICS_URL`` names the metrics endpoint (no scrape without it).
"""

from __future__ import annotations

import csv
import http.client
import itertools
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

log = logging.getLogger("tritonctl.loadtest")

RESET_MESSAGE = "tritonctl_reset_stats"
RESET_ACK = "tritonctl_reset_stats_done"
WARMUP_S = float(os.environ.get("LOADTEST_WARMUP_S", "0") or 0)
DURATION_S = float(os.environ.get("LOADTEST_DURATION_S", "0") or 0)
OUTPUT_DIR = os.environ.get("LOADTEST_OUTPUT_DIR", "")
METRICS_URL = os.environ.get("TRITON_METRICS_URL", "")
SERVER_PID = int(os.environ.get("LOADTEST_SERVER_PID", "0") or 0)
CPU_EVERY_S = 0.5

_events: dict[str, Any] = {
    "warmup_s": WARMUP_S,
    "duration_s": DURATION_S,
    "metrics_url": METRICS_URL,
}
#: (due, answered, latency ms from due, service ms, ok) of every request this process made
_samples: list[tuple[float, float, float, float, int]] = []
#: requests due but not answered yet: token -> due time
_in_flight: dict[int, float] = {}
_tokens = itertools.count()
#: (Unix time, CPU seconds of this process)
_cpu: list[tuple[float, float]] = []
_environment: list[Environment] = []
#: workers that have not yet acknowledged the end of the warm-up
_pending: set[str] = set()


def request_due(sent: float) -> int:
    """Note a request due at ``sent``; the token goes back to ``request_done``."""
    token = next(_tokens)
    _in_flight[token] = sent
    return token


def request_done(token: int) -> None:
    _in_flight.pop(token, None)


def _save(name: str, text: str) -> None:
    if OUTPUT_DIR:
        Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        (Path(OUTPUT_DIR) / name).write_text(text)


def _local_server() -> dict[str, Any]:
    """The local server's process id and start time (Unix seconds), from ``/proc``."""
    try:
        stat = Path(f"/proc/{SERVER_PID}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return {"pid": SERVER_PID, "running": False}
    ticks = int(stat[stat.rfind(")") + 2 :].split()[19])  # field 22: start time, clock ticks
    return {"pid": SERVER_PID, "started_at": round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)}


def _fetch(url: str) -> tuple[str, str]:
    """The body of ``url``, and the address (ip:port) of the server that sent it."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port or (443 if https else 80), timeout=5)
    try:
        connection.request(
            "GET", (parts.path or "/metrics") + (f"?{parts.query}" if parts.query else "")
        )
        peer = connection.sock.getpeername() if connection.sock is not None else ("?", 0)
        response = connection.getresponse()
        body = response.read().decode("utf-8", errors="replace")
        if response.status != 200:
            raise OSError(f"HTTP {response.status} {response.reason}")
        return body, f"{peer[0]}:{peer[1]}"
    finally:
        connection.close()


def _scrape(which: str) -> None:
    """Save ``/metrics`` as ``metrics_<which>.prom``; note when, and which server answered."""
    if not METRICS_URL:
        return
    try:
        text, peer = _fetch(METRICS_URL)
        _save(f"metrics_{which}.prom", text)
        _events[f"metrics_{which}_at"] = time.time()
        server: dict[str, Any] = {"address": peer}
        if SERVER_PID:
            server.update(_local_server())
        _events[f"metrics_{which}_server"] = server
    except OSError as error:
        _events.setdefault("errors", []).append(f"scraping {METRICS_URL}: {error}")
        log.warning("could not scrape %s: %s", METRICS_URL, error)


def _write_events() -> None:
    _save("events.json", json.dumps(_events, indent=2))


def _reset(environment: Environment) -> None:
    """Start the measured window: zero the statistics and scrape /metrics."""
    runner = environment.runner
    if runner is None or "warmup_end" in _events:
        return
    runner.stats.reset_all()
    _events["warmup_end"] = time.time()
    _events["users_at_warmup_end"] = runner.user_count
    _scrape("before")
    _write_events()
    if DURATION_S > 0:
        gevent.spawn_later(DURATION_S, _end_window)


def _end_window() -> None:
    """The measured window is over: scrape /metrics (the load goes on through the drain)."""
    if "window_end" in _events:
        return
    _events["window_end"] = time.time()
    _scrape("after")
    _write_events()


def _end_warmup(environment: Environment) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner) and runner.clients.all:
        # Workers report every few seconds. A report sent just before a worker resets still holds
        # warm-up samples, and it reaches the master before that worker's acknowledgement (one
        # ordered channel per worker): so the master resets once every worker has acknowledged.
        _pending.update(client.id for client in runner.clients.all)
        runner.send_message(RESET_MESSAGE)
        gevent.spawn_later(5, _reset, environment)  # a worker that never answers: go on anyway
    else:
        _reset(environment)


def _on_reset_ack(environment: Environment, msg: Any, **_: Any) -> None:
    _pending.discard(msg.node_id)
    if not _pending:
        _reset(environment)


def _on_reset_request(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    runner.stats.reset_all()  # drop what this worker measured but has not reported yet
    runner.send_message(RESET_ACK)


@events.request.add_listener
def _on_request(
    response_time: float,
    exception: BaseException | None = None,
    context: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    end = time.time()
    context = context or {}
    # Users that do not say when a request was due (other locustfiles) sent it just now.
    sent = float(context.get("sent", end - response_time / 1000.0))
    service = float(context.get("service_ms", response_time))
    _samples.append((sent, end, response_time, service, 0 if exception else 1))


def _sample_cpu() -> None:
    while True:
        _cpu.append((time.time(), time.process_time()))
        gevent.sleep(CPU_EVERY_S)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    _environment.append(environment)
    if OUTPUT_DIR:
        gevent.spawn(_sample_cpu)
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(RESET_MESSAGE, _on_reset_request)
    elif isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(RESET_ACK, _on_reset_ack)


def _start_warmup(environment: Environment) -> None:
    if "warmup_started" in _events:
        return
    _events["warmup_started"] = time.time()
    if WARMUP_S > 0:
        gevent.spawn_later(WARMUP_S, _end_warmup, environment)
    else:
        _reset(environment)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    _events["test_start"] = time.time()
    _write_events()
    if environment.shape_class is not None:
        _start_warmup(environment)  # a shape changes the load all along: count from the start


@events.spawning_complete.add_listener
def _on_spawning_complete(**_: Any) -> None:
    # Without a shape, the warm-up starts once every user runs: spawning is not steady load.
    environment = _environment[0] if _environment else None
    if environment is not None and not isinstance(environment.runner, WorkerRunner):
        _start_warmup(environment)


@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    _events["test_stop"] = time.time()
    _events["users_at_stop"] = environment.runner.user_count if environment.runner else 0
    if "window_end" not in _events:
        _events["window_end"] = _events["test_stop"]
        _scrape("after")
    _write_events()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if not OUTPUT_DIR:
        return
    folder = Path(OUTPUT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    # Requests never answered: due, but no answer time, latency or service time.
    unanswered = [(sent, math.nan, math.nan, math.nan, 0) for sent in _in_flight.values()]
    if _samples or unanswered:
        with open(folder / f"samples-{os.getpid()}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sent", "end", "latency_ms", "service_ms", "ok"])
            writer.writerows(
                (f"{sent:.6f}", f"{end:.6f}", f"{ms:.4f}", f"{service:.4f}", ok)
                for sent, end, ms, service, ok in [*_samples, *unanswered]
            )
    _cpu.append((time.time(), time.process_time()))
    with open(folder / f"cpu-{os.getpid()}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "cpu_s"])
        writer.writerows((f"{t:.3f}", f"{c:.4f}") for t, c in _cpu)
    if isinstance(environment.runner, WorkerRunner):
        return
    tables = StatsCSV(environment, PERCENTILES_TO_REPORT)
    with open(folder / "locust_stats_final.csv", "w", newline="") as handle:
        tables.requests_csv(csv.writer(handle))
    with open(folder / "locust_failures_final.csv", "w", newline="") as handle:
        tables.failures_csv(csv.writer(handle))
