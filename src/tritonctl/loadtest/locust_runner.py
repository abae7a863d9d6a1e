"""Run ``loadtests/locustfile.py`` headless as child processes: one, or a master and N workers.

Locust monkey-patches the interpreter with gevent when imported, so it never runs inside the
``tritonctl`` process: it is always ``python -m locust`` in a subprocess, configured with
command-line options and the environment variables the locustfile documents.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tritonctl import paths
from tritonctl.loadtest.slo import SloProfile
from tritonctl.server import LocalTriton, free_port

#: Seconds a Locust process may take to exit after writing its final statistics.
EXIT_GRACE_S = 15.0
#: Triton's default ports; a --target URL on one of them implies the other two.
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


class LoadTestError(RuntimeError):
    """The load test could not run (not: the service missed its objectives)."""


@dataclass(frozen=True)
class Target:
    """Where the server listens: both inference endpoints (``host:port``) and ``/metrics``."""

    http_address: str
    grpc_address: str
    metrics_url: str | None

    #: the local server's process id (0: a remote target), to tell its scrapes apart
    server_pid: int = 0

    @classmethod
    def from_server(cls, server: LocalTriton) -> Target:
        pid = server.process.pid if server.process is not None else 0
        return cls(server.http_address, server.grpc_address, server.metrics_url, pid)

    @classmethod
    def from_url(cls, url: str, metrics_url: str | None = None) -> Target:
        """``http://host:8000`` or ``grpc://host:8001``; other endpoints follow Triton's layout.

        The HTTP, gRPC and metrics ports are taken as consecutive (8000/8001/8002 by default);
        pass ``metrics_url`` when the deployment maps them differently.
        """
        if "://" not in url:
            url = f"http://{url}"
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "grpc") or not parts.hostname:
            raise LoadTestError(f"--target {url!r}: expected http://HOST:PORT or grpc://HOST:PORT")
        kind = "grpc" if scheme == "grpc" else "http"
        port = parts.port or DEFAULT_PORTS[kind]
        base = port - (1 if kind == "grpc" else 0)  # the HTTP port of the layout
        host = parts.hostname
        return cls(
            http_address=f"{host}:{port if kind == 'http' else base}",
            grpc_address=f"{host}:{port if kind == 'grpc' else base + 1}",
            metrics_url=metrics_url or f"http://{host}:{base + 2}/metrics",
        )

    def host_for(self, protocol: str) -> str:
        """Locust's ``--host`` for ``protocol``."""
        return (
            f"grpc://{self.grpc_address}" if protocol == "grpc" else f"http://{self.http_address}"
        )


def locustfile() -> Path:
    path = paths.project_root() / "loadtests" / "locustfile.py"
    if not path.exists():
        raise LoadTestError(f"locustfile not found: {path} (run from the tritonctl checkout)")
    return path


def locust_users(profile: SloProfile, workers: int = 0) -> tuple[int, float]:
    """Locust's ``--users`` and ``--spawn-rate``.

    Open loop: one sending user per process, started at once, each sending its share of the
    rate (the rate is the load; more users would only split it). Closed loop: the profile's.
    """
    if profile.open_loop:
        senders = max(1, workers)
        return senders, float(senders)
    return profile.users, profile.spawn_rate


def spawn_seconds(profile: SloProfile, workers: int = 0) -> float:
    """Time to start every user; without a shape the warm-up starts after it."""
    users, rate = locust_users(profile, workers)
    return users / rate if profile.shape == "constant" else 0.0


def run_seconds(profile: SloProfile, workers: int = 0) -> int:
    """Locust's ``--run-time``: spawning, warm-up, the measured window and the drain."""
    total = spawn_seconds(profile, workers) + profile.warmup_s + profile.duration_s + profile.drain
    return max(1, math.ceil(total))


