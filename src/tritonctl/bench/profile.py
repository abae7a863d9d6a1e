"""Where the time goes inside the server: Triton's per-model statistics and py-spy on the stubs.

Each Python-backend model instance (and, here, each ONNX model, served by the Python-based
``onnxruntime`` backend) runs in its own ``triton_python_backend_stub`` process; py-spy samples
those processes from outside, with no change to the models.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonctl.metrics import Metrics, diff, scrape
from tritonctl.procfs import stat_fields

SAMPLE_RATE = 100  # py-spy samples per second


def stub_pids(pids: list[int]) -> dict[str, list[int]]:
    """Model name -> PIDs of its backend stub processes, from the stubs' command lines."""
    found: dict[str, list[int]] = {}
    for pid in pids:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not args or not args[0].endswith(b"triton_python_backend_stub") or len(args) < 2:
            continue
        # argv[1] is <repository>/<model>/<version>/model.(py|onnx)
        model = Path(args[1].decode(errors="replace")).parent.parent.name
        found.setdefault(model, []).append(pid)
    return found


def py_spy() -> str | None:
    """The py-spy binary (from the bench extra), or None."""
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


@dataclass
class StubProfile:
    """One stub's samples: how busy it was and the functions it spent that time in."""

    model: str
    pid: int
    seconds: float
    samples: int
    busy: float  # fraction of the wall time the stub's threads were running Python or native code
    top_self: list[tuple[str, float]] = field(default_factory=list)  # (function, share of samples)
    top_total: list[tuple[str, float]] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "pid": self.pid,
            "seconds": self.seconds,
            "samples": self.samples,
            "busy": round(self.busy, 3),
            "top_self": [[name, round(share, 3)] for name, share in self.top_self],
            "top_total": [[name, round(share, 3)] for name, share in self.top_total],
            "error": self.error,
        }


def start_records(
    stubs: dict[str, list[int]], seconds: float, out_dir: Path
) -> list[tuple[str, int, Path, subprocess.Popen[bytes]]]:
    """Start one ``py-spy record`` per stub (collapsed stacks, native frames included)."""
    binary = py_spy()
    if binary is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    running = []
    for model, pids in stubs.items():
        for pid in pids:
            path = out_dir / f"{model}-{pid}.txt"
            process = subprocess.Popen(
                [
                    binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(max(int(seconds), 1)),
                    "--rate",
                    str(SAMPLE_RATE),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            running.append((model, pid, path, process))
    return running


def finish_records(
    running: list[tuple[str, int, Path, subprocess.Popen[bytes]]], seconds: float
) -> list[StubProfile]:
    profiles = []
    for model, pid, path, process in running:
        try:
            _, stderr = process.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        if not path.exists():
            message = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            profiles.append(StubProfile(model, pid, seconds, 0, 0.0, error=message[0]))
            continue
        profiles.append(summarise_collapsed(path.read_text(), model, pid, seconds))
    return profiles


def summarise_collapsed(
    text: str, model: str, pid: int, seconds: float, top: int = 8
) -> StubProfile:
    """Self and total time per function from py-spy's collapsed (``raw``) stacks."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        self_counts[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            total_counts[name] += count
    busy = samples / (SAMPLE_RATE * seconds) if seconds > 0 else 0.0
    share = (lambda c: c / samples) if samples else (lambda c: 0.0)
    return StubProfile(
        model=model,
        pid=pid,
        seconds=seconds,
        samples=samples,
        busy=busy,
        top_self=[(name, share(c)) for name, c in self_counts.most_common(top)],
        top_total=[(name, share(c)) for name, c in total_counts.most_common(top)],
    )


def _short(frame: str) -> str:
    """``execute (model.py:42)`` -> ``execute (model.py)``: aggregate a function over its lines."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    filename = where.rsplit(":", 1)[0].rsplit("/", 1)[-1] if where else ""
    return f"{name} ({filename})" if filename else name


class StatsWindow:
    """Scrapes ``/metrics`` at the start and end of a measured window; ``deltas`` per model."""

    def __init__(self, metrics_url: str) -> None:
        self.metrics_url = metrics_url
        self.before: Metrics | None = None
        self.after: Metrics | None = None

    def start(self) -> None:
        self.before = scrape(self.metrics_url)

    def end(self) -> None:
        self.after = scrape(self.metrics_url)

    def deltas(self) -> dict[str, dict[str, float | str]]:
        if self.before is None or self.after is None:
            return {}
        return {name: d.as_dict() for name, d in diff(self.before, self.after).items()}


def process_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used so far (from ``/proc/<pid>/stat``)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    seconds: dict[int, float] = {}
    for pid in pids:
        fields = stat_fields(pid)
        if fields is None:
            continue
        # utime and stime are fields 14 and 15 of stat; fields[] starts at field 3.
        seconds[pid] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def cpu_per_request(
    before: dict[int, float], after: dict[int, float], names: dict[int, str], requests: int
) -> dict[str, float]:
    """CPU milliseconds per request for each named process (summed over a name's processes)."""
    out: dict[str, float] = {}
    for pid, name in names.items():
        if pid in before and pid in after and requests > 0:
            out[name] = out.get(name, 0.0) + (after[pid] - before[pid]) * 1000.0 / requests
    return {name: round(ms, 3) for name, ms in out.items()}
