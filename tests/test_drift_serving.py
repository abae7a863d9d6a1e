"""Drift gauges through the real server: in-distribution traffic stays stable, shifted traffic
drives PSI over 0.25 (read from ``/metrics``, as Prometheus and the chart's alert would)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as http

from tests.serving_support import bytes_input, digits_test_images, gauge, png
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
