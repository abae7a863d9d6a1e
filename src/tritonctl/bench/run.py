"""``tritonctl bench``: the served pipelines against their in-process limit and the peers, in rounds.

One run, one machine, one load generator (``tritonctl.bench.loadgen``, closed loop). Every
server starts first; then **rounds**: each round measures every point once (the order rotates
from round to round), so each goal's ratio is computed within a round, from points measured
minutes apart at most, and the rounds give its interval (``tritonctl.bench.goals``).

Points, for each text corpus (``short``: queries, titles and captions; ``long``: the long-tail
evaluation corpus):

- ``a-limit``: in process, the best layout and batch size with an ideal batcher (texts of one
  bucket batched together); chosen once, in a selection pass before the rounds, then measured
  in every round, so the limit is one draw per round and not the best of many;
- ``a-single``: in process, one text at a time, the faster of one session on every core and one
  1-thread session (also chosen once);
- ``b@1``, ``b@16``: the committed ``text_embedding`` ensemble, one text per request;
  ``b-bulk8@4``, ``b-bulk32@2``: 8 or 32 texts per request (indexing jobs);
- ``c@16``: the ensemble with ``dynamic_batching`` removed from every config;
- ``d@16``: FastAPI + uvicorn; ``f@16``: LitServe with its batching (``tritonctl.bench.peers``);
- ``e@16``: the ``text_embedding_int8`` ensemble;

and for the digits ensemble (PNG → label): ``digits/a-limit``, ``digits/a-single``, ``digits/b@1``,
``digits/b@16``. Triton serves from a temporary copy of the repository without the response
cache: the corpora are cycled, and a cache would answer from memory instead of computing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from tritonctl import paths
from tritonctl.bench import digits as digits_bench
from tritonctl.bench import inprocess
from tritonctl.bench.goals import Round
from tritonctl.bench.loadgen import (
    JsonHttpTarget,
    Point,
    Target,
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
from tritonctl.server import LocalTriton

ENSEMBLE = "text_embedding"
ENSEMBLE_INT8 = "text_embedding_int8"
#: configuration letter -> what it is (the letters of ``--configs``)
CONFIGS = {
    "a": "in process (the limit)",
    "b": "Triton text_embedding, as committed",
    "c": "Triton, dynamic batching removed",
    "d": "FastAPI + uvicorn, 1 worker",
    "e": "Triton text_embedding_int8 (needs b)",
    "f": "LitServe, max_batch_size 8",
    "g": "digits: Triton digit_classifier and its in-process limit",
}
CORPORA = ("short", "long")


@dataclass
class BenchOptions:
    rounds: int = 3
    warmup_s: float = 1.0
    duration_s: float = 4.0
    corpora: tuple[str, ...] = CORPORA
    configs: str = "abcdefg"
    single_concurrency: int = 16
    bulk: tuple[tuple[int, int], ...] = ((8, 4), (32, 2))  # (texts per request, clients)
    protocol: str = "grpc"
    profile: bool = True
    repository: Path = field(default_factory=paths.model_repository)
    out_dir: Path = field(default_factory=lambda: paths.reports_dir() / "bench")

    @classmethod
    def quick(cls, **changes: Any) -> BenchOptions:
        """A short run (a few minutes) for a first look; the intervals are wider."""
        return cls(warmup_s=0.5, duration_s=2.0, **changes)


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
    tokenizer = repository / "tokenizer" / "1" / "tokenizer.json"
    if not tokenizer.exists():
        raise FileNotFoundError(f"{tokenizer} not found: build the pipeline first")
    config = load_config(repository / "tokenizer")
    buckets: tuple[int, ...] = inprocess.DEFAULT_BUCKETS
    if "length_buckets" in config.parameters:
        value = config.parameters["length_buckets"].string_value
        buckets = tuple(sorted(int(b) for b in value.split(",") if b.strip()))
    return PipelineFiles(onnx, int8 if int8.exists() else None, tokenizer, buckets)


def corpus_texts(name: str) -> list[str]:
    from tritonctl.corpus import sentences
    from tritonctl.short_corpus import short_texts

    return short_texts() if name == "short" else sentences()


@dataclass
class BenchResult:
    rounds: list[Round] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)  # the limit's layout search
    server_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> per model
    accuracy: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, Any] = field(default_factory=dict)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def point_keys(self) -> list[str]:
        seen: list[str] = []
        for points in self.rounds:
            seen += [k for k in points if k not in seen]
        return seen

    def series(self, key: str) -> list[Point]:
        return [points[key] for points in self.rounds if key in points]


def machine_info() -> dict[str, Any]:
    import platform

    import onnxruntime

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    flags = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        found = next((line for line in text.splitlines() if line.startswith("flags")), "")
        names = set(found.split())
        flags = ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in names)
    memory_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory_gib = int(first.split()[1]) / 1024 / 1024
    return {
        "cpu": model,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "tritonserver": "2.51.0 (nvidia-pytriton 0.7.0 wheel)",
        "load_average_start": list(os.getloadavg()),
    }


@dataclass
class Measurement:
    """One point of the plan: measured once per round by ``run``."""

    key: str
    run: Callable[[], Point]


def _served(
    target: Target,
    texts: Sequence[Any],
    concurrency: int,
    options: BenchOptions,
    server: LocalTriton | None = None,
    stats: dict[str, Any] | None = None,
) -> Point:
    """A closed-loop point; with ``server``, its CPU per item and Triton's per-model statistics."""
    window = StatsWindow(server.metrics_url) if server is not None else None
    pids = (server.group_pids() if server is not None else []) + [os.getpid()]
    cpu: dict[str, dict[int, float]] = {}

    def started() -> None:
        cpu["before"] = process_cpu_seconds(pids)
        if window is not None:
            window.start()

    def ended() -> None:
        cpu["after"] = process_cpu_seconds(pids)
        if window is not None:
            window.end()

    point = run_point(
        target,
        texts,
        concurrency,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
        on_window_start=started,
        on_window_end=ended,
    )
    if server is not None and point.requests:
        used = sum(cpu["after"].get(p, v) - v for p, v in cpu.get("before", {}).items())
        point.extra["cpu_ms_per_item"] = round(used * 1000 / point.requests, 3)
    if window is not None and stats is not None:
        stats.update(window.deltas())
    return point


