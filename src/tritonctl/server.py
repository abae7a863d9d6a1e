"""Run the real Triton Inference Server (from the nvidia-pytriton wheel) as a child process.

``LocalTriton`` is the one way the CLI, tests, benchmarks and load tests start a server::

    with LocalTriton(model_repository="model_repository") as server:
        client = tritonclient.http.InferenceServerClient(server.http_address)

What it does for safety, by default (see SECURITY.md for the tests behind each point):

- No admin key exists, so none can leak through ``ps``: the model-repository, shared-memory,
  trace and logging APIs are restricted to a header that no HTTP or gRPC client can send (its
  name holds a ``:``), so they answer 403 / ``UNAVAILABLE`` to every caller. Pass ``admin_key``
  to open them to callers that know it; the key is then on tritonserver's command line, which
  other local users can read, unless ``/proc`` is mounted with ``hidepid``.
- Triton runs in poll mode on a private view of the repository (see ``tritonctl.rundir``), so
  the load / unload API is refused to everyone, and ``reload()`` still replaces a model's
  instances (and its Python backend stubs) by touching a marker file in that view.
  ``model_control="explicit"`` turns the load API on; it needs an ``admin_key``.
- The server gets SIGTERM when the process (thread) that started it dies (``PR_SET_PDEATHSIG``),
  so a killed ``tritonctl`` leaves no server holding the ports.
- The ports are checked before the start; a taken one is reported with the process holding it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from tritonctl import TRITON_VERSION
from tritonctl.backends import PYTHON_BASED_BACKENDS, assemble_backends, server_distribution
from tritonctl.ports import first_taken, free_port
from tritonctl.procfs import processes
from tritonctl.rundir import ENV_VAR as RUN_DIR_ENV
from tritonctl.rundir import RunDir
from tritonctl.shm_guard import RegionGuard

__all__ = [
    "ADMIN_HEADER",
    "LocalTriton",
    "ModelState",
    "PortInUseError",
    "ServerError",
    "free_port",
    "new_admin_key",
]

#: APIs that let a caller change or inspect the server: closed, or behind ``admin_key``.
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
ADMIN_HEADER = "admin-key"
#: The header the restricted APIs expect when no admin key is set. HTTP ends a header name at
#: its first ':', and gRPC refuses names outside [a-z0-9-_.], so no client can ever send it.
CLOSED_HEADER = "tritonctl:admin-apis-closed"
STUB_BINARY = "triton_python_backend_stub"
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"

ModelControl = Literal["poll", "explicit"]


class ServerError(RuntimeError):
    """The server failed to start, or a model failed to load."""


class PortInUseError(ServerError):
    """A port the server needs is taken; the message names it and, if known, who holds it."""


@dataclass(frozen=True)
class ModelState:
    name: str
    version: str
    state: str
    reason: str = ""


def new_admin_key() -> str:
    """A random key for ``LocalTriton(admin_key=...)``, for tools that need the admin APIs."""
    return secrets.token_urlsafe(16)


def describe_exit(code: int | None) -> str:
    """``exit code 1`` or ``signal SIGSEGV`` for a ``Popen.returncode``."""
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


def _http_json(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 5
) -> object:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


# Starting the process --------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
#: The thread that forks servers. PR_SET_PDEATHSIG fires when the *thread* that forked the child
#: exits, so forking from a caller's short-lived thread would kill the server with it.
_spawner: ThreadPoolExecutor | None = None


def _die_with(parent: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child, between fork and exec
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _spawn(argv: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    global _spawner
    if _spawner is None:
        _spawner = ThreadPoolExecutor(1, thread_name_prefix="tritonctl-spawner")
    preexec = _die_with(os.getpid())

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stubs are reaped with it
            preexec_fn=preexec,
        )

    return _spawner.submit(popen).result()


# /proc helpers ---------------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _pids_in_group(pgid: int) -> Iterator[int]:
    # fields[2] is field 5 of proc(5), the process group.
    return (pid for pid, fields in processes() if len(fields) > 2 and int(fields[2]) == pgid)


def _leftover_python_envs(since: float, until: float) -> list[Path]:
    """Empty ``/tmp/python_env_*`` folders of this user made between ``since`` and ``until``.

    Each Python(-based) backend of a server makes one when it loads (a path it hard-codes, so
    it cannot be named after the server) and removes it only on a graceful exit. Only empty
    ones are taken: a server using execution environments extracts them there.
    """
    found = []
    for path in Path("/tmp").glob("python_env_??????"):
        with contextlib.suppress(OSError):
            info = path.lstat()
            mine = info.st_uid == os.getuid() and since - 1 <= info.st_mtime <= until + 1
            if mine and not any(path.iterdir()):
                found.append(path)
    return found


class LocalTriton:
    """A real ``tritonserver`` process serving a model repository on this machine.

    Ports left as ``None`` are picked free (and picked again if another process takes one
    first). ``models`` serves just those (and the models their ensembles use). See the module
    docstring for ``model_control``, ``admin_key`` and ``restrict_apis``.
    """

    def __init__(
        self,
        model_repository: str | os.PathLike[str] = "model_repository",
        *,
        models: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        cache_size: int = 64 * 1024 * 1024,
        log_file: str | os.PathLike[str] | None = None,
        verbose: int = 0,
        exit_timeout: int = 30,
        model_control: ModelControl = "poll",
        poll_seconds: int = 1,
        restrict_apis: bool = True,
        admin_key: str | None = None,
        metrics_summaries: bool = True,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        if model_control not in ("poll", "explicit"):
            raise ValueError(f"model_control must be 'poll' or 'explicit', got {model_control!r}")
        if model_control == "explicit" and restrict_apis and not admin_key:
            raise ValueError(
                "explicit model control opens the load API: give an admin_key to restrict it"
            )
        self.model_repository = Path(model_repository).resolve()
        self.models = list(models) if models else None
        self.host = host
        self._auto_ports = {
            "HTTP": http_port is None,
            "gRPC": grpc_port is None,
            "metrics": metrics_port is None,
        }
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.cache_size = cache_size
        self._log_given = log_file is not None
        self.log_file = Path(log_file) if log_file else None
        self.verbose = verbose
        self.exit_timeout = exit_timeout
        self.model_control: ModelControl = model_control
        self.poll_seconds = poll_seconds
        self.restrict_apis = restrict_apis
        self.admin_key = admin_key
        self.metrics_summaries = metrics_summaries
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.run: RunDir | None = None
        self.served: list[str] = []
        self.started_at = 0.0  # time.monotonic() of the last start
        self.ready_at = 0.0  # ... and of the moment it was ready
        self._started_wall = 0.0
        self._ready_wall = 0.0
        self._log_handle: IO[bytes] | None = None
        self._guard: RegionGuard | None = None

    # Addresses -------------------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_address(self) -> str:
        """``host:port`` for ``tritonclient.http``."""
        return f"{self._client_host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """``host:port`` for ``tritonclient.grpc``."""
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"http://{self.http_address}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def ports(self) -> dict[str, int]:
        return {"HTTP": self.http_port, "gRPC": self.grpc_port, "metrics": self.metrics_port}

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers that open the restricted APIs: empty when they are closed to everyone."""
        return {ADMIN_HEADER: self.admin_key} if self.admin_key else {}

    @property
    def grpc_admin_headers(self) -> dict[str, str]:
        """The same for gRPC, where Triton expects the header as ``triton-grpc-protocol-<name>``."""
        return {f"{GRPC_HEADER_PREFIX}{k}": v for k, v in self.admin_headers.items()}

    @property
    def repository_view(self) -> Path:
        """The folder Triton serves: this start's private view of ``model_repository``."""
        if self.run is None:
            raise ServerError("the server has not been started")
        return self.run.repository

    # Command line ------------------------------------------------------------------------
    def command(self, backend_dir: Path, cache_dir: Path) -> list[str]:
        dist = server_distribution()
        repository = self.run.repository if self.run else self.model_repository
        return [
            str(dist.binary),
            f"--model-repository={repository}",
            f"--backend-directory={backend_dir}",
            f"--cache-directory={cache_dir}",
            *self.listener_args(),
            *self.model_control_args(),
            *self.restriction_args(),
            *self.backend_args(),
            f"--exit-timeout-secs={self.exit_timeout}",
            "--exit-on-error=false",
            "--strict-readiness=true",
            f"--log-verbose={self.verbose}",
            *([f"--cache-config=local,size={self.cache_size}"] if self.cache_size > 0 else []),
            *self.extra_args,
        ]

    def listener_args(self) -> list[str]:
        """Addresses and ports of the HTTP, gRPC and metrics endpoints."""
        args = [
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-cpu-metrics=true",
            "--allow-gpu-metrics=false",
        ]
        if self.metrics_summaries:
            args.append("--metrics-config=summary_latencies=true")
        return args

    def model_control_args(self) -> list[str]:
        if self.model_control == "explicit":
            return ["--model-control-mode=explicit", *(f"--load-model={m}" for m in self.served)]
        return ["--model-control-mode=poll", f"--repository-poll-secs={self.poll_seconds}"]

    def restriction_args(self) -> list[str]:
        if not self.restrict_apis:
            return []
        header, value = (ADMIN_HEADER, self.admin_key) if self.admin_key else (CLOSED_HEADER, "1")
        apis = ",".join(RESTRICTED_APIS)
        return [
            f"--http-restricted-api={apis}:{header}={value}",
            f"--grpc-restricted-protocol={apis}:{header}={value}",
        ]

    def backend_args(self) -> list[str]:
        """Name the Python backends' shared-memory regions after the run folder (for cleanup)."""
        if self.run is None:
            return []
        prefix = self.run.shm_prefix
        return [
            f"--backend-config={backend},shm-region-prefix-name={prefix}"
            for backend in ("python", *PYTHON_BASED_BACKENDS)
        ]

    def environment(self) -> dict[str, str]:
        dist = server_distribution()
        env = dict(os.environ)
        lib_paths = [str(p) for p in dist.library_dirs]
        if env.get("LD_LIBRARY_PATH"):
            lib_paths.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_paths)
        # The stub's embedded interpreter ignores PYTHONPATH and finds its prefix through the
        # first `python3` on PATH: put this interpreter's folder first so a venv's pyvenv.cfg
        # (and with it the venv's packages) is used.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = sys.prefix
        env.setdefault("OMP_NUM_THREADS", "1")
        if self.run is not None:
            env[RUN_DIR_ENV] = str(self.run.path)
        env.update(self.extra_env)
        return env

    # Lifecycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 180.0) -> LocalTriton:
        """Start the server and wait until it is ready; raise ``ServerError`` with the cause if not.

        A port given by the caller that is taken raises ``PortInUseError`` naming its holder; a
        port picked here is picked again (up to 3 starts) if another process took it first.
        """
        if self.running:
            raise ServerError(f"tritonserver is already running (pid {self.process.pid})")  # type: ignore[union-attr]
        if not self.model_repository.is_dir():
            raise ServerError(f"model repository not found: {self.model_repository}")
        backend_dir, cache_dir = assemble_backends()
        for attempt in range(1, 4):
            self._check_ports()
            self._launch(backend_dir, cache_dir)
            try:
                self.wait_ready(timeout)
            except PortInUseError as error:
                self.stop()
                if attempt == 3 or not self._repick(error):
                    raise
                continue
            except BaseException:
                self.stop()
                raise
            self._ready_wall = time.time()
            self.ready_at = time.monotonic()
            self.protect_regions()
            return self
        raise AssertionError("unreachable")

    def _check_ports(self) -> None:
        while taken := first_taken(self.ports, self.host):
            name, port, holder = taken
            error = PortInUseError(
                f"{name} port {port} on {self.host} is already in use"
                + (f" by {holder}" if holder else "")
                + ": stop it, or choose other ports"
            )
            if not self._repick(error, name):
                raise error

    def _repick(self, error: PortInUseError, name: str | None = None) -> bool:
        """Pick a new port for ``name`` (or the one ``error`` names) if it was picked here."""
        if name is None:
            found = re.search(r"port (\d+)", str(error))
            port = int(found.group(1)) if found else -1
            name = next((n for n, p in self.ports.items() if p == port), None)
        if name is None or not self._auto_ports.get(name):
            return False
        new = free_port(self._client_host)
        if name == "HTTP":
            self.http_port = new
        elif name == "gRPC":
            self.grpc_port = new
        else:
            self.metrics_port = new
        return True

    def _launch(self, backend_dir: Path, cache_dir: Path) -> None:
        self.run = RunDir.create(label=str(self.http_port))
        # Started before the server, so that no stub's region is readable by others for long.
        self._guard = RegionGuard(self.run.shm_prefix).start()
        self.served = self.run.make_view(self.model_repository, self.models)
        if not self._log_given:
            self.log_file = self.run.log
        assert self.log_file is not None
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - lives as long as the process
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(
            f"==== tritonctl {stamp}: starting tritonserver {TRITON_VERSION} on "
            f"{self.model_repository} (HTTP {self.http_port}, gRPC {self.grpc_port}, "
            f"metrics {self.metrics_port}) ====\n".encode()
        )
        log.flush()
        self._log_handle = log
        self._started_wall = time.time()
        self.started_at = time.monotonic()
        self.process = _spawn(self.command(backend_dir, cache_dir), self.environment(), log)

    def note(self, message: str) -> None:
        """Append a line to the server log (restarts and their causes go there too)."""
        if self.log_file is None:
            return
        with contextlib.suppress(OSError), open(self.log_file, "a") as handle:
            handle.write(f"==== tritonctl {time.strftime('%Y-%m-%d %H:%M:%S')}: {message} ====\n")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_tail()
                busy = re.search(r"Socket '([^']*):(\d+)' already in use", tail)
                if busy:
                    port = int(busy.group(2))
                    name = next((n for n, p in self.ports.items() if p == port), "a")
                    raise PortInUseError(
                        f"{name} port {port} on {busy.group(1)} is already in use "
                        "(another process bound it first)"
                    )
                raise ServerError(
                    f"tritonserver exited ({describe_exit(self.process.returncode)}) before it "
                    f"was ready.\n{tail}"
                )
            self._check_stub_failures()
            if self.is_ready():
                self._check_expected_models()
                return
            if self.is_live() and self._startup_done():
                # Triton prints its model table once every model has loaded or failed.
                self._check_expected_models()
            time.sleep(0.25)
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s.\n{self.log_tail()}")

    def _check_stub_failures(self) -> None:
        """Raise for a model whose config auto-complete stub failed to start: Triton 2.51 then
        waits for it forever (no model table, never ready), e.g. when ``model.py`` is missing."""
        failed = []
        for line in self._current_log():
            found = re.search(r"Failed to preinitialize Python stub: (.*)$", line)
            if not found:
                continue
            reason = found.group(1).strip()
            path = re.search(r"'([^']+)'", reason)
            parts = Path(path.group(1)).parts if path else ()
            # <view>/<model>/<version>/<file>: the model is the third part from the end
            name = parts[-3] if len(parts) >= 3 else "a Python model"
            failed.append(f"  {name}: {reason}")
        if failed:
            failed = list(dict.fromkeys(failed))
            raise ServerError("model(s) failed to load:\n" + "\n".join(failed))

    def _startup_done(self) -> bool:
        return any(line.startswith("| Model ") for line in self._current_log())

    def expected_models(self) -> list[str]:
        return list(self.served)

    def _check_expected_models(self) -> None:
        """Triton is ready even when it skipped a model whose config did not parse: catch that."""
        missing = []
        for name in self.expected_models():
            if not self.model_ready(name):
                missing.append(f"  {name}: {self._log_lines_about(name) or 'not loaded'}")
        if missing:
            raise ServerError("model(s) failed to load:\n" + "\n".join(missing))

    def _current_log(self) -> list[str]:
        """This start's part of the log (the file is appended to across restarts)."""
        lines = self.log_tail(2000).splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("==== tritonctl ")]
        begin = next((i for i in reversed(starts) if "starting tritonserver" in lines[i]), 0)
        return lines[begin:]

    def _log_lines_about(self, name: str) -> str:
        """The log's errors about ``name`` (with the protobuf parse error logged just before),
        or its row of the model table Triton prints at startup."""
        log = self._current_log()
        found: list[str] = []
        for index, line in enumerate(log):
            if f"'{name}'" in line and line[:1] in ("E", "W"):
                if index and log[index - 1].startswith("[libprotobuf"):
                    found.append(log[index - 1].rsplit("] ", 1)[-1])
                found.append(line.split("] ", 1)[-1].strip().strip('"'))
        if not found:
            row = re.compile(rf"^\|\s*{re.escape(name)}\s*\|[^|]*\|\s*(.*?)\s*\|$")
            found = [m.group(1) for line in log if (m := row.match(line))]
        return " | ".join(list(dict.fromkeys(found))[-4:])

    def is_live(self) -> bool:
        return self._get_ok("/v2/health/live")

    def is_ready(self) -> bool:
        return self._get_ok("/v2/health/ready")

    def model_ready(self, model: str) -> bool:
        """Whether Triton reports ``model`` READY (it does so even when a stub of it died)."""
        return self._get_ok(f"/v2/models/{urllib.parse.quote(model)}/ready")

    def _get_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def metadata(self) -> dict[str, object]:
        """The server's own ``GET /v2`` answer: name, version, extensions."""
        answer = _http_json(f"{self.url}/v2")
        return answer if isinstance(answer, dict) else {}

    def model_states(self) -> list[ModelState]:
        """Every served model with its state (and failure reason).

        With an admin key (or open APIs) this is Triton's repository index; otherwise each
        served model's readiness, with the reason from the log for a model that is not ready.
        """
        if self.admin_headers or not self.restrict_apis:
            return self._index()
        states = []
        for name in self.expected_models():
            if self.model_ready(name):
                states.append(ModelState(name, self._versions(name), "READY"))
            else:
                states.append(ModelState(name, "", "UNAVAILABLE", self._log_lines_about(name)))
        return states

    def model_config(self, model: str) -> dict[str, object]:
        """Triton's config of ``model`` as served (auto-completed); empty if it serves none now."""
        try:
            answer = _http_json(f"{self.url}/v2/models/{urllib.parse.quote(model)}/config")
        except (urllib.error.URLError, OSError, ValueError):
            return {}
        return answer if isinstance(answer, dict) else {}

    def _index(self) -> list[ModelState]:
        try:
            index = _http_json(
                f"{self.url}/v2/repository/index", data=b"{}", headers=self.admin_headers
            )
        except (urllib.error.URLError, OSError, ValueError):
            return []
        return [
            ModelState(
                name=str(item.get("name", "")),
                version=str(item.get("version", "")),
                state=str(item.get("state", "")),
                reason=str(item.get("reason", "")),
            )
            for item in (index if isinstance(index, list) else [])
        ]

    def _versions(self, model: str) -> str:
        try:
            meta = _http_json(f"{self.url}/v2/models/{urllib.parse.quote(model)}")
        except (urllib.error.URLError, OSError, ValueError):
            return ""
        versions = meta.get("versions", []) if isinstance(meta, dict) else []
        return ",".join(str(v) for v in versions)

    def reload(self, model: str) -> None:
        """Replace ``model``'s instances with new ones (new backend stubs): Triton loads them in
        the background and swaps them in, then finalizes the old ones.

        A plain load of an unchanged model only updates its config, leaving dead stubs in
        place; touching a marker in the model's folder of the view makes Triton see a changed
        model (in poll mode within ``poll_seconds``; in explicit mode on the load request).
        """
        if self.run is None:
            raise ServerError("the server has not been started")
        self.run.touch_reload_marker(model)
        if self.model_control == "explicit":
            _http_json(
                f"{self.url}/v2/repository/models/{urllib.parse.quote(model)}/load",
                data=b"{}",
                headers=self.admin_headers,
                timeout=300,
            )

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server log (read from its last MiB)."""
        if self.log_file is None:
            return ""
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(handle.tell() - (1 << 20), 0))
                text = handle.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def loads_completed(self, model: str) -> int:
        """How often this start has finished loading ``model`` (Triton logs it after the new
        instances replaced the old ones)."""
        done = re.compile(rf"successfully loaded '{re.escape(model)}'\"?$")
        return sum(1 for line in self._current_log() if done.search(line))

    def terminate(self) -> None:
        """Ask the server to shut down gracefully (it finishes in-flight requests first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stubs(self) -> list[tuple[int, list[str]]]:
        """``(pid, argv)`` of the server's Python backend stubs (zombies included)."""
        found = []
        for pid in self.group_pids():
            argv = _cmdline(pid)
            if argv and argv[0].endswith(STUB_BINARY):
                found.append((pid, argv))
        return found

    def protect_regions(self) -> None:
        """Make the stubs' shared-memory regions private (0600) now (a background guard keeps
        new ones private too: see ``tritonctl.shm_guard``)."""
        if self.run is not None:
            self.run.protect_regions()

    def stop(self) -> int | None:
        """Graceful stop, then make sure nothing of the server is left: no process of its group
        (stubs included), no shared-memory region, no run folder."""
        process = self.process
        code = None
        if process is not None:
            self.terminate()
            try:
                code = process.wait(self.exit_timeout + 15)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while any(True for _ in _pids_in_group(process.pid)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if code != 0:
                until = self._ready_wall or time.time()
                for folder in _leftover_python_envs(self._started_wall, until):
                    with contextlib.suppress(OSError):
                        folder.rmdir()
        handle = self._log_handle
        if handle is not None:
            handle.close()
            self._log_handle = None
        if self._guard is not None:
            self._guard.stop()
            self._guard = None
        if self.run is not None:
            self.run.remove()
            self.run = None
            if not self._log_given:
                self.log_file = None
        return code

    def kill(self) -> int | None:
        """Stop without draining: SIGKILL the server and its stubs, then clean up as ``stop``
        does. For when nothing is in flight and a graceful stop would only wait (the Python
        backend sleeps 1 s per instance while unloading a model)."""
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.stop()

    def group_pids(self) -> list[int]:
        """PIDs in the server's process group: the server and its backend stubs."""
        if self.process is None:
            return []
        return list(_pids_in_group(self.process.pid))

    def __enter__(self) -> LocalTriton:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
