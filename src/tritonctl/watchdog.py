"""Notice a dead Python backend stub and replace its model's instances.

Triton 2.51 does not recover from a Python backend stub that dies (killed, out of memory): the
server and the model still report live and ready, and every request to that model fails after
about a second with ``INTERNAL: Stub process '<instance>' is not healthy.``. The stub is left a
zombie. So the server cannot tell a Kubernetes probe; this watchdog can. Each ``check()`` notes
the stub processes of every model and, for a model whose stub died:

- if Triton no longer reports the model READY (an admin unloaded it, or it failed), the model is
  left as it is;
- otherwise ``LocalTriton.reload`` replaces all its instances (a load of an unchanged model
  would be ignored by Triton: see there), and the watchdog waits until as many new stubs run
  as there were instances. Triton loads them before it drops the old ones, so the model never
  disappears from the server; requests sent meanwhile fail fast and are retried by
  ``tritonctl.retry``.

A stub can also die before any ``check()`` saw it alive (killed right after a load, or on a
busy machine where checks come late); what Triton leaves of it, a zombie, has no command line
to tell its model by. So a READY model with fewer live stubs than Triton's config of it has
instances is reloaded too.

It needs no API open to callers. If the reload does not complete, ``RecoveryError`` tells the
caller to restart the server.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tritonctl.backends import PYTHON_BASED_BACKENDS
from tritonctl.procfs import stat_fields
from tritonctl.server import STUB_BINARY, LocalTriton, _cmdline, describe_exit

__all__ = ["STUB_BINARY", "RecoveryError", "Stub", "StubWatchdog", "_cmdline", "is_dead", "stubs"]


class RecoveryError(RuntimeError):
    """A model could not be reloaded; restart the server instead."""


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str
    instance: str
    region: str = ""


def is_dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaped (what a killed stub becomes under Triton)."""
    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def stubs(server: LocalTriton) -> list[Stub]:
    """The live backend stubs of ``server``: one per model instance of a Python(-based) backend."""
    found = []
    for pid, argv in server.stubs():
        if is_dead(pid):
            continue
        # argv: stub, <repository>/<model>/<version>/<file>, shm region, default and growth
        # sizes, parent pid, backend folder, IPC handle, instance name, ... (stub_launcher.cc).
        model = Path(argv[1]).parent.parent.name if len(argv) > 1 else "?"
        instance = argv[8] if len(argv) > 8 else model  # a named instance group: not model_N
        if instance == model:
            continue  # the short-lived stub Triton runs to auto-complete a config while loading
        found.append(Stub(pid, model, instance, argv[2] if len(argv) > 2 else ""))
    return found