def _cpu_per_item(point: Point) -> Point:
    """In process, this process's CPU per item: comparable with a served point's CPU per item
    (server, stubs and client together), and far less sensitive to other jobs than items/s."""
    if point.throughput > 0:
        point.extra["cpu_ms_per_item"] = round(point.client_cpu_cores * 1000 / point.throughput, 3)
    return point


class TextLimit:
    """Configuration (a) for one corpus: the layout search, then one draw per round."""

    LIMIT_BATCHES = (4, 8, 16, 32)

    def __init__(self, files: PipelineFiles, texts: Sequence[str], options: BenchOptions) -> None:
        cores = os.cpu_count() or 1
        self.texts, self.options = texts, options
        make = inprocess.InProcessEmbedder
        self.all_cores = make(files.onnx, files.tokenizer, files.buckets)
        self.singles = [
            make(files.onnx, files.tokenizer, files.buckets, intra_op_threads=1)
            for _ in range(cores)
        ]
        self.layouts: dict[str, list[inprocess.Embedder]] = {
            f"1 session x {cores} threads": [self.all_cores],
            f"{cores} sessions x 1 thread": list(self.singles),
        }
        self.limit: tuple[str, int] = (next(iter(self.layouts)), 8)
        self.single: str = next(iter(self.layouts))

    def _measure(self, layout: str, batch: int, duration_s: float, warmup_s: float) -> Point:
        sessions = self.layouts[layout]
        if len(sessions) == 1:
            point = inprocess.measure_batch(
                sessions[0], self.texts, batch, warmup_s=warmup_s, duration_s=duration_s
            )
        else:
            point = inprocess.measure_parallel(
                sessions, self.texts, batch, warmup_s=warmup_s, duration_s=duration_s
            )
        point.config = "a"
        point.extra["layout"] = layout
        _cpu_per_item(point)
        return point

    def select(self, say: Callable[[str], None]) -> dict[str, Any]:
        """Measure every layout × batch size once (half windows); keep the best for the rounds."""
        short, warm = self.options.duration_s / 2, min(self.options.warmup_s, 0.5)
        found: dict[str, Any] = {"limit": {}, "single": {}}
        best = (0.0, self.limit)
        for layout in self.layouts:
            for batch in self.LIMIT_BATCHES:
                say(f"  limit search: {layout}, batch {batch}")
                point = self._measure(layout, batch, short, warm)
                found["limit"][f"{layout}, batch {batch}"] = round(point.throughput, 1)
                if point.throughput > best[0]:
                    best = (point.throughput, (layout, batch))
        self.limit = best[1]
        self.layouts["1 session x 1 thread"] = [self.singles[0]]
        quickest = (float("inf"), self.single)
        for layout in (next(iter(self.layouts)), "1 session x 1 thread"):
            point = self._measure(layout, 1, short, warm)
            found["single"][layout] = round(point.p50_ms, 3)
            if point.p50_ms < quickest[0]:
                quickest = (point.p50_ms, layout)
        self.single = quickest[1]
        found["chosen"] = {
            "limit": f"{self.limit[0]}, batch {self.limit[1]}",
            "single": self.single,
        }
        return found

    def measure_limit(self) -> Point:
        layout, batch = self.limit
        return self._measure(layout, batch, self.options.duration_s, self.options.warmup_s)

    def measure_single(self) -> Point:
        return self._measure(self.single, 1, self.options.duration_s, self.options.warmup_s)


