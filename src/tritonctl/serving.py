"""Serve in the foreground: start, show what is served, shut down gracefully, restart on a crash."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from rich.table import Table

from tritonctl import TRITON_VERSION, paths
from tritonctl.check import check_repository
from tritonctl.console import console, err_console
from tritonctl.repository import models, sync_python_backends
from tritonctl.server import LocalTriton, ServerError
from tritonctl.watchdog import RecoveryError, StubWatchdog

#: Seconds between checks of the Python backend stubs while serving.
WATCHDOG_INTERVAL = 1.0


def describe(server: LocalTriton) -> Table:
    table = Table(title=f"Triton {TRITON_VERSION} serving {server.model_repository}")
    table.add_column("model")
    table.add_column("version")
    table.add_column("state")
    for state in server.model_states():
        colour = "green" if state.state == "READY" else "red"
        table.add_row(state.name, state.version, f"[{colour}]{state.state}[/]")
    return table


def _supervise(server: LocalTriton, stopping: Callable[[], bool]) -> int:
    """Wait for the server to exit; meanwhile reload any model whose backend stub died."""
    watchdog = StubWatchdog(server)
    watchdog.snapshot()
    while True:
        try:
            return server.wait(timeout=WATCHDOG_INTERVAL)
        except subprocess.TimeoutExpired:
            pass
        if stopping():
            continue
        try:
            dead = watchdog.dead_models()
            if dead:
                err_console.print(f"[yellow]backend stub of {', '.join(dead)} died; reloading[/]")
                watchdog.recover()
                console.print(f"[green]reloaded[/] {', '.join(dead)}")
        except RecoveryError as error:
            err_console.print(f"[red]{error}[/]: restarting the server")
            server.terminate()


def serve_forever(
    repository: Path,
    *,
    max_restarts: int = 3,
    timeout: float = 300,
    **options: object,
) -> int:
    """Run until SIGINT/SIGTERM; return the exit code (non-zero when a model failed to load)."""
    problems = check_repository(Path(repository))
    if problems:
        for problem in problems:
            err_console.print(f"[red]✗[/] {problem}", soft_wrap=True)
        err_console.print(
            "[red]error:[/] the model repository has problems; fix them or run `tritonctl build`"
        )
        return 1
    sync_python_backends(Path(repository), paths.python_backends())
    if options.get("models") is None:
        # Explicit model control with every model loaded: the same models as the default mode,
        # and the watchdog can reload a model whose backend stub died.
        options["models"] = [m.name for m in models(Path(repository))]
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
            console.print(describe(server))
            console.print(
                f"ready in {time.monotonic() - started:.1f} s — HTTP {server.url}  "
                f"gRPC {server.grpc_address}  metrics {server.metrics_url}"
            )
            if server.restrict_apis:
                console.print(f"admin APIs need the header [bold]admin-key: {server.admin_key}[/]")
            code = _supervise(server, lambda: stopping)
            server.stop()  # reap the process group, stubs included
            if stopping:
                console.print(
                    "[green]stopped cleanly[/]" if code == 0 else f"stopped (exit {code})"
                )
                return 0 if code == 0 else code
            if restarts >= max_restarts:
                err_console.print(f"[red]tritonserver exited ({code}); no restarts left[/]")
                err_console.print(server.log_tail())
                return code or 1
            restarts += 1
            err_console.print(
                f"[yellow]tritonserver exited unexpectedly ({code}); restart {restarts}/{max_restarts}[/]"
            )
            server.process = None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
