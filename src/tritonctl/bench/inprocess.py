"""Configuration (a), the limit: tokenizer + ONNX Runtime + pooling in this process, no server.

It uses the served files (``model_repository/text_encoder/1/model.onnx`` and the tokenizer
model's ``tokenizer.json``) and the same length buckets, so it does exactly the work the
ensemble does, minus everything a server adds. Batches are grouped by bucket, as an ideal
batcher would form them: this is the ceiling the served pipeline is compared against.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tritonctl.bench.loadgen import Point

#: the text-embedding pipeline's padding buckets (used when the tokenizer config names none)
DEFAULT_BUCKETS: tuple[int, ...] = (16, 32, 64, 128, 256)
MAX_LENGTH = 256


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``length`` tokens (the largest one if none does)."""
    for size in buckets:
        if size >= length:
            return int(size)
    return int(buckets[-1])


class Embedder:
    """Tokenizer + ONNX Runtime session + pooling: one batch of texts in, unit embeddings out.

    Token ids are padded to the bucket of the batch's longest text, as the served tokenizer
    pads them. A graph with an ``EMBEDDING`` output pools in the graph; otherwise its first
    output (``last_hidden_state``) is mean-pooled and normalised here, as the ``pooling`` model
    does.
    """

    def __init__(
        self,
        tokenizer_path: Path | str,
        session: Any,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        max_length: int = MAX_LENGTH,
    ) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.session = session
        self.buckets = tuple(buckets)
        self.input_names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        self.pooled_in_graph = "EMBEDDING" in outputs
        self.output = "EMBEDDING" if self.pooled_in_graph else outputs[0]

    def encode(self, texts: Sequence[str], pad_to: int | None = None) -> tuple[np.ndarray, ...]:
        """Token ids and attention mask, padded to the bucket of the longest sentence."""
        encodings = self.tokenizer.encode_batch(list(texts))
        longest = max((len(e.ids) for e in encodings), default=1)
        width = pad_to or bucket_for(longest, self.buckets)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            n = min(len(encoding.ids), width)
            ids[row, :n] = encoding.ids[:n]
            mask[row, :n] = 1
        return ids, mask

    def embed(self, texts: Sequence[str], pad_to: int | None = None) -> np.ndarray:
        ids, mask = self.encode(texts, pad_to)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        feed = {k: v for k, v in feed.items() if k in self.input_names}
        out = self.session.run([self.output], feed)[0]
        if self.pooled_in_graph:
            return np.asarray(out, dtype=np.float32)
        weights = mask[..., None].astype(np.float32)
        pooled = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.asarray(pooled / norms, dtype=np.float32)

    def embed_grouped(self, texts: Sequence[str]) -> np.ndarray:
        """``embed`` per group of texts sharing a bucket (no text padded past its bucket)."""
        lengths = self.token_lengths(texts)
        widths = np.array([bucket_for(n, self.buckets) for n in lengths])
        out = np.empty((len(texts), 384), dtype=np.float32)
        for width in np.unique(widths):
            rows = np.flatnonzero(widths == width)
            out[rows] = self.embed([texts[i] for i in rows], pad_to=int(width))
        return out

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]