def locust_environment(
    profile: SloProfile, target: Target, folder: Path, workers: int = 0
) -> dict[str, str]:
    env = dict(os.environ)
    users, _ = locust_users(profile, workers)
    env.update(
        TRITON_MODEL=profile.model,
        TRITON_PROTOCOL=profile.protocol,
        LOADTEST_SHAPE=profile.shape,
        LOADTEST_WARMUP_S=f"{profile.warmup_s:g}",
        LOADTEST_DURATION_S=f"{profile.duration_s:g}",
        LOADTEST_ARRIVAL_RATE=f"{profile.rate_rps / users:g}" if profile.open_loop else "0",  # type: ignore[operator]
        LOADTEST_ARRIVALS=profile.arrivals,
        LOADTEST_OUTPUT_DIR=str(folder),
        LOADTEST_SERVER_PID=str(target.server_pid or ""),
        TRITON_METRICS_URL=target.metrics_url or "",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass(frozen=True)
class LocustRun:
    folder: Path
    returncode: int
    seconds: float

    def log_tail(self, lines: int = 25) -> str:
        texts = []
        for log in sorted(self.folder.glob("locust*.log")):
            content = log.read_text(errors="replace").splitlines()
            texts.append("\n".join(content[-lines:]))
        return "\n".join(texts)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_locust(
    profile: SloProfile,
    target: Target,
    folder: Path,
    *,
    workers: int = 0,
    on_tick: object = None,
) -> LocustRun:
    """Run one headless Locust test into ``folder``; ``workers > 0`` adds local worker processes.

    ``on_tick(elapsed_s)`` (if given) is called about twice a second, e.g. to move a progress bar.
    """
    folder.mkdir(parents=True, exist_ok=True)
    seconds = run_seconds(profile, workers)
    users, spawn_rate = locust_users(profile, workers)
    base = [sys.executable, "-m", "locust", "-f", str(locustfile())]
    common = ["--loglevel", "WARNING"]
    master = [
        *base,
        "--headless",
        "--only-summary",
        "--host",
        target.host_for(profile.protocol),
        "--users",
        str(users),
        "--spawn-rate",
        f"{spawn_rate:g}",
        "--run-time",
        f"{seconds}s",
        "--csv",
        str(folder / "locust"),
        "--csv-full-history",
        "--json-file",
        str(folder / "locust_stats"),
        "--logfile",
        str(folder / "locust.log"),
        *common,
    ]
    env = locust_environment(profile, target, folder, workers)
    processes: list[subprocess.Popen[bytes]] = []
    port = free_port()
    if workers > 0:
        master += [
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(workers),
            "--expect-workers-max-wait",
            "60",
        ]
    started = time.monotonic()
    out = open(folder / "locust.stdout.txt", "wb")  # noqa: SIM115 - closed below
    try:
        processes.append(
            subprocess.Popen(
                master, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        for index in range(workers):
            worker = [
                *base,
                "--worker",
                "--master-host",
                "127.0.0.1",
                "--master-port",
                str(port),
                "--logfile",
                str(folder / f"locust-worker-{index}.log"),
                *common,
            ]
            processes.append(
                subprocess.Popen(
                    worker, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        deadline = started + seconds + 60 + (60 if workers else 0)
        finished_at: float | None = None
        while processes[0].poll() is None:
            now = time.monotonic()
            if now > deadline:
                raise LoadTestError(f"locust did not finish within {deadline - started:.0f} s")
            # Locust writes its final statistics last thing before exiting; a process still
            # there well after that is stuck in interpreter teardown, and its results are in.
            if finished_at is None and (folder / "locust_stats.json").exists():
                finished_at = now
            if finished_at is not None and now - finished_at > EXIT_GRACE_S:
                _stop(processes[0])
                break
            if callable(on_tick):
                on_tick(now - started)
            time.sleep(0.5)
        for worker_process in processes[1:]:
            try:
                worker_process.wait(15)
            except subprocess.TimeoutExpired:
                _stop(worker_process)
    finally:
        for process in processes:
            _stop(process)
        out.close()
    run = LocustRun(folder, processes[0].returncode, time.monotonic() - started)
    if not (folder / "locust_stats.json").exists():
        stdout = (folder / "locust.stdout.txt").read_text(errors="replace")[-3000:]
        raise LoadTestError(
            f"locust exited with code {run.returncode} without statistics.\n{stdout}\n{run.log_tail()}"
        )
    return run
