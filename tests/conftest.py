"""Shared fixtures: the real model repository, built once, and one real Triton server over it.

Hygiene: every server a test starts carries ``TRITONCTL_SESSION_TAG`` (in its environment, its
run folder's name and its shared-memory regions' names), so the session can check at the end
that nothing it started is left: no process, no ``/dev/shm`` region, no run folder, no log in
the cache. ``spawn`` starts a command (``tritonctl serve``) that is killed, with everything it
started, when the test ends, failed or not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil
import pytest

# The cloud tests' session servers, defined here once: imported into each test module instead,
# a session fixture is a separate fixture per module, and each module started its own servers.
from tests.cloud_support import sagemaker_digits, sagemaker_text, vertex_digits, vertex_text  # noqa: F401
from tritonctl import paths, rundir
from tritonctl.server import LocalTriton, new_admin_key

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TRITONCTL_ROOT", str(ROOT))
SESSION_TAG = f"pytest{os.getpid()}"
os.environ[rundir.TAG_ENV_VAR] = SESSION_TAG
SPAWN_TAG = "TRITONCTL_TEST_SPAWN"


def tagged_processes(variable: str, value: str) -> list[psutil.Process]:
    """This user's processes whose environment has ``variable=value`` (this one excluded)."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(variable) != value or process.status() == "zombie":
                continue
            # multiprocessing's resource tracker serves this process and exits with it.
            helper = any("multiprocessing." in part for part in process.cmdline())
            if not (helper and process.ppid() == os.getpid()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} (parent {process.ppid()}): {' '.join(process.cmdline()[:4])}"
    except psutil.Error:
        return str(process.pid)


def kill_tagged(variable: str, value: str, grace: float = 0.0) -> list[str]:
    """SIGKILL (after ``grace`` seconds) every process tagged ``variable=value``, group and all;
    return what was killed."""
    deadline = time.monotonic() + grace
    while (left := tagged_processes(variable, value)) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = [_describe(process) for process in left]
    for process in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # a group leader: the server and its stubs
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(left, timeout=10)
    return killed


def _remove_stale_busy_flags() -> None:
    """The ONNX Runtime backend's busy-flag files of servers that are gone (killed servers never
    run finalize; the backend removes them at the next start, the session's end does too)."""
    prefix = "tritonctl_ort_"
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = path.name[len(prefix) :].split("_", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)


def _leftovers() -> list[str]:
    # What the next start would clean anyway: the folders (and regions) of processes that are
    # gone, e.g. a `serve` the spawn fixture had to SIGKILL.
    rundir.remove_stale()
    _remove_stale_busy_flags()
    found = [f"shared memory {r}" for r in Path("/dev/shm").glob(f"tritonctl_{SESSION_TAG}_*")]
    found += [f"run folder {d}" for d in Path("/tmp").glob(f"{rundir.PREFIX}{SESSION_TAG}-*")]
    return found


@pytest.fixture(scope="session", autouse=True)
def session_leaves_nothing_behind() -> Iterator[None]:
    """Set up first, torn down last: after every server fixture has stopped its server."""
    logs = paths.cache_dir() / "logs"
    logs_before = set(logs.glob("*")) if logs.is_dir() else set()
    yield
    problems = [
        f"process {description}"
        for description in kill_tagged(rundir.TAG_ENV_VAR, SESSION_TAG, grace=30)
    ]
    problems += _leftovers()
    new_logs = (set(logs.glob("*")) if logs.is_dir() else set()) - logs_before
    problems += [f"log {p}" for p in sorted(new_logs)]
    assert not problems, "the test session left behind:\n  " + "\n  ".join(problems)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a command whose every descendant is killed when the test ends, whatever happened."""
    started: list[tuple[subprocess.Popen[str], str]] = []

    def run(args: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
        tag = uuid.uuid4().hex
        env = {**os.environ, SPAWN_TAG: tag, **kwargs.pop("env", {})}  # type: ignore[dict-item]
        process = subprocess.Popen(
            list(args),
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,  # type: ignore[call-overload]
        )
        started.append((process, tag))
        return process

    yield run
    for process, tag in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        kill_tagged(SPAWN_TAG, tag, grace=30)


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """``model_repository/``, built before pytest (``make test`` runs ``tritonctl build all``).

    Building here would put the build's gates (and many minutes of work) inside one fixture's
    setup: one failed gate would error every server test. A stale repository fails fast.
    """
    from tritonctl.recipes import stale
    from tritonctl.repository import sync_python_backends

    repository = ROOT / "model_repository"
    missing = stale(repository)
    if missing:
        pytest.fail(
            f"model_repository/ is not built, or was built from other inputs, for: "
            f"{', '.join(missing)}. Run `make build` (tritonctl build all) first; "
            "`make test` builds and then tests.",
            pytrace=False,
        )
    sync_python_backends(repository, paths.python_backends())
    return repository


@pytest.fixture(scope="session")
def triton(model_repository: Path) -> Iterator[LocalTriton]:
    """One real tritonserver serving the whole repository for the test session (with an admin
    key: the benchmark tests register shared memory)."""
    server = LocalTriton(model_repository, exit_timeout=10, admin_key=new_admin_key()).start()
    try:
        yield server
    finally:
        # Nothing is in flight any more, and a graceful stop would take over 10 s: the Python
        # backend sleeps 1 s per instance while unloading, one instance after another, and
        # text_embedding_adaptive has 8. Kill it and clean up instead.
        server.kill()
