"""The digits ensemble (PNG → label) in the bench: its images and its in-process limit.

The limit does what the served ``digit_classifier`` ensemble does, in this process: decode and
preprocess with ``python_backends/image_preprocess`` (the served file itself, loaded by path),
run the ensemble's CNN (the ONNX model of its second step) with ONNX Runtime, softmax and top
3. Requests are the scikit-learn digits as 32×32 grayscale PNGs.
"""

from __future__ import annotations

import importlib.util
import io
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tritonctl import paths
from tritonctl.bench.loadgen import Point
from tritonctl.model_config import load_config

ENSEMBLE = "digit_classifier"
TOP_K = 3


@lru_cache(maxsize=2)
def png_images(size: int = 32) -> tuple[bytes, ...]:
    """Every scikit-learn digit as a ``size``×``size`` grayscale PNG (nearest-neighbour upscale)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    images = np.clip(np.rint(load_digits().images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    out = []
    for image in images:
        picture = Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return tuple(out)


def _preprocess_module() -> ModuleType:
    path = paths.python_backends() / "image_preprocess" / "model.py"
    spec = importlib.util.spec_from_file_location("tritonctl_bench_image_preprocess", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cnn_model(repository: Path) -> str:
    """The CNN the ensemble routes to (the step after ``image_preprocess``)."""
    steps = load_config(repository / ENSEMBLE).ensemble_scheduling.step
    return next(s.model_name for s in steps if s.model_name != "image_preprocess")


class DigitsPipeline:
    """Decode + preprocess + CNN + top-k, in process, over one ONNX Runtime session."""

    def __init__(self, repository: Path, intra_op_threads: int = 1) -> None:
        from tritonctl.bench.inprocess import session

        self.preprocess = _preprocess_module().preprocess
        onnx = repository / cnn_model(repository) / "1" / "model.onnx"
        self.session = session(onnx, intra_op_threads, spinning=False)
        self.input = self.session.get_inputs()[0].name

    def classify(self, images: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        pixels = self.preprocess(images)
        logits = self.session.run(None, {self.input: pixels})[0]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :TOP_K]
        return order, np.take_along_axis(probabilities, order, axis=1)


def measure(
    pipelines: Sequence[DigitsPipeline],
    images: Sequence[bytes],
    batch: int,
    *,
    warmup_s: float,
    duration_s: float,
    name: str,
) -> Point:
    """Batches of ``batch`` images back to back, one thread per pipeline (its own session)."""
    import threading

    batches = [
        [images[(start + k) % len(images)] for k in range(batch)]
        for start in range(0, len(images), batch)
    ]
    start_at = time.perf_counter() + warmup_s
    end_at = start_at + duration_s
    latencies: list[list[float]] = [[] for _ in pipelines]
    counter = [0]
    lock = threading.Lock()

    def loop(slot: int, pipeline: DigitsPipeline) -> None:
        while True:
            with lock:
                index = counter[0]
                counter[0] += 1
            t0 = time.perf_counter()
            if t0 >= end_at:
                return
            pipeline.classify(batches[index % len(batches)])
            t1 = time.perf_counter()
            if start_at <= t1 <= end_at:  # completed in the window, as the load generator counts
                latencies[slot].append(t1 - t0)

    threads = [threading.Thread(target=loop, args=(i, p)) for i, p in enumerate(pipelines)]
    cpu = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [value for slot in latencies for value in slot]
    extra: dict[str, Any] = {"batch_size": batch, "sessions": len(pipelines)}
    return Point.measured(
        name,
        batch,
        flat,
        requests=len(flat) * batch,
        seconds=duration_s,
        client_cpu_cores=(time.process_time() - cpu) / (warmup_s + duration_s),
        extra=extra,
    )
