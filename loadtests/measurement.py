"""Measurement window: discard the warm-up and scrape Triton's ``/metrics`` around what is kept.

On the master (or the only process), ``LOADTEST_WARMUP_S`` seconds after the test starts, the
statistics are reset (on every worker too) and Triton's metrics are scraped; they are scraped
again when the test stops. With ``LOADTEST_OUTPUT_DIR`` set, that folder receives
``events.json`` (the window's Unix times), ``metrics_before.prom`` / ``metrics_after.prom``,
``samples-<pid>.csv`` (every request of each process: end time, latency, success) and, at exit,
``locust_stats_final.csv`` / ``locust_failures_final.csv`` (Locust's own tables, written by its
``StatsCSV`` once every worker's last report is in; the periodic ``--csv`` files lag by up to 1 s).
``TRITON_METRICS_URL`` names the metrics endpoint (no scrape without it).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

log = logging.getLogger("tritonctl.loadtest")

RESET_MESSAGE = "tritonctl_reset_stats"
RESET_ACK = "tritonctl_reset_stats_done"
WARMUP_S = float(os.environ.get("LOADTEST_WARMUP_S", "0") or 0)
OUTPUT_DIR = os.environ.get("LOADTEST_OUTPUT_DIR", "")
METRICS_URL = os.environ.get("TRITON_METRICS_URL", "")

_events: dict[str, Any] = {"warmup_s": WARMUP_S, "metrics_url": METRICS_URL}
#: (end time, latency ms, ok) of every request this process made
_samples: list[tuple[float, float, int]] = []
_environment: list[Environment] = []
#: workers that have not yet acknowledged the end of the warm-up
_pending: set[str] = set()


def _save(name: str, text: str) -> None:
    if OUTPUT_DIR:
        Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        (Path(OUTPUT_DIR) / name).write_text(text)


def _scrape(which: str) -> None:
    """Save ``/metrics`` as ``metrics_<which>.prom`` and note when it was taken."""
    if not METRICS_URL:
        return
    try:
        with urllib.request.urlopen(METRICS_URL, timeout=5) as response:
            _save(f"metrics_{which}.prom", response.read().decode("utf-8", errors="replace"))
        _events[f"metrics_{which}_at"] = time.time()
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
def _on_request(response_time: float, exception: BaseException | None = None, **_: Any) -> None:
    _samples.append((time.time(), response_time, 0 if exception else 1))


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    _environment.append(environment)
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
    _scrape("after")
    _write_events()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if not OUTPUT_DIR:
        return
    folder = Path(OUTPUT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    if _samples:
        with open(folder / f"samples-{os.getpid()}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["timestamp", "latency_ms", "ok"])
            writer.writerows((f"{t:.6f}", f"{ms:.4f}", ok) for t, ms, ok in _samples)
    if isinstance(environment.runner, WorkerRunner):
        return
    tables = StatsCSV(environment, PERCENTILES_TO_REPORT)
    with open(folder / "locust_stats_final.csv", "w", newline="") as handle:
        tables.requests_csv(csv.writer(handle))
    with open(folder / "locust_failures_final.csv", "w", newline="") as handle:
        tables.failures_csv(csv.writer(handle))
