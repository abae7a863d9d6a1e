"""``tritonctl top`` against the real server: one table with each model's figures."""

from __future__ import annotations

import math
import uuid

import pytest
import tritonclient.http as http

from tests.serving_support import bytes_input, digits_test_images, png
from tritonctl.cli import main
from tritonctl.console import console
from tritonctl.corpus import sentences
from tritonctl.metrics import scrape
from tritonctl.server import LocalTriton
from tritonctl.top import metrics_url, rows


def test_metrics_url_accepts_host_port_and_urls() -> None:
    assert metrics_url("localhost:8002") == "http://localhost:8002/metrics"
    assert metrics_url("http://h:1/") == "http://h:1/metrics"
    assert metrics_url("http://h:1/metrics") == "http://h:1/metrics"


def test_top_once_shows_rates_latency_batching_cache_and_drift(
    triton: LocalTriton, capsys: pytest.CaptureFixture[str]
) -> None:
    client = http.InferenceServerClient(triton.http_address)
    nonce = uuid.uuid4().hex  # other tests share the server and its response cache
    images = [png(image, note=f"{nonce}-{i}") for i, image in enumerate(digits_test_images()[:20])]
    before = scrape(triton.metrics_url)
    for image in images + images[:5]:  # the last five are answered from the response cache
        client.infer("digit_classifier", [bytes_input("IMAGE", [image])])
    client.close()
    after = scrape(triton.metrics_url)
    by_model = {row.model: row for row in rows(before, after)}
    row = by_model["digit_classifier"]
    assert row.requests_per_s > 0
    assert 0 < row.p50_ms <= row.p99_ms
    assert row.cache_hit_ratio == pytest.approx(5 / 25)
    assert not math.isnan(row.drift_psi) and not math.isnan(row.low_confidence_ratio)
    assert by_model["classify_postprocess"].batch_size >= 1

    console.width = 160  # as in a wide terminal: rich wraps headers in narrow ones
    assert main(["top", "--once", "--url", triton.metrics_url]) == 0
    out = capsys.readouterr().out
    for header in ("req/s", "p99 ms", "queue ms", "cache hit", "drift PSI"):
        assert header in out
    assert "digit_classifier" in out


def test_top_names_an_unreachable_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--once", "--url", "127.0.0.1:9"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_top_shows_the_text_pipelines_drift(
    triton: LocalTriton, capsys: pytest.CaptureFixture[str]
) -> None:
    client = http.InferenceServerClient(triton.http_address)
    texts = [f"{text} (top {index})" for index, text in enumerate(sentences()[:40])]
    before = scrape(triton.metrics_url)
    client.infer("text_embedding", [bytes_input("TEXT", texts)])  # distinct: no cache hit
    client.close()
    after = scrape(triton.metrics_url)
    row = {row.model: row for row in rows(before, after)}["text_embedding"]
    assert row.requests_per_s > 0
    assert row.drift_psi >= 0 and 0 <= row.low_confidence_ratio <= 1

    console.width = 160
    assert main(["top", "--once", "--url", triton.metrics_url]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if " text_embedding " in x)
    assert f"{row.low_confidence_ratio:.3f}" in line
