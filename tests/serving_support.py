"""Helpers for tests that talk to the session server: digits PNGs, gauges, closed-loop bursts."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.http as http
from PIL import Image

from tritonctl import paths
from tritonctl.drift import read_images
from tritonctl.metrics import scrape


def digits_test_images() -> np.ndarray:
    """The digits build's held-out test split, float32 ``[N, 1, 8, 8]`` on 0–16."""
    return read_images(paths.reports_dir() / "digits" / "test_set.npz")


def png(image: np.ndarray, note: str = "") -> bytes:
    """``image`` (0–16) as an 8-bit PNG; a ``note`` (a PNG text chunk) makes the bytes unique
    without changing the pixels, so the response cache has never seen them."""
    from PIL import PngImagePlugin

    buffer = io.BytesIO()
    pixels = np.rint(np.asarray(image).reshape(8, 8) * 255.0 / 16.0).astype(np.uint8)
    info = PngImagePlugin.PngInfo()
    if note:
        info.add_text("note", note)
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def bytes_input(name: str, items: list[bytes] | list[str]) -> http.InferInput:
    data = np.array([x.encode() if isinstance(x, str) else x for x in items], dtype=object)
    tensor = http.InferInput(name, [len(items), 1], "BYTES")
    tensor.set_data_from_numpy(data.reshape(-1, 1))
    return tensor


def gauge(metrics_url: str, name: str, **labels: str) -> float:
    values = [s.value for s in scrape(metrics_url).select(name, **labels)]
    assert values, f"{name}{labels} is not exported on {metrics_url}"
    return max(values)


def burst(
    call: Callable[[], object], clients: int, seconds: float, warmup: float = 0.0
) -> tuple[np.ndarray, list[object]]:
    """``clients`` closed-loop callers for ``warmup + seconds``: each request's latency (ms) and
    result, leaving out the requests started during the first ``warmup`` seconds (the ramp-up)."""
    begin = time.perf_counter()
    deadline = begin + warmup + seconds

    def loop() -> list[tuple[float, object]]:
        out = []
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            result = call()
            if start - begin >= warmup:
                out.append(((time.perf_counter() - start) * 1000.0, result))
        return out

    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda _: loop(), range(clients)))
    pairs = [pair for run in runs for pair in run]
    return np.array([p[0] for p in pairs]), [p[1] for p in pairs]
