"""Keep a server's ``/dev/shm`` regions private (0600) from the moment they appear.

Triton's Python backend makes one region per stub with Boost.Interprocess, which ``fchmod``s it
to 0644 right after ``shm_open`` (so the umask has no say): any local user could read the
tensors passing through it. Regions are made whenever a stub starts (at load, and again on
every reload, poll-mode change or watchdog recovery), not only at start-up, so a one-off
``chmod`` after the server is ready leaves later ones readable.

``RegionGuard`` watches ``/dev/shm`` with inotify and ``chmod``s each new region of its prefix
back to 0600 as soon as the kernel reports its creation or its mode change; every half second
it also sweeps the prefix, in case an event was lost. What remains is the moment between
Boost's ``fchmod`` and ours (microseconds on an idle machine); SECURITY.md says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import stat
import struct
import sys
import threading
from pathlib import Path

SHM_DIR = Path("/dev/shm")
_IN_ATTRIB, _IN_MOVED_TO, _IN_CREATE, _IN_Q_OVERFLOW = 0x4, 0x80, 0x100, 0x4000
_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
_SWEEP_SECONDS = 0.5


def make_private(path: Path) -> None:
    """``chmod 0600`` ``path`` if group or others may use it (a region gone already is fine)."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_mode & 0o077:
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def _inotify(directory: Path) -> int | None:
    """A non-blocking inotify descriptor watching ``directory`` for new files, or None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
    if fd < 0:
        return None
    mask = _IN_CREATE | _IN_ATTRIB | _IN_MOVED_TO
    if libc.inotify_add_watch(fd, str(directory).encode(), mask) < 0:
        os.close(fd)
        return None
    return fd


class RegionGuard:
    """A daemon thread that keeps every ``/dev/shm/<prefix>*`` region 0600 until ``stop()``."""

    def __init__(self, prefix: str, directory: Path = SHM_DIR) -> None:
        self.prefix = prefix
        self.directory = directory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> None:
        for region in self.directory.glob(f"{self.prefix}*"):
            make_private(region)

    def start(self) -> RegionGuard:
        fd = _inotify(self.directory)
        self._thread = threading.Thread(
            target=self._watch, args=(fd,), name=f"tritonctl-shm-guard-{self.prefix}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _watch(self, fd: int | None) -> None:
        try:
            while not self._stop.is_set():
                if fd is None:
                    self._stop.wait(_SWEEP_SECONDS / 5)
                    self.sweep()
                    continue
                ready, _, _ = select.select([fd], [], [], _SWEEP_SECONDS)
                if not ready:
                    self.sweep()
                    continue
                with contextlib.suppress(BlockingIOError):
                    self._handle(os.read(fd, 64 * 1024))
        finally:
            if fd is not None:
                os.close(fd)

    def _handle(self, events: bytes) -> None:
        offset = 0
        while offset + _EVENT.size <= len(events):
            _, mask, _, length = _EVENT.unpack_from(events, offset)
            raw = events[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                self.sweep()
                continue
            name = raw.split(b"\0", 1)[0].decode(errors="replace")
            if name.startswith(self.prefix):
                make_private(self.directory / name)
