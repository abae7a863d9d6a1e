"""A private folder per server start: the repository view Triton polls, the log, and what to clean up.

``LocalTriton`` makes one with ``RunDir.create()`` when it starts a server and removes it when the
server stops; the server process sees its path in ``TRITONCTL_RUN_DIR`` (backends keep per-server
files there, such as the adaptive routers' slot files). It holds:

- ``repository/``: a view of the served models, one folder per model with symlinks to the
  model's files. Triton runs in poll mode on it, so a model is reloaded by touching a marker in
  its folder here, with no load API open to callers and without writing to the user's repository.
- ``owner``: the PID of the process that owns this folder, so a later start can remove folders
  left by a process that was killed.

The server's Python backends name their ``/dev/shm`` regions with ``shm_prefix`` (derived from
this folder's name), so that the regions of a server that did not exit gracefully (Triton
unlinks them itself only then) are found and unlinked with the folder.

``TRITONCTL_SESSION_TAG``, if set, goes into both names: a test session sets it to find what its
servers left behind.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tritonctl.model_config import ConfigError, load_config
from tritonctl.shm_guard import SHM_DIR, make_private

ENV_VAR = "TRITONCTL_RUN_DIR"
TAG_ENV_VAR = "TRITONCTL_SESSION_TAG"
PREFIX = "tritonctl-run-"
#: Touching this file in a model's folder of the view makes Triton reload the model.
RELOAD_MARKER = ".tritonctl-reload"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def session_tag() -> str:
    """``TRITONCTL_SESSION_TAG`` reduced to letters, digits and ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "", os.environ.get(TAG_ENV_VAR, ""))[:32]


def ensemble_closure(repository: Path, models: Sequence[str]) -> list[str]:
    """``models`` and, for ensembles, every model their steps use (recursively)."""
    wanted: list[str] = []
    pending = list(models)
    while pending:
        name = pending.pop(0)
        if name in wanted:
            continue
        wanted.append(name)
        try:
            config = load_config(repository / name)
        except (ConfigError, OSError):
            continue  # Triton reports the problem when it loads the model
        if config.platform == "ensemble":
            pending += [step.model_name for step in config.ensemble_scheduling.step]
    return wanted


def _precompile(model_dir: Path) -> None:
    """Write the ``__pycache__`` files the backend stubs would write on first import.

    Triton's poll reloads a model whose files changed, and a stub writing its bytecode cache
    into the version folder would change them right after the first load.
    """
    for version in model_dir.iterdir():
        if version.is_dir() and version.name.isdigit():
            with contextlib.suppress(OSError):
                compileall.compile_dir(version, quiet=2)


class RunDir:
    """One server start's private folder (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, label: str = "") -> RunDir:
        remove_stale()
        name = "-".join(part for part in (session_tag(), label) if part)
        path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name}-" if name else PREFIX))
        (path / "owner").write_text(f"{os.getpid()}\n")
        return cls(path)

    @property
    def shm_prefix(self) -> str:
        """What the server's Python backends put before each region's UUID."""
        unique = self.path.name.rsplit("-", 1)[-1]  # mkdtemp's random part: [a-z0-9_]
        tag = session_tag()
        return f"tritonctl_{tag}_{unique}_" if tag else f"tritonctl_{unique}_"

    @property
    def repository(self) -> Path:
        return self.path / "repository"

    @property
    def log(self) -> Path:
        return self.path / "tritonserver.log"

    def make_view(self, repository: Path, models: Sequence[str] | None) -> list[str]:
        """Fill ``repository/`` with the given models (all with a config when None); return them."""
        if models is None:
            names = sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file())
        else:
            names = ensemble_closure(repository, models)
        self.repository.mkdir(exist_ok=True)
        for name in names:
            source = repository / name
            if not source.is_dir():
                continue  # Triton reports a requested model it cannot find
            _precompile(source)
            folder = self.repository / name
            folder.mkdir()
            for entry in source.iterdir():
                if entry.name != "__pycache__":
                    (folder / entry.name).symlink_to(entry.resolve())
        return names

    def touch_reload_marker(self, model: str) -> None:
        marker = self.repository / model / RELOAD_MARKER
        marker.write_text(f"{time.time_ns()}\n")
        # Triton compares modification times: make sure this one is newer than any it has seen.
        now = time.time_ns()
        os.utime(marker, ns=(now, now))

    def regions(self) -> list[Path]:
        """The server's ``/dev/shm`` regions that exist now."""
        return sorted(SHM_DIR.glob(f"{self.shm_prefix}*"))

    def protect_regions(self) -> None:
        """Make the regions private to this user: the Python backend creates them 0644 whatever
        the umask, and other users have no business reading a stub's tensors."""
        for region in self.regions():
            make_private(region)

    def remove(self) -> None:
        for region in self.regions():
            with contextlib.suppress(OSError):
                region.unlink()
        shutil.rmtree(self.path, ignore_errors=True)


def _folders_in_use() -> set[str]:
    """``TRITONCTL_RUN_DIR`` of every live process of this user (servers and their stubs)."""
    used = set()
    needle = f"{ENV_VAR}=".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if entry.stat().st_uid != os.getuid():
                continue
            for item in (entry / "environ").read_bytes().split(b"\0"):
                if item.startswith(needle):
                    used.add(item[len(needle) :].decode(errors="replace"))
    return used


def remove_stale() -> list[Path]:
    """Remove run folders (and their shm regions) whose owning process is gone.

    A server can outlive its owner: a killed ``tritonctl`` sends it SIGTERM (PR_SET_PDEATHSIG),
    and it may go on loading models (making regions) and unloading them for up to its exit
    timeout. Its folder is kept until it is gone too; removing it earlier orphaned the regions
    made after that, world-readable, with no folder left to find them by.
    """
    removed = []
    in_use: set[str] | None = None
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            if path.stat().st_uid != os.getuid() or path.is_symlink():
                continue
            pid = int((path / "owner").read_text().strip() or "0")
        except (OSError, ValueError):
            continue
        if pid and not _alive(pid):
            in_use = _folders_in_use() if in_use is None else in_use
            if str(path) in in_use:
                continue
            RunDir(path).remove()
            removed.append(path)
    return removed