class DigitsLimit:
    """The digits ensemble's in-process limit: decode + CNN, best batch over one session per core."""

    BATCHES = (16, 64)

    def __init__(self, repository: Path, options: BenchOptions) -> None:
        cores = os.cpu_count() or 1
        self.options = options
        self.images = digits_bench.png_images()
        self.pipelines = [digits_bench.DigitsPipeline(repository) for _ in range(cores)]
        self.batch = self.BATCHES[-1]

    def _measure(self, sessions: int, batch: int, duration_s: float, warmup_s: float) -> Point:
        point = digits_bench.measure(
            self.pipelines[:sessions],
            self.images,
            batch,
            warmup_s=warmup_s,
            duration_s=duration_s,
            name="a",
        )
        return _cpu_per_item(point)

    def select(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        best = (0.0, self.batch)
        for batch in self.BATCHES:
            point = self._measure(len(self.pipelines), batch, self.options.duration_s / 2, 0.3)
            found[f"{len(self.pipelines)} sessions x 1 thread, batch {batch}"] = round(
                point.throughput, 1
            )
            if point.throughput > best[0]:
                best = (point.throughput, batch)
        self.batch = best[1]
        return found

    def measure_limit(self) -> Point:
        return self._measure(
            len(self.pipelines), self.batch, self.options.duration_s, self.options.warmup_s
        )

    def measure_single(self) -> Point:
        return self._measure(1, 1, self.options.duration_s, self.options.warmup_s)


@contextlib.contextmanager
def _triton(repository: Path, models: list[str], attempts: int = 2) -> Iterator[LocalTriton]:
    """A server for the bench; one more try if it dies while loading (a busy machine can time
    out the Python backend's shared-memory locks at start-up)."""
    from tritonctl.server import ServerError

    for attempt in range(1, attempts + 1):
        server = LocalTriton(repository, models=models, cache_size=0, exit_timeout=5)
        try:
            server.start()
        except ServerError:
            server.stop()
            if attempt == attempts:
                raise
            continue
        try:
            yield server
        finally:
            server.stop()
        return


def _target(server: LocalTriton, model: str, options: BenchOptions, **kw: Any) -> Target:
    if options.protocol == "http":
        return TritonHttpTarget(server.http_address, model, **kw)
    return TritonGrpcTarget(server.grpc_address, model, **kw)


def _plan(
    stack: contextlib.ExitStack,
    result: BenchResult,
    options: BenchOptions,
    files: PipelineFiles,
    tmp: Path,
    say: Callable[[str], None],
) -> tuple[list[Measurement], LocalTriton | None]:
    """Start the servers and list every point to measure in a round."""
    from tritonctl.bench.peers import fastapi_server, litserve_server

    keys = options.configs
    c16 = options.single_concurrency
    plan: list[Measurement] = []
    models = [m for k, m in (("b", ENSEMBLE), ("e", ENSEMBLE_INT8)) if k in keys]
    if "e" in keys and files.onnx_int8 is None:
        models.remove(ENSEMBLE_INT8)
    if "g" in keys:
        models.append(digits_bench.ENSEMBLE)
    main: LocalTriton | None = None
    if models:
        staged = stage_repository(
            options.repository, tmp / "served", models, edit=without_response_cache
        )
        say(f"starting Triton ({', '.join(models)})")
        main = stack.enter_context(_triton(staged, models))
    unbatched: LocalTriton | None = None
    if "c" in keys:
        staged = stage_repository(
            options.repository,
            tmp / "unbatched",
            [ENSEMBLE],
            edit=chain(without_response_cache, without_dynamic_batching),
        )
        say("starting Triton without dynamic batching (c)")
        unbatched = stack.enter_context(_triton(staged, [ENSEMBLE]))
    fastapi = litserve = ""
    if "d" in keys:
        say("starting FastAPI (d)")
        fastapi = stack.enter_context(fastapi_server(files.onnx, files.tokenizer, files.buckets))
    if "f" in keys:
        say("starting LitServe (f)")
        litserve = stack.enter_context(litserve_server(files.onnx, files.tokenizer, files.buckets))

    for corpus in options.corpora:
        texts = corpus_texts(corpus)

        def add(key: str, run: Callable[[], Point], corpus: str = corpus) -> None:
            plan.append(Measurement(f"{corpus}/{key}", run))

        if "a" in keys:
            say(f"{corpus}: choosing the in-process limit's layout")
            limit = TextLimit(files, texts, options)
            result.selection[corpus] = limit.select(say)
            add("a-limit", limit.measure_limit)
            add("a-single", limit.measure_single)
        if main is not None and "b" in keys:
            for model, c, key, items in (
                (ENSEMBLE, 1, "b@1", 1),
                (ENSEMBLE, c16, f"b@{c16}", 1),
                *((ENSEMBLE, n, f"b-bulk{k}@{n}", k) for k, n in options.bulk),
                *(((ENSEMBLE_INT8, c16, f"e@{c16}", 1),) if ENSEMBLE_INT8 in models else ()),
            ):
                target = _target(main, model, options, items_per_request=items)
                stats = result.server_stats.setdefault(f"{corpus}/{key}", {})
                add(key, partial(_served, target, texts, c, options, main, stats))
        if unbatched is not None:
            target = _target(unbatched, ENSEMBLE, options)
            add(f"c@{c16}", partial(_served, target, texts, c16, options, unbatched))
        for letter, url, name in (("d", fastapi, "fastapi"), ("f", litserve, "litserve")):
            if url:
                peer = JsonHttpTarget(url, name=name)
                add(f"{letter}@{c16}", partial(_served, peer, texts, c16, options))

    if "g" in keys and main is not None:
        images = list(digits_bench.png_images())
        if "a" in keys:
            say("digits: choosing the in-process limit's batch size")
            digits_limit = DigitsLimit(options.repository, options)
            result.selection["digits"] = digits_limit.select()
            plan.append(Measurement("digits/a-limit", digits_limit.measure_limit))
            plan.append(Measurement("digits/a-single", digits_limit.measure_single))
        for c in (1, c16):
            stats = result.server_stats.setdefault(f"digits/b@{c}", {})
            target = _target(
                main, digits_bench.ENSEMBLE, options, input_name="IMAGE", output_name="SCORES"
            )
            run = partial(_served, target, images, c, options, main, stats)
            plan.append(Measurement(f"digits/b@{c}", run))
    return plan, main


def run_rounds(
    plan: Sequence[Measurement], options: BenchOptions, say: Callable[[str], None]
) -> list[Round]:
    """Every point once per round; round ``r`` starts ``r`` places further down the plan."""
    rounds: list[Round] = []
    for number in range(options.rounds):
        shift = (number * max(len(plan) // max(options.rounds, 1), 1)) % max(len(plan), 1)
        order = list(plan[shift:]) + list(plan[:shift])
        points: Round = {}
        for step, item in enumerate(order, start=1):
            say(f"round {number + 1}/{options.rounds} [{step}/{len(order)}] {item.key}")
            point = item.run()
            point.extra["round"] = number + 1
            points[item.key] = point
            if point.errors:
                say(f"  [red]{point.errors} errors[/]: {point.first_error}")
        rounds.append(points)
    return rounds


def check_accuracy(
    result: BenchResult, server: LocalTriton, files: PipelineFiles, options: BenchOptions
) -> None:
    """Served FP32 and INT8 embeddings of both corpora against the in-process FP32 pipeline."""
    from tritonctl.client import embed

    reference = inprocess.InProcessEmbedder(files.onnx, files.tokenizer, files.buckets)
    for model, key in ((ENSEMBLE, "fp32"), (ENSEMBLE_INT8, "int8")):
        if key == "int8" and files.onnx_int8 is None:
            continue
        cosines = []
        for corpus in options.corpora:
            texts = corpus_texts(corpus)
            local = reference.embed_grouped(texts)
            served = np.concatenate(
                [
                    embed(texts[i : i + 32], server.grpc_address, model=model)
                    for i in range(0, len(texts), 32)
                ]
            )
            cosines.append((local * served).sum(axis=1))
        values = np.concatenate(cosines)
        result.accuracy[key] = {
            "min_cosine": round(float(values.min()), 6),
            "mean_cosine": round(float(values.mean()), 6),
            "texts": len(values),
        }


def run_profile(
    result: BenchResult, server: LocalTriton, texts: Sequence[str], options: BenchOptions
) -> None:
    """py-spy on every stub and CPU per text of each process while (b) runs at c=16."""
    seconds = max(options.duration_s, 3.0)
    pipeline = ("tokenizer", "text_encoder", "pooling")
    stubs = {m: p for m, p in stub_pids(server.group_pids()).items() if m in pipeline}
    running = start_records(stubs, seconds, options.out_dir / "profile")
    names = {pid: f"stub {model}" for model, pids in stubs.items() for pid in pids}
    assert server.process is not None
    names[server.process.pid] = "tritonserver (gRPC, ensemble, batchers)"
    names[os.getpid()] = "load generator (client)"
    cpu: dict[str, dict[int, float]] = {}
    point = run_point(
        TritonGrpcTarget(server.grpc_address, ENSEMBLE),
        texts,
        options.single_concurrency,
        warmup_s=0.3,
        duration_s=seconds,
        on_window_start=lambda: cpu.__setitem__("before", process_cpu_seconds(list(names))),
        on_window_end=lambda: cpu.__setitem__("after", process_cpu_seconds(list(names))),
    )
    result.probes["profile_pass_throughput"] = round(point.throughput, 1)
    result.probes["cpu_ms_per_text_c16"] = cpu_per_request(
        cpu.get("before", {}), cpu.get("after", {}), names, point.requests
    )
    if running:
        result.profiles = [p.as_dict() for p in finish_records(running, seconds)]
    else:
        result.probes["profile_error"] = "py-spy not found (pip install '.[bench]')"


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tritonctl-bench-") as tmp:
        yield Path(tmp)


def run_bench(options: BenchOptions, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Start everything, choose the limits' layouts, measure the rounds; the caller reports."""
    say = progress or (lambda message: console.log(message))
    files = pipeline_files(options.repository)
    result = BenchResult(machine=machine_info())
    result.options = {
        "rounds": options.rounds,
        "warmup_s": options.warmup_s,
        "duration_s": options.duration_s,
        "corpora": {c: len(corpus_texts(c)) for c in options.corpora},
        "configs": options.configs,
        "single_concurrency": options.single_concurrency,
        "bulk": [list(b) for b in options.bulk],
        "protocol": options.protocol,
        "buckets": list(files.buckets),
        "onnx": str(files.onnx),
    }
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(_workdir())
        plan, main = _plan(stack, result, options, files, tmp, say)
        result.rounds = run_rounds(plan, options, say)
        if main is not None and "b" in options.configs:
            say("accuracy: served embeddings against the in-process FP32 pipeline")
            check_accuracy(result, main, files, options)
            if options.profile:
                say("profile: CPU per text and py-spy at c=16")
                run_profile(result, main, corpus_texts(options.corpora[0]), options)
    result.machine["load_average_end"] = list(os.getloadavg())
    return result
