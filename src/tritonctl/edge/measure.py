"""The edge table's timings: each bundle in a fresh process, and the served round trip beside it.

A bundle is timed by its own ``runner.py bench`` in a new interpreter, so the cold start
(imports, checksums, model load, first call) and the peak RSS are the bundle's alone:
batch 1, on 1 thread (edge devices are small) and on all cores. The served counterpart is one
request at a time (concurrency 1) over gRPC to the real Triton server, each input sent once
(the response cache never answers), measured in the same build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH_RUNS = 200
SERVED_RUNS = 200
SERVED_WARMUP = 20


def bench_bundle(
    folder: Path, inputs: Sequence[Any], *, threads: int, runs: int = BENCH_RUNS
) -> dict[str, Any]:
    """``runner.py bench`` in a new process; ``inputs`` are texts or encoded images."""
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as work:
        if inputs and isinstance(inputs[0], bytes):
            for index, data in enumerate(inputs):
                Path(work, f"{index:04d}.png").write_bytes(data)
            source = Path(work)
        else:
            source = Path(work, "texts.json")
            source.write_text(json.dumps(list(inputs)))
        command = [
            sys.executable,
            str(folder / "runner.py"),
            "--threads",
            str(threads),
            "bench",
            "--runs",
            str(runs),
            "--inputs",
            str(source),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{folder.name}: runner bench failed: {done.stderr.strip()[-500:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def served_round_trip(
    repository: Path, ensembles: dict[str, str], texts: Sequence[str], images: Sequence[bytes]
) -> dict[str, dict[str, float]]:
    """p50/p95 of one-at-a-time gRPC requests per served ensemble (``{name: "embed"|"classify"}``)."""
    import tritonclient.grpc as grpcclient

    from tritonctl import paths
    from tritonctl.repository import sync_python_backends
    from tritonctl.server import LocalTriton

    # A fresh clone's repository has no model.py files until they are synced (Triton would wait
    # on the Python models that cannot start).
    sync_python_backends(repository, paths.python_backends())
    results: dict[str, dict[str, float]] = {}
    with LocalTriton(repository, models=sorted(ensembles), exit_timeout=10) as server:
        client = grpcclient.InferenceServerClient(server.grpc_address)
        try:
            for name, task in ensembles.items():
                results[name] = _time_ensemble(client, name, task, texts, images)
        finally:
            client.close()
    return results


def _time_ensemble(
    client: Any, name: str, task: str, texts: Sequence[str], images: Sequence[bytes]
) -> dict[str, float]:
    import tritonclient.grpc as grpcclient

    from tritonctl.edge.evaluate import unique_png

    if task == "embed":
        items = [t.encode() for t in texts]
        tensor, output = "TEXT", "EMBEDDING"
    else:
        items = [
            unique_png(images[i % len(images)], f"{name}-{i}")
            for i in range(SERVED_RUNS + SERVED_WARMUP)
        ]
        tensor, output = "IMAGE", "LABELS"
    # Each input once: a repeat would be answered by the response cache, not the model.
    if len(items) < SERVED_RUNS + SERVED_WARMUP:
        items = [
            b"%s (%d)" % (items[i % len(items)], i) for i in range(SERVED_RUNS + SERVED_WARMUP)
        ]
    latencies = []
    for index, item in enumerate(items[: SERVED_RUNS + SERVED_WARMUP]):
        array = np.array([[item]], dtype=np.object_)
        request = grpcclient.InferInput(tensor, [1, 1], "BYTES")
        request.set_data_from_numpy(array)
        start = time.perf_counter()
        client.infer(name, [request], outputs=[grpcclient.InferRequestedOutput(output)])
        if index >= SERVED_WARMUP:
            latencies.append((time.perf_counter() - start) * 1e3)
    p50, p95 = np.percentile(latencies, [50, 95])
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3), "runs": len(latencies)}


def all_cores() -> int:
    return os.cpu_count() or 1
