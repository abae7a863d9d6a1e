"""The peers a user would pick instead of Triton, each started as its own server process.

* (d) FastAPI + uvicorn, one worker: ``tritonctl.bench.fastapi_app``;
* (f) LitServe with its dynamic batching: ``tritonctl.bench.litserve_app``.

Both serve the same ONNX file, tokenizer and length buckets as the Triton rows and answer
``POST {"texts": [...]}`` with ``{"embeddings": [...]}`` (``loadgen.JsonHttpTarget``). Each runs
in its own process group, so stopping it also stops the worker processes it forked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from tritonctl.server import free_port


@contextlib.contextmanager
def _process(
    args: Sequence[str], env: dict[str, str], ready_url: str, name: str, timeout_s: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        list(args),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"{name} exited:\n{stderr[-2000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start in {timeout_s:.0f} s") from None
                time.sleep(0.3)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # workers that ignored SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if process.stderr:
            process.stderr.close()


@contextlib.contextmanager
def fastapi_server(onnx: Path, tokenizer: Path, buckets: Sequence[int]) -> Iterator[str]:
    """uvicorn with one worker serving ``tritonctl.bench.fastapi_app``; yields the endpoint URL."""
    port = free_port()
    env = dict(os.environ)
    env["TRITONCTL_BENCH_ONNX"] = str(onnx)
    env["TRITONCTL_BENCH_TOKENIZER"] = str(tokenizer)
    env["TRITONCTL_BENCH_BUCKETS"] = ",".join(str(b) for b in buckets)
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "tritonctl.bench.fastapi_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with _process(args, env, f"http://127.0.0.1:{port}/health", "the FastAPI baseline"):
        yield f"http://127.0.0.1:{port}/embed"


@contextlib.contextmanager
def litserve_server(onnx: Path, tokenizer: Path, buckets: Sequence[int]) -> Iterator[str]:
    """LitServe (``tritonctl.bench.litserve_app``) with its batching; yields the endpoint URL."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "tritonctl.bench.litserve_app",
        "--port",
        str(port),
        "--onnx",
        str(onnx),
        "--tokenizer",
        str(tokenizer),
        "--buckets",
        ",".join(str(b) for b in buckets),
    ]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    with _process(args, env, f"http://127.0.0.1:{port}/health", "the LitServe peer"):
        yield f"http://127.0.0.1:{port}/predict"