def session(onnx_path: Path | str, intra_op_threads: int = 0, spinning: bool = True) -> Any:
    """An ONNX Runtime CPU session (``intra_op_threads`` 0: every core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


class InProcessEmbedder(Embedder):
    """An ``Embedder`` over its own session of ``onnx_path`` with ``intra_op_threads`` threads."""

    def __init__(
        self,
        onnx_path: Path,
        tokenizer_path: Path,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        max_length: int = MAX_LENGTH,
        intra_op_threads: int = 0,
        spinning: bool = True,
    ) -> None:
        self.onnx_path = Path(onnx_path)
        self.intra_op_threads = intra_op_threads
        super().__init__(
            tokenizer_path, session(onnx_path, intra_op_threads, spinning), buckets, max_length
        )


def bucketed_batches(embedder: Embedder, texts: Sequence[str], batch_size: int) -> list[list[str]]:
    """The corpus cut into batches of ``batch_size`` sentences that share a bucket."""
    groups: dict[int, list[str]] = {}
    for text, length in zip(texts, embedder.token_lengths(texts), strict=True):
        groups.setdefault(bucket_for(length, embedder.buckets), []).append(text)
    batches = []
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            # Keep batches full: wrap around inside the bucket for the last one.
            while len(chunk) < batch_size:
                chunk = chunk + members[: batch_size - len(chunk)]
            batches.append(chunk)
    return batches


def measure_batch(
    embedder: Embedder,
    texts: Sequence[str],
    batch_size: int,
    *,
    warmup_s: float,
    duration_s: float,
    grouped: bool = True,
    pad_to: int | None = None,
    name: str = "a: in-process",
) -> Point:
    """Embed batches of ``batch_size`` back to back; throughput in sentences/s, latency per batch."""
    if grouped:
        batches = bucketed_batches(embedder, texts, batch_size)
    else:
        batches = [
            [texts[(start + k) % len(texts)] for k in range(batch_size)]
            for start in range(0, len(texts), batch_size)
        ]
    deadline = time.perf_counter() + warmup_s
    index = 0
    while time.perf_counter() < deadline:
        embedder.embed(batches[index % len(batches)], pad_to)
        index += 1
    latencies: list[float] = []
    sentences = 0
    start = time.perf_counter()
    end = start + duration_s
    cpu_start = time.process_time()
    while True:
        t0 = time.perf_counter()
        if t0 >= end and latencies:
            break
        embedder.embed(batches[index % len(batches)], pad_to)
        latencies.append(time.perf_counter() - t0)
        sentences += batch_size
        index += 1
    elapsed = time.perf_counter() - start
    return Point.measured(
        name,
        batch_size,
        latencies,
        requests=sentences,
        seconds=elapsed,
        client_cpu_cores=(time.process_time() - cpu_start) / elapsed,
        extra={"batch_size": batch_size, "grouped_by_bucket": grouped, "pad_to": pad_to},
    )


def measure_parallel(
    embedders: Sequence[Embedder],
    texts: Sequence[str],
    batch_size: int,
    *,
    warmup_s: float,
    duration_s: float,
    name: str = "a: in-process",
) -> Point:
    """One thread per embedder (each its own session), all embedding batches back to back.

    ONNX Runtime, the tokenizer and numpy release the GIL, so N single-threaded sessions use N
    cores; this is how the served encoder runs with ``count: N`` instances of one thread each.
    """
    import threading

    batches = bucketed_batches(embedders[0], texts, batch_size)
    start_at = time.perf_counter() + warmup_s
    end_at = start_at + duration_s
    latencies: list[list[float]] = [[] for _ in embedders]
    lock = threading.Lock()
    counter = [0]

    def loop(slot: int, embedder: InProcessEmbedder) -> None:
        while True:
            with lock:
                index = counter[0]
                counter[0] += 1
            t0 = time.perf_counter()
            if t0 >= end_at:
                return
            embedder.embed(batches[index % len(batches)])
            t1 = time.perf_counter()
            if start_at <= t1 <= end_at:  # completed in the window, as the load generator counts
                latencies[slot].append(t1 - t0)

    threads = [
        threading.Thread(target=loop, args=(slot, e), daemon=True)
        for slot, e in enumerate(embedders)
    ]
    cpu_start = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = (time.process_time() - cpu_start) / (warmup_s + duration_s)
    flat = [value for slot in latencies for value in slot]
    return Point.measured(
        name,
        batch_size,
        flat,
        requests=len(flat) * batch_size,
        seconds=duration_s,
        client_cpu_cores=cpu,
        extra={"batch_size": batch_size, "sessions": len(embedders), "threads_per_session": 1},
    )
