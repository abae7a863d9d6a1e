"""Notice a dead Python backend stub and reload its model.

Triton 2.51 does not recover from a Python backend stub that dies (killed, out of memory): the
server and the model still report live and ready, and every request to that model fails after
about a second with ``INTERNAL: Stub process '<instance>' is not healthy.``. The stub is left a
zombie. So the server cannot tell a Kubernetes probe; this watchdog can. It remembers the stub
processes of each model once the server is ready, and when one of them has died it reloads that
model through the repository API (with the admin key). That needs explicit model control, which
``tritonctl serve`` uses; without it, ``RecoveryError`` tells the caller to restart the server.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tritonctl.server import LocalTriton

STUB_BINARY = "triton_python_backend_stub"


class RecoveryError(RuntimeError):
    """A model could not be reloaded; restart the server instead."""


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str
    instance: str


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaped (what a killed stub becomes under Triton)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X")


def stubs(server: LocalTriton) -> list[Stub]:
    """The live backend stubs of ``server``: one per model instance of a Python(-based) backend."""
    found = []
    for pid in server.group_pids():
        argv = _cmdline(pid)
        if not argv or not argv[0].endswith(STUB_BINARY) or is_dead(pid):
            continue
        # argv[1] is <repository>/<model>/<version>/<file>; the instance name follows later.
        model = Path(argv[1]).parent.parent.name if len(argv) > 1 else "?"
        instance = next((a for a in argv[2:] if a.startswith(f"{model}_")), model)
        found.append(Stub(pid, model, instance))
    return found


def reload_model(server: LocalTriton, model: str, timeout: float = 120) -> None:
    """Ask Triton to load ``model`` again: new instances (and stubs) replace the dead ones."""
    request = urllib.request.Request(
        f"{server.url}/v2/repository/models/{model}/load",
        data=b"{}",
        headers=server.admin_headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        raise RecoveryError(f"reloading '{model}' failed ({error.code}): {detail}") from None
    except OSError as error:
        raise RecoveryError(f"reloading '{model}' failed: {error}") from None


class StubWatchdog:
    """Call ``snapshot()`` once the server is ready, then ``recover()`` every second or so."""

    def __init__(self, server: LocalTriton) -> None:
        self.server = server
        self.known: dict[int, Stub] = {}

    def snapshot(self) -> None:
        self.known = {stub.pid: stub for stub in stubs(self.server)}

    def dead_models(self) -> list[str]:
        return sorted({stub.model for pid, stub in self.known.items() if is_dead(pid)})

    def recover(self) -> list[str]:
        """Reload every model that lost a stub; return their names (raise ``RecoveryError``)."""
        dead = self.dead_models()
        for model in dead:
            reload_model(self.server, model)
        if dead:
            self.snapshot()
        return dead