class StubWatchdog:
    """Call ``check()`` every second or so while the server runs; it returns what it did."""

    def __init__(self, server: LocalTriton, reload_timeout: float = 180.0) -> None:
        self.server = server
        self.reload_timeout = reload_timeout
        self.known: dict[int, Stub] = {}
        #: Stubs of instances already replaced (or unloaded): their exit is expected.
        self.retired: set[int] = set()
        #: Model -> how many stubs its instances need, from Triton's config of it.
        self.instances: dict[str, int] = {}

    def snapshot(self) -> list[Stub]:
        """Note the stubs running now (models loaded later, reloaded instances); return them."""
        current = stubs(self.server)
        for stub in current:
            if stub.pid not in self.retired:
                self.known.setdefault(stub.pid, stub)
        self.server.protect_regions()
        return current

    def dead_models(self) -> list[str]:
        """Models with a stub that died and whose instance no newer stub serves."""
        live = [s for s in stubs(self.server) if s.pid not in self.retired]
        return sorted(
            {
                stub.model
                for pid, stub in self.known.items()
                if is_dead(pid) and not _replaced(stub, live)
            }
        )

    def check(self) -> list[str]:
        """Handle every model that lost a stub; return one line per model (raise
        ``RecoveryError`` when a reload does not complete)."""
        live = [s for s in self.snapshot() if s.pid not in self.retired]
        dead = [stub for pid, stub in self.known.items() if is_dead(pid)]
        for stub in dead:
            del self.known[stub.pid]
            self.retired.add(stub.pid)
        report = []
        handled: set[str] = set()
        # A dead stub whose instance a newer stub serves was replaced by someone else (an
        # admin's reload in explicit mode): nothing to do.
        for model in sorted({s.model for s in dead if not _replaced(s, live)}):
            mine = [s for s in self.known.values() if s.model == model]
            mine += [s for s in dead if s.model == model]
            for stub in mine:
                self.known.pop(stub.pid, None)
                self.retired.add(stub.pid)
            handled.add(model)
            if not self.server.model_ready(model):
                report.append(
                    f"backend stub of {model} exited and Triton no longer reports it READY "
                    "(unloaded or failed): left as it is"
                )
                continue
            # Triton's config says how many stubs the model needs now: after a lower instance
            # count in poll mode, Triton itself stops a stub, and the names seen are too many.
            wanted = stub_instances(self.server.model_config(model))
            running = sum(1 for s in live if s.model == model)
            if wanted is not None and running >= wanted:
                self.instances[model] = wanted
                report.append(
                    f"backend stub of {model} exited; {model} still runs the {wanted} "
                    "instance(s) its config asks for (instance count lowered): left as it is"
                )
                continue
            instances = wanted if wanted is not None else len({s.instance for s in mine})
            started = time.monotonic()
            self._reload(model, instances)
            report.append(
                f"backend stub of {model} died; reloaded {model} ({instances} instance(s)) "
                f"in {time.monotonic() - started:.1f} s"
            )
        for model, instances in self._short_of_stubs(live, handled):
            for stub in [s for s in self.known.values() if s.model == model]:
                self.known.pop(stub.pid, None)  # replaced by the reload: their exit is expected
                self.retired.add(stub.pid)
            started = time.monotonic()
            self._reload(model, instances)
            report.append(
                f"{model} had fewer backend stubs than instances (one died before a check saw "
                f"it); reloaded {model} ({instances} instance(s)) in "
                f"{time.monotonic() - started:.1f} s"
            )
        return report

    def _short_of_stubs(self, live: list[Stub], handled: set[str]) -> list[tuple[str, int]]:
        """(model, instances) of READY models with fewer live stubs than instances."""
        running = Counter(s.model for s in live)
        short = []
        for model in self.server.expected_models():
            if model in handled:
                continue
            wanted = self.instances.get(model)
            if wanted is None or running[model] < wanted:
                # Asked again before acting: the config may have changed since (poll mode).
                wanted = stub_instances(self.server.model_config(model))
                if wanted is None:
                    self.instances.pop(model, None)  # not served now: ask next time
                    continue
                self.instances[model] = wanted
            if running[model] < wanted and self.server.model_ready(model):
                short.append((model, wanted))
        return short

    def recover(self) -> list[str]:
        """Reload every model that lost a stub; return their names."""
        dead = self.dead_models()
        self.check()
        return dead

    def _reload(self, model: str, instances: int) -> None:
        loads = self.server.loads_completed(model)
        try:
            self.server.reload(model)
        except OSError as error:
            raise RecoveryError(f"reloading '{model}' failed: {error}") from None
        deadline = time.monotonic() + self.reload_timeout
        while time.monotonic() < deadline:
            if not self.server.running:
                # Triton 2.51 itself can crash while it retires an instance whose stub died
                # (upstream python_backend stub-launcher bugs); the caller restarts it.
                code = self.server.process.returncode if self.server.process else None
                raise RecoveryError(
                    f"the server exited while reloading '{model}' ({describe_exit(code)})"
                )
            new = [s for s in stubs(self.server) if s.model == model and s.pid not in self.retired]
            # Triton logs the load once the new instances have replaced the old ones.
            swapped = self.server.loads_completed(model) > loads
            if swapped and len(new) >= instances and self.server.model_ready(model):
                self.snapshot()
                return
            time.sleep(0.2)
        raise RecoveryError(
            f"'{model}' did not get {instances} new backend stub(s) within "
            f"{self.reload_timeout:.0f} s of the reload"
        )


def stub_instances(config: dict[str, object]) -> int | None:
    """How many backend stubs a model with this (served) config runs; None without a config."""
    if not config:
        return None
    if config.get("backend") not in ("python", *PYTHON_BASED_BACKENDS):
        return 0  # ensembles, and backends that run in the server process
    groups = config.get("instance_group") or [{}]
    assert isinstance(groups, list)
    return sum(int(group.get("count", 1)) for group in groups)


def _replaced(stub: Stub, live: list[Stub]) -> bool:
    return any(s.model == stub.model and s.instance == stub.instance for s in live)
