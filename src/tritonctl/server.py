"""Run the real Triton Inference Server (from the nvidia-pytriton wheel) as a child process.

``LocalTriton`` is the one way the CLI, tests, benchmarks and load tests start a server::

    with LocalTriton(model_repository="model_repository") as server:
        client = tritonclient.http.InferenceServerClient(server.http_address)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tritonctl.backends import assemble_backends, server_distribution

#: APIs that let a caller change or inspect the server; locked behind a key by default.
RESTRICTED_HTTP_APIS = ("model-repository", "shared-memory", "trace", "logging")
RESTRICTED_GRPC_PROTOCOLS = ("model-repository", "shared-memory", "trace", "logging")
ADMIN_HEADER = "admin-key"


class ServerError(RuntimeError):
    """The server failed to start, or a model failed to load."""


@dataclass(frozen=True)
class ModelState:
    name: str
    version: str
    state: str
    reason: str = ""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _http_json(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 5
) -> object:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


class LocalTriton:
    """A real ``tritonserver`` process serving a model repository on this machine.

    Ports left as ``None`` are picked free. ``models`` switches to explicit model control and
    loads just those. ``restrict_apis`` locks the repository, shared-memory, trace and logging
    APIs behind ``admin_key`` (sent as the ``admin-key`` header).
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
        restrict_apis: bool = True,
        admin_key: str | None = None,
        metrics_summaries: bool = True,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.models = list(models) if models else None
        self.host = host
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.cache_size = cache_size
        self.log_file = Path(log_file) if log_file else None
        self.verbose = verbose
        self.exit_timeout = exit_timeout
        self.restrict_apis = restrict_apis
        self.admin_key = admin_key or secrets.token_urlsafe(16)
        self.metrics_summaries = metrics_summaries
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: object | None = None

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
    def admin_headers(self) -> dict[str, str]:
        return {ADMIN_HEADER: self.admin_key} if self.restrict_apis else {}

    # Lifecycle -------------------------------------------------------------------------
    def command(self, backend_dir: Path, cache_dir: Path) -> list[str]:
        dist = server_distribution()
        args = [
            str(dist.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--cache-directory={cache_dir}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--exit-timeout-secs={self.exit_timeout}",
            "--exit-on-error=false",
            "--strict-readiness=true",
            "--allow-metrics=true",
            "--allow-cpu-metrics=true",
            "--allow-gpu-metrics=false",
            f"--log-verbose={self.verbose}",
        ]
        if self.cache_size > 0:
            args.append(f"--cache-config=local,size={self.cache_size}")
        if self.metrics_summaries:
            args.append("--metrics-config=summary_latencies=true")
        if self.models is not None:
            args.append("--model-control-mode=explicit")
            args += [f"--load-model={name}" for name in self.models]
        if self.restrict_apis:
            http_apis = ",".join(RESTRICTED_HTTP_APIS)
            grpc_apis = ",".join(RESTRICTED_GRPC_PROTOCOLS)
            args.append(f"--http-restricted-api={http_apis}:{ADMIN_HEADER}={self.admin_key}")
            args.append(f"--grpc-restricted-protocol={grpc_apis}:{ADMIN_HEADER}={self.admin_key}")
        return args + self.extra_args

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
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180.0) -> LocalTriton:
        """Start the server and wait until it is ready; raise ``ServerError`` with the cause if not."""
        if not self.model_repository.is_dir():
            raise ServerError(f"model repository not found: {self.model_repository}")
        backend_dir, cache_dir = assemble_backends()
        if self.log_file is None:
            from tritonctl.paths import cache_dir as tritonctl_cache

            logs = tritonctl_cache() / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            self.log_file = logs / f"tritonserver-{self.http_port}.log"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "wb")  # noqa: SIM115 - lives as long as the process
        self._log_handle = log
        self.process = subprocess.Popen(
            self.command(backend_dir, cache_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            start_new_session=True,  # its own process group: stubs are reaped with it
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(
                    f"tritonserver exited with code {self.process.returncode} before it was "
                    f"ready.\n{self.log_tail()}"
                )
            if self.is_ready():
                self._check_expected_models()
                return
            if self.is_live():
                failed = [m for m in self.model_states() if m.state == "UNAVAILABLE"]
                if failed:
                    lines = "\n".join(
                        f"  {m.name} (v{m.version or '-'}): {m.reason}" for m in failed
                    )
                    raise ServerError(f"model(s) failed to load:\n{lines}")
            time.sleep(0.25)
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s.\n{self.log_tail()}")

    def expected_models(self) -> list[str]:
        if self.models is not None:
            return list(self.models)
        return sorted(
            p.name for p in self.model_repository.iterdir() if (p / "config.pbtxt").is_file()
        )

    def _check_expected_models(self) -> None:
        """Triton is ready even when it skipped a model whose config did not parse: catch that."""
        states = {m.name: m for m in self.model_states()}
        missing = []
        for name in self.expected_models():
            state = states.get(name)
            if state is None or state.state != "READY":
                reason = (state.reason if state else "") or self._log_lines_about(name)
                missing.append(f"  {name}: {reason or 'not loaded'}")
        if missing:
            raise ServerError("model(s) failed to load:\n" + "\n".join(missing))

    def _log_lines_about(self, name: str) -> str:
        """The server log's errors about ``name`` (and the protobuf parse error logged just before)."""
        log = self.log_tail(400).splitlines()
        found: list[str] = []
        for index, line in enumerate(log):
            if f"'{name}'" in line and line[:1] in ("E", "W"):
                if index and log[index - 1].startswith("[libprotobuf"):
                    found.append(log[index - 1].rsplit("] ", 1)[-1])
                found.append(line.split("] ", 1)[-1].strip().strip('"'))
        return " | ".join(found[-4:])

    def is_live(self) -> bool:
        return self._health("live")

    def is_ready(self) -> bool:
        return self._health("ready")

    def _health(self, what: str) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/{what}", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def model_states(self) -> list[ModelState]:
        """The repository index: every model Triton knows, with its state and failure reason."""
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

    def log_tail(self, lines: int = 30) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        text = self.log_file.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def terminate(self) -> None:
        """Ask the server to shut down gracefully (it finishes in-flight requests first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int | None:
        """Graceful stop, then make sure no process of the group (stubs included) is left."""
        if self.process is None:
            return None
        self.terminate()
        try:
            code = self.process.wait(self.exit_timeout + 15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        handle = self._log_handle
        if handle is not None:
            handle.close()  # type: ignore[attr-defined]
            self._log_handle = None
        return code

    def group_pids(self) -> list[int]:
        """PIDs in the server's process group: the server and its backend stubs."""
        if self.process is None:
            return []
        return list(_pids_in_group(self.process.pid))

    def __enter__(self) -> LocalTriton:
        if self.process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _pids_in_group(pgid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 5 is the process group; the command name (field 2) may hold spaces.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            yield int(entry.name)
