"""TCP ports for a local server: pick free ones, check that given ones are free, name who holds one."""

from __future__ import annotations

import collections
import os
import pwd
import socket
from pathlib import Path

#: Ports ``free_port`` handed out lately in this process, so two servers started one after the
#: other never get the same port before the first one has bound it.
_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=4096)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, and not handed out before by this process.

    It is not reserved: another process may take it before the server binds it, so
    ``LocalTriton`` picks new ports and starts again when a bind fails.
    """
    for _ in range(100):
        with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.append(port)
            return port
    raise OSError("no free port found after 100 tries")


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` would fail as tritonserver's own bind would.

    Triton's listeners set ``SO_REUSEADDR``, so a port left in TIME_WAIT is not "in use".
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _listening_inodes(port: int) -> dict[str, int]:
    """``{socket inode: owner uid}`` of the TCP sockets listening on ``port`` (any address)."""
    found: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found[fields[9]] = int(fields[7])
    return found


def _describe_pid(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    # The binary and its first arguments say what it is; the rest can be long.
    command = " ".join(argv[:3])
    if len(command) > 160:
        command = command[:157] + "..."
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def port_holder(port: int) -> str | None:
    """Who listens on TCP ``port``: ``"pid N (command)"``, another user's process, or None."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # another user's process, or gone
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in targets:
                    return _describe_pid(int(entry.name))
            except OSError:
                continue
    uid = next(iter(inodes.values()))
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return f"a process of user {user} (uid {uid})"


def first_taken(ports: dict[str, int], host: str) -> tuple[str, int, str | None] | None:
    """``(name, port, holder)`` for the first of ``{name: port}`` taken on ``host``, else None."""
    for name, port in ports.items():
        if port_in_use(host, port):
            return name, port, port_holder(port)
    return None
