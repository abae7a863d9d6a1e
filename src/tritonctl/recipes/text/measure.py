"""In-process accuracy and speed of the text encoder's ONNX variants.

Speed on a shared 2-core machine is noisy, so every figure is taken over interleaved rounds
(all variants, round after round) and the best round counts:

- ``latency_ms_b1``: median wall time of one sentence (batch 1, its own bucket), 1 thread;
- ``throughput_b32``: sentences per CPU-second at batch 32 on one intra-op thread (thread CPU
  time, so other processes on the cores do not distort the ratio between variants);
- ``throughput_b32_wall``: sentences per wall-clock second at batch 32 with 2 threads.

Batches are the evaluation corpus grouped by padding bucket, the shapes the server runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tritonctl.recipes.text.tokens import Batch, mean_pool


def session(path: Path | str, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(sess, batches: Sequence[Batch], count: int) -> np.ndarray:
    """Pooled, normalised embeddings ``[count, 384]`` of the batched corpus."""
    out: np.ndarray | None = None
    for batch in batches:
        hidden = sess.run(None, batch.feed)[0]
        pooled = mean_pool(hidden, batch.attention_mask)
        if out is None:
            out = np.zeros((count, pooled.shape[1]), dtype=np.float32)
        out[batch.indices] = pooled
    assert out is not None
    return out


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two sets of (already normalised or not) vectors."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.asarray((a * b).sum(axis=1))


def accuracy(embeddings: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    cos = cosine_rows(embeddings, reference)
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


def _latency_ms(sess, singles: Sequence[Batch]) -> float:
    times = []
    for batch in singles:
        start = time.perf_counter()
        sess.run(None, batch.feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def _throughput_cpu(sess, batches: Sequence[Batch]) -> float:
    start, items = time.thread_time(), 0
    for batch in batches:
        sess.run(None, batch.feed)
        items += len(batch.indices)
    return items / max(time.thread_time() - start, 1e-9)


def _throughput_wall(sess, batches: Sequence[Batch]) -> float:
    start, items = time.perf_counter(), 0
    for batch in batches:
        sess.run(None, batch.feed)
        items += len(batch.indices)
    return items / max(time.perf_counter() - start, 1e-9)


def speed(
    models: dict[str, Path],
    singles: Sequence[Batch],
    full32: Sequence[Batch],
    rounds: int = 3,
) -> dict[str, dict[str, float]]:
    """Interleaved speed figures for each model (best of ``rounds``)."""
    one = {name: session(path, 1) for name, path in models.items()}
    two = {name: session(path, 2) for name, path in models.items()}
    for name in models:  # first runs allocate; keep them out of the figures
        one[name].run(None, full32[0].feed)
        two[name].run(None, full32[0].feed)
    best: dict[str, dict[str, float]] = {
        n: {"latency_ms_b1": float("inf"), "throughput_b32": 0.0, "throughput_b32_wall": 0.0}
        for n in models
    }
    for _ in range(rounds):
        for name in models:
            figures = best[name]
            figures["latency_ms_b1"] = min(
                figures["latency_ms_b1"], _latency_ms(one[name], singles)
            )
            figures["throughput_b32"] = max(
                figures["throughput_b32"], _throughput_cpu(one[name], full32)
            )
            figures["throughput_b32_wall"] = max(
                figures["throughput_b32_wall"], _throughput_wall(two[name], full32)
            )
    return best
