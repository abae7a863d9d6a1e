"""``tritonctl bench``: configurations (a)–(e) of the text-embedding service, side by side.

One run, one machine, one corpus (``tritonctl.corpus.sentences()``), one load generator
(``tritonctl.bench.loadgen``, closed loop at each concurrency). Servers run one at a time so
that each configuration has the machine to itself. Triton configurations are served from a
temporary copy of the repository without the response cache: the corpus is cycled, and a
cache would answer from memory instead of computing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonctl import paths
from tritonctl.bench import inprocess
from tritonctl.bench.loadgen import (
    JsonHttpTarget,
    Point,
    Target,
    TritonGrpcShmTarget,
    TritonGrpcTarget,
    TritonHttpTarget,
    run_point,
)
from tritonctl.bench.profile import (
    StatsWindow,
    cpu_per_request,
    finish_records,
    process_cpu_seconds,
    start_records,
    stub_pids,
)
from tritonctl.bench.staging import (
    chain,
    stage_repository,
    without_dynamic_batching,
    without_response_cache,
)
from tritonctl.console import console
from tritonctl.model_config import load_config
from tritonctl.server import LocalTriton, free_port

ENSEMBLE = "text_embedding"
ENSEMBLE_INT8 = "text_embedding_int8"
CONFIG_NAMES = {
    "a": "a in-process",
    "b": "b triton",
    "c": "c triton no-batching",
    "d": "d fastapi",
    "e": "e triton int8",
}
CONFIG_DESCRIPTIONS = {
    "a": "tokenizer + ONNX Runtime + pooling in one process, batches grouped by bucket, no server",
    "b": "Triton ensemble text_embedding with dynamic batching, as tuned",
    "c": "the same ensemble with dynamic_batching removed from every config",
    "d": "FastAPI + uvicorn (1 worker), tokenizer + ONNX Runtime per request",
    "e": "Triton ensemble text_embedding_int8 (INT8 encoder)",
}


@dataclass
class BenchOptions:
    concurrencies: tuple[int, ...] = (1, 4, 16, 64)
    warmup_s: float = 3.0
    duration_s: float = 8.0
    configs: str = "abcde"
    protocol: str = "grpc"
    profile: bool = True
    repository: Path = field(default_factory=paths.model_repository)
    out_dir: Path = field(default_factory=lambda: paths.reports_dir() / "bench")

    @classmethod
    def quick(cls, **changes: Any) -> BenchOptions:
        """A short run (about two minutes) for a first look; figures are noisier."""
        return cls(warmup_s=1.0, duration_s=3.0, **changes)


@dataclass
class PipelineFiles:
    onnx: Path
    onnx_int8: Path | None
    tokenizer: Path
    buckets: tuple[int, ...]


def pipeline_files(repository: Path) -> PipelineFiles:
    """The served ONNX files, the served tokenizer and its length buckets."""
    onnx = repository / "text_encoder" / "1" / "model.onnx"
    if not onnx.exists():
        raise FileNotFoundError(
            f"{onnx} not found: build the pipeline first (tritonctl build text-embedding)"
        )
    int8 = repository / "text_encoder_int8" / "1" / "model.onnx"
    tokenizer_dir = repository / "tokenizer"
    candidates = sorted(tokenizer_dir.glob("*/tokenizer.json")) + sorted(
        tokenizer_dir.rglob("tokenizer.json")
    )
    if not candidates:
        raise FileNotFoundError(f"no tokenizer.json under {tokenizer_dir}")
    buckets: tuple[int, ...] = inprocess.DEFAULT_BUCKETS
    config = load_config(tokenizer_dir)
    for key, value in config.parameters.items():
        numbers = [int(n) for n in re.findall(r"\d+", value.string_value)]
        if "bucket" in key.lower() and numbers:
            buckets = tuple(sorted(numbers))
    return PipelineFiles(onnx, int8 if int8.exists() else None, candidates[0], buckets)


@dataclass
class BenchResult:
    points: list[Point] = field(default_factory=list)
    server_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # "b@16" -> per model
    probes: dict[str, Any] = field(default_factory=dict)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def series(self, key: str) -> list[Point]:
        return sorted(
            (p for p in self.points if p.config == CONFIG_NAMES[key]), key=lambda p: p.concurrency
        )


def machine_info() -> dict[str, Any]:
    import platform

    import onnxruntime

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory_gib = int(first.split()[1]) / 1024 / 1024
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "tritonserver": "2.51.0 (nvidia-pytriton 0.7.0 wheel)",
        "load_average_start": list(os.getloadavg()),
    }


@contextlib.contextmanager
def _triton(repository: Path, models: list[str]) -> Iterator[LocalTriton]:
    server = LocalTriton(repository, models=models, cache_size=0, exit_timeout=5)
    with server:
        yield server


def _triton_target(server: LocalTriton, model: str, options: BenchOptions, name: str) -> Target:
    if options.protocol == "http":
        return TritonHttpTarget(server.http_address, model, name=name)
    return TritonGrpcTarget(server.grpc_address, model, name=name)


class InProcessLimit:
    """Configuration (a): the embedders, and a measurement at one batch size in both layouts."""

    def __init__(self, files: PipelineFiles) -> None:
        self.files = files
        self.cores = os.cpu_count() or 1
        self.embedder = inprocess.InProcessEmbedder(files.onnx, files.tokenizer, files.buckets)
        self.singles = [
            inprocess.InProcessEmbedder(
                files.onnx, files.tokenizer, files.buckets, intra_op_threads=1
            )
            for _ in range(self.cores)
        ]
        self.measured: list[Point] = []

    def point(
        self, result: BenchResult, texts: Sequence[str], batch: int, options: BenchOptions
    ) -> Point:
        """Batch ``batch`` over one session on all cores, then over one 1-thread session per core."""
        one = inprocess.measure_batch(
            self.embedder,
            texts,
            batch,
            warmup_s=min(options.warmup_s, 1.0),
            duration_s=options.duration_s / 2,
            name=CONFIG_NAMES["a"],
        )
        one.extra["layout"] = f"1 session x {self.cores} threads"
        parallel = inprocess.measure_parallel(
            self.singles,
            texts,
            batch,
            warmup_s=min(options.warmup_s, 1.0),
            duration_s=options.duration_s / 2,
            name=CONFIG_NAMES["a"],
        )
        parallel.extra["layout"] = f"{self.cores} sessions x 1 thread"
        result.probes.setdefault("a_layouts", {})[str(batch)] = {
            one.extra["layout"]: round(one.throughput, 1),
            parallel.extra["layout"]: round(parallel.throughput, 1),
        }
        self.measured += [one, parallel]
        if batch == 1:
            # A single request is one stream: the faster of one session on all cores and one
            # single-threaded session (ONNX Runtime's spinning pool suffers on shared cores).
            lone = inprocess.measure_batch(
                self.singles[0],
                texts,
                1,
                warmup_s=min(options.warmup_s, 1.0),
                duration_s=options.duration_s / 2,
                name=CONFIG_NAMES["a"],
            )
            lone.extra["layout"] = "1 session x 1 thread"
            result.probes["a_layouts"]["1"][lone.extra["layout"]] = round(lone.throughput, 1)
            return one if one.p50_ms <= lone.p50_ms else lone
        return one if one.throughput >= parallel.throughput else parallel


def run_inprocess_probes(
    result: BenchResult,
    limit: InProcessLimit,
    texts: Sequence[str],
    options: BenchOptions,
    progress: Callable[[str], None],
) -> None:
    """The best batch size of (a), its single-request latency, and the bucketing/threads probes."""
    for batch in (8, 32):
        if batch not in options.concurrencies:
            progress(f"{CONFIG_NAMES['a']} @ batch={batch} (best-batch search)")
            limit.point(result, texts, batch, options)
    best = max(limit.measured, key=lambda p: p.throughput)
    result.probes["a_best_batch"] = best.as_dict()
    result.probes["a_cpu_ms_per_sentence"] = round(
        best.client_cpu_cores * 1000 / best.throughput, 3
    )
    singles = [p for p in result.points if p.config == CONFIG_NAMES["a"] and p.concurrency == 1]
    if singles:
        result.probes["a_single_request_ms"] = singles[0].p50_ms
    files, embedder = limit.files, limit.embedder

    # Bucketing: the same batch of 32 padded three ways.
    short = options.duration_s / 4
    probes: dict[str, Any] = {}
    for label, grouped, pad_to in (
        ("grouped by bucket", True, None),
        ("mixed, padded to the bucket of the longest", False, None),
        ("mixed, padded to 256", False, 256),
    ):
        progress(f"bucketing probe: {label}")
        point = inprocess.measure_batch(
            embedder, texts, 32, warmup_s=0.3, duration_s=short, grouped=grouped, pad_to=pad_to
        )
        probes[label] = round(point.throughput, 1)
    result.probes["bucketing_batch32_sentences_per_s"] = probes

    # ONNX Runtime threads: one thread per session (one per instance) against all cores.
    threads: dict[str, Any] = {}
    for count in (1, 2):
        session = inprocess.InProcessEmbedder(
            files.onnx, files.tokenizer, files.buckets, intra_op_threads=count
        )
        for batch in (1, 32):
            progress(f"threads probe: intra_op={count} batch={batch}")
            point = inprocess.measure_batch(session, texts, batch, warmup_s=0.3, duration_s=short)
            threads[f"intra_op={count} batch={batch}"] = {
                "sentences_per_s": round(point.throughput, 1),
                "p50_ms": round(point.p50_ms, 2),
            }
    result.probes["ort_threads"] = threads
    if files.onnx_int8 is not None:
        int8 = inprocess.InProcessEmbedder(files.onnx_int8, files.tokenizer, files.buckets)
        progress("INT8 in-process at the best batch size")
        point = inprocess.measure_batch(
            int8, texts, int(best.concurrency), warmup_s=0.5, duration_s=short
        )
        result.probes["a_int8_best_batch_sentences_per_s"] = round(point.throughput, 1)


def run_probes(
    result: BenchResult,
    server: LocalTriton,
    texts: Sequence[str],
    options: BenchOptions,
    progress: Callable[[str], None],
) -> None:
    """Client paths at c=1: gRPC, HTTP, and gRPC with the output in system shared memory."""
    probes: dict[str, Any] = {}
    short = max(options.duration_s / 2, 2.0)
    targets: list[tuple[str, Target]] = [
        ("grpc", TritonGrpcTarget(server.grpc_address, ENSEMBLE)),
        ("http", TritonHttpTarget(server.http_address, ENSEMBLE)),
        (
            "grpc + system shared memory output",
            TritonGrpcShmTarget(server.grpc_address, ENSEMBLE, headers=server.admin_headers),
        ),
    ]
    for label, target in targets:
        progress(f"client path probe at c=1: {label}")
        try:
            point = run_point(target, texts, 1, warmup_s=0.5, duration_s=short)
        except Exception as error:  # noqa: BLE001 - a probe that fails is reported, not fatal
            probes[label] = {"error": f"{type(error).__name__}: {error}"}
            continue
        probes[label] = {
            "p50_ms": round(point.p50_ms, 3),
            "p99_ms": round(point.p99_ms, 3),
            "errors": point.errors,
            "first_error": point.first_error,
        }
    result.probes["client_paths_c1"] = probes


def run_profile(
    result: BenchResult,
    server: LocalTriton,
    texts: Sequence[str],
    options: BenchOptions,
    progress: Callable[[str], None],
) -> None:
    """py-spy on every stub while (b) runs at c=16 (a separate, unmeasured pass)."""
    seconds = max(options.duration_s / 2, 3.0)
    stubs = stub_pids(server.group_pids())
    stubs = {m: p for m, p in stubs.items() if m != "text_encoder_int8"}
    running = start_records(stubs, seconds, options.out_dir / "profile")
    if not running:
        result.probes["profile_error"] = "py-spy not found (pip install '.[bench]')"
        return
    progress(f"profiling {len(running)} stub(s) with py-spy at c=16")
    names = {pid: f"stub {model}" for model, pids in stubs.items() for pid in pids}
    assert server.process is not None
    names[server.process.pid] = "tritonserver (gRPC, ensemble, batchers)"
    names[os.getpid()] = "load generator (client)"
    cpu: dict[str, dict[int, float]] = {}
    point = run_point(
        TritonGrpcTarget(server.grpc_address, ENSEMBLE),
        texts,
        16,
        warmup_s=0.2,
        duration_s=seconds,
        on_window_start=lambda: cpu.__setitem__("before", process_cpu_seconds(list(names))),
        on_window_end=lambda: cpu.__setitem__("after", process_cpu_seconds(list(names))),
    )
    result.probes["profile_pass_throughput"] = round(point.throughput, 1)
    result.probes["cpu_ms_per_request_c16"] = cpu_per_request(
        cpu.get("before", {}), cpu.get("after", {}), names, point.requests
    )
    result.profiles = [p.as_dict() for p in finish_records(running, seconds)]


@contextlib.contextmanager
def fastapi_server(files: PipelineFiles) -> Iterator[str]:
    """uvicorn with one worker serving ``tritonctl.bench.fastapi_app``; yields the endpoint URL."""
    port = free_port()
    env = dict(os.environ)
    env["TRITONCTL_BENCH_ONNX"] = str(files.onnx)
    env["TRITONCTL_BENCH_TOKENIZER"] = str(files.tokenizer)
    process = subprocess.Popen(
        [
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
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"the FastAPI baseline exited:\n{stderr[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the FastAPI baseline did not start in 60 s") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/embed"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _served_point(
    result: BenchResult,
    key: str,
    target: Target,
    texts: Sequence[str],
    concurrency: int,
    options: BenchOptions,
    stats_url: str | None,
) -> Point:
    window = StatsWindow(stats_url) if stats_url else None
    point = run_point(
        target,
        texts,
        concurrency,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
        on_window_start=window.start if window else None,
        on_window_end=window.end if window else None,
    )
    point.config = CONFIG_NAMES[key]
    if window is not None:
        result.server_stats[f"{key}@{concurrency}"] = window.deltas()
    return point


def run_bench(options: BenchOptions, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Measure every configuration in ``options.configs``; the caller writes the report.

    All servers are started first and the configurations are measured interleaved, concurrency
    by concurrency (a, b, c, d, e at c=1, then at c=4, ...): other work on the machine drifts
    over minutes, and measuring the five side by side keeps each ratio within one time slice.
    An idle server costs no CPU while another configuration is measured.
    """
    from tritonctl.corpus import sentences

    say = progress or (lambda message: console.log(message))
    files = pipeline_files(options.repository)
    texts = sentences()
    result = BenchResult(machine=machine_info())
    result.options = {
        "concurrencies": list(options.concurrencies),
        "warmup_s": options.warmup_s,
        "duration_s": options.duration_s,
        "configs": options.configs,
        "protocol": options.protocol,
        "corpus_sentences": len(texts),
        "buckets": list(files.buckets),
        "onnx": str(files.onnx),
        "order": "interleaved: every configuration at c=1, then every one at c=4, ...",
    }
    keys = [k for k in "abcde" if k in options.configs]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tritonctl-bench-")))
        limit = InProcessLimit(files) if "a" in keys else None
        served: dict[str, Callable[[int], Point]] = {}
        main_server: LocalTriton | None = None
        if "b" in keys or "e" in keys:
            models = [ENSEMBLE] + ([ENSEMBLE_INT8] if "e" in keys else [])
            staged = stage_repository(
                options.repository, tmp / "tuned", models, edit=without_response_cache
            )
            say("starting Triton (b, e)")
            main_server = stack.enter_context(_triton(staged, models))
            for key, model in (("b", ENSEMBLE), ("e", ENSEMBLE_INT8)):
                if key in keys:
                    served[key] = functools.partial(
                        lambda c, k, m, srv: _served_point(
                            result,
                            k,
                            _triton_target(srv, m, options, CONFIG_NAMES[k]),
                            texts,
                            c,
                            options,
                            srv.metrics_url,
                        ),
                        k=key,
                        m=model,
                        srv=main_server,
                    )
        if "c" in keys:
            staged = stage_repository(
                options.repository,
                tmp / "unbatched",
                [ENSEMBLE],
                edit=chain(without_response_cache, without_dynamic_batching),
            )
            say("starting Triton without dynamic batching (c)")
            unbatched = stack.enter_context(_triton(staged, [ENSEMBLE]))
            served["c"] = lambda c: _served_point(
                result,
                "c",
                _triton_target(unbatched, ENSEMBLE, options, CONFIG_NAMES["c"]),
                texts,
                c,
                options,
                unbatched.metrics_url,
            )
        if "d" in keys:
            say("starting the FastAPI baseline (d)")
            url = stack.enter_context(fastapi_server(files))
            served["d"] = lambda c: _served_point(
                result, "d", JsonHttpTarget(url, name=CONFIG_NAMES["d"]), texts, c, options, None
            )
        for concurrency in options.concurrencies:
            for key in keys:
                say(f"{CONFIG_NAMES[key]} @ c={concurrency}")
                if key == "a":
                    assert limit is not None
                    result.points.append(limit.point(result, texts, concurrency, options))
                else:
                    result.points.append(served[key](concurrency))
        if limit is not None:
            run_inprocess_probes(result, limit, texts, options, say)
        if main_server is not None and "b" in keys:
            run_probes(result, main_server, texts, options, say)
            if options.profile:
                run_profile(result, main_server, texts, options, say)
    result.machine["load_average_end"] = list(os.getloadavg())
    return result
