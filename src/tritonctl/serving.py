"""Serve in the foreground: start, show what is served, shut down gracefully, restart on a crash.

A crashed server is restarted with exponential backoff, each restart logged with its cause (on
stderr and in the server log). ``RestartPolicy.max_restarts`` bounds the restarts in a row: the
count starts again once a server has run ``healthy_after`` seconds, so a few crashes spread over
a day never take the service down for good.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.table import Table

from tritonctl import TRITON_VERSION, paths
from tritonctl.check import check_repository
from tritonctl.console import console, err_console
from tritonctl.repository import sync_python_backends
from tritonctl.server import LocalTriton, ServerError, describe_exit
from tritonctl.watchdog import RecoveryError, StubWatchdog

#: Seconds between checks of the Python backend stubs while serving.
WATCHDOG_INTERVAL = 1.0


@dataclass(frozen=True)
class RestartPolicy:
    """How a crashed server is restarted."""

    max_restarts: int = 3  # in a row, i.e. without ``healthy_after`` seconds of uptime between
    healthy_after: float = 60.0
    initial_backoff: float = 1.0
    max_backoff: float = 60.0

    def backoff(self, restart: int) -> float:
        """Seconds to wait before restart number ``restart`` (1, 2, ...): 1, 2, 4, ... capped."""
        return float(min(self.initial_backoff * 2 ** max(restart - 1, 0), self.max_backoff))


def describe(server: LocalTriton) -> Table:
    table = Table(title=f"Triton {TRITON_VERSION} serving {server.model_repository}")
    table.add_column("model")
    table.add_column("version")
    table.add_column("state")
    for state in server.model_states():
        colour = "green" if state.state == "READY" else "red"
        table.add_row(state.name, state.version, f"[{colour}]{state.state}[/]")
    return table


def hidepid() -> bool:
    """Whether ``/proc`` hides other users' processes (and so their command lines)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    for line in mounts:
        fields = line.split()
        if len(fields) > 3 and fields[1] == "/proc" and fields[2] == "proc":
            options = fields[3].split(",")
            return any(o in ("hidepid=2", "hidepid=invisible") for o in options)
    return False


def _supervise(server: LocalTriton, stopping: Callable[[], bool]) -> tuple[int, str]:
    """Wait for the server to exit, replacing the instances of any model whose backend stub died;
    return the exit code and why the server ended."""
    watchdog = StubWatchdog(server)
    watchdog.snapshot()
    cause = ""
    while True:
        try:
            code = server.wait(timeout=WATCHDOG_INTERVAL)
            return code, cause or f"exited unexpectedly ({describe_exit(code)})"
        except subprocess.TimeoutExpired:
            pass
        if stopping() or cause:
            continue
        try:
            for line in watchdog.check():
                console.print(f"[yellow]watchdog:[/] {line}")
                server.note(f"watchdog: {line}")
        except RecoveryError as error:
            if stopping():
                continue
            cause = f"was stopped by the watchdog ({error})"
            err_console.print(f"[red]watchdog:[/] {error}: restarting the server")
            server.terminate()


def _announce(server: LocalTriton, started: float) -> None:
    console.print(describe(server))
    console.print(
        f"ready in {time.monotonic() - started:.1f} s — HTTP {server.url}  "
        f"gRPC {server.grpc_address}  metrics {server.metrics_url}"
    )
    if not server.restrict_apis:
        err_console.print(
            "[yellow]warning:[/] the model-repository, shared-memory, trace and logging APIs "
            "are open to anyone who can reach the ports"
        )
    elif server.admin_key:
        console.print("admin APIs need the header [bold]admin-key[/] (the key from your key file)")
        if not hidepid():
            err_console.print(
                "[yellow]warning:[/] Triton takes the admin key on its command line, which "
                "every local user can read (ps, /proc) because /proc is not mounted with "
                "hidepid=2: use this only on a machine you do not share"
            )
    else:
        console.print(
            "admin APIs (model repository, shared memory, trace, logging) are closed; "
            "give --admin-key-file to open them"
        )


def serve_forever(
    repository: Path,
    *,
    max_restarts: int = 3,
    restart_policy: RestartPolicy | None = None,
    timeout: float = 300,
    **options: object,
) -> int:
    """Run until SIGINT/SIGTERM; return the exit code (non-zero when a model failed to load)."""
    policy = restart_policy or RestartPolicy(max_restarts=max_restarts)
    problems = check_repository(Path(repository))
    if problems:
        for problem in problems:
            err_console.print(f"[red]✗[/] {problem}", soft_wrap=True)
        err_console.print(
            "[red]error:[/] the model repository has problems; fix them or run `tritonctl build`"
        )
        return 1
    sync_python_backends(Path(repository), paths.python_backends())
    if options.get("log_file") is None:
        port = options.get("http_port") or "auto"
        options["log_file"] = paths.cache_dir() / "logs" / f"tritonserver-{port}.log"
    server = LocalTriton(repository, **options)  # type: ignore[arg-type]
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        console.print(
            f"\n[yellow]{signal.Signals(signum).name}[/]: finishing in-flight requests "
            f"(up to {server.exit_timeout} s)…"
        )
        server.terminate()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    restarts = 0
    try:
        while True:
            try:
                with console.status(f"starting tritonserver {TRITON_VERSION}…"):
                    started = time.monotonic()
                    server.start(timeout=timeout)
            except ServerError as error:
                err_console.print(f"[red]error:[/] {error}")
                return 1
            _announce(server, started)
            code, cause = _supervise(server, lambda: stopping)
            uptime = time.monotonic() - server.ready_at  # healthy time, startup excluded
            tail = server.log_tail()
            server.stop()  # reap the process group, stubs included
            if stopping:
                console.print(
                    "[green]stopped cleanly[/]" if code == 0 else f"stopped (exit {code})"
                )
                return 0 if code == 0 else code
            if uptime >= policy.healthy_after:
                restarts = 0
            if restarts >= policy.max_restarts:
                message = f"tritonserver {cause} after {uptime:.0f} s; no restarts left"
                err_console.print(f"[red]{message}[/] ({policy.max_restarts} in a row)")
                err_console.print(tail)
                server.note(message)
                return code or 1
            restarts += 1
            delay = policy.backoff(restarts)
            message = (
                f"tritonserver {cause} after {uptime:.0f} s; "
                f"restart {restarts}/{policy.max_restarts} in {delay:.0f} s"
            )
            err_console.print(f"[yellow]{message}[/]")
            server.note(message)
            waited = time.monotonic() + delay
            while time.monotonic() < waited and not stopping:
                time.sleep(0.1)
            if stopping:
                return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
