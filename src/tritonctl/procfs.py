"""Reading ``/proc/<pid>/stat``: one parser for the supervisor, ``top``, the watchdog and bench."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onward of ``/proc/<pid>/stat`` (state, ppid, pgrp, …); None once it is gone.

    The command name (field 2) may hold spaces and parentheses, so the split starts after its
    last ``)``; ``fields[0]`` is field 3 of proc(5).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, stat fields) of every process that can be read now."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields:
                yield int(entry.name), fields
