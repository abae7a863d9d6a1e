"""Drift gauges through the real server: in-distribution traffic stays stable, shifted traffic
drives PSI over 0.25 (read from ``/metrics``, as Prometheus and the chart's alert would); the
Python backends' other custom metrics (image failures, tokenizer counters)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as http

from tests import text_samples
from tests.serving_support import bytes_input, digits_test_images, gauge, png
from tritonctl import paths
from tritonctl.recipes.text.tokens import load_tokenizer
from tritonctl.server import LocalTriton

WINDOW = 512  # the models' default drift window


@pytest.fixture
def client(triton: LocalTriton) -> Iterator[http.InferenceServerClient]:
    client = http.InferenceServerClient(triton.http_address)
    yield client
    client.close()


def send_digits(client: http.InferenceServerClient, images: np.ndarray) -> None:
    """Every image twice, in batches cut differently each pass so no request hits the cache."""
    encoded = [png(image) for image in images]
    for batch, offset in ((48, 0), (40, 17)):
        order = encoded[offset:] + encoded[:offset]
        for start in range(0, len(order), batch):
            client.infer("digit_classifier", [bytes_input("IMAGE", order[start : start + batch])])


def digits_psi(triton: LocalTriton, signal: str) -> float:
    return gauge(triton.metrics_url, "tritonctl_drift_psi", model="digit_classifier", signal=signal)


def test_digits_gauges_follow_the_traffic(
    triton: LocalTriton, client: http.InferenceServerClient
) -> None:
    images = digits_test_images()
    assert 2 * len(images) >= WINDOW  # the window holds only the traffic sent below
    send_digits(client, images)
    stable = {s: digits_psi(triton, s) for s in ("predicted_class", "input_intensity")}
    low = gauge(triton.metrics_url, "tritonctl_low_confidence_ratio", model="digit_classifier")
    assert max(stable.values()) < 0.1, stable
    assert low < 0.05

    noise = np.abs(np.random.default_rng(1).normal(0, 2.0, images.shape))
    send_digits(client, np.clip(np.rint(images + noise), 0, 16))
    assert digits_psi(triton, "input_intensity") > 0.25


def test_bad_images_count_as_preprocessing_failures(
    triton: LocalTriton, client: http.InferenceServerClient
) -> None:
    name = "tritonctl_image_preprocess_failures_total"
    before = gauge(triton.metrics_url, name, model="image_preprocess")
    with pytest.raises(Exception, match="cannot identify an image format"):
        client.infer("digit_classifier", [bytes_input("IMAGE", [b"not an image"])])
    assert gauge(triton.metrics_url, name, model="image_preprocess") == before + 1


# --- text: the pooling model's window, the tokenizer's counters ------------------------------


def send_texts(client: http.InferenceServerClient, texts: list[str], batch: int = 32) -> None:
    """Distinct texts only: a repeated request would be answered by the ensemble's cache and
    never reach ``pooling``."""
    assert len(set(texts)) == len(texts)
    for start in range(0, len(texts), batch):
        client.infer("text_embedding", [bytes_input("TEXT", texts[start : start + batch])])


def text_psi(triton: LocalTriton) -> float:
    return gauge(triton.metrics_url, "tritonctl_drift_psi", model="text_embedding", signal="cosine")


def test_text_gauges_follow_the_traffic(
    triton: LocalTriton, client: http.InferenceServerClient
) -> None:
    texts = text_samples.in_distribution()
    assert len(texts) >= WINDOW  # the window holds only the traffic sent here
    send_texts(client, texts)
    stable = text_psi(triton)
    low = gauge(triton.metrics_url, "tritonctl_low_confidence_ratio", model="text_embedding")
    assert stable < 0.1
    assert low < 0.1  # the reference's own share is 0.05 by construction

    shifted = {}
    for name, make in text_samples.SHIFTED.items():
        send_texts(client, make(WINDOW))
        shifted[name] = text_psi(triton)
    assert min(shifted.values()) > 0.25, (stable, shifted)


def test_tokenizer_counts_texts_tokens_and_truncations(
    triton: LocalTriton, client: http.InferenceServerClient
) -> None:
    def counters() -> dict[str, float]:
        names = ("requests", "texts", "tokens", "truncated")
        url = triton.metrics_url
        return {n: gauge(url, f"tritonctl_tokenizer_{n}_total", model="tokenizer") for n in names}

    marker = f"tokenizer counters {time.time_ns()}"  # distinct: the ensemble cache must not answer
    texts = [f"{marker} " + "word " * 400, f"{marker} short", f"{marker} also short"]
    tokenizer = load_tokenizer(paths.model_repository() / "tokenizer" / "1" / "tokenizer.json")
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts))  # truncated at 256 too
    before = counters()
    send_texts(client, texts)
    change = {k: v - before[k] for k, v in counters().items()}
    assert change == {"requests": 1, "texts": 3, "tokens": tokens, "truncated": 1}
