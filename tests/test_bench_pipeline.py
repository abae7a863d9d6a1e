"""Short real runs of the bench's pieces against the served text-embedding pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritonctl.bench import inprocess
from tritonctl.bench.loadgen import (
    JsonHttpTarget,
    TritonGrpcShmTarget,
    TritonGrpcTarget,
    TritonHttpTarget,
    run_point,
)
from tritonctl.bench.run import fastapi_server, pipeline_files
from tritonctl.corpus import sentences
from tritonctl.server import LocalTriton

pytestmark = pytest.mark.server
TEXTS = sentences()[:40]


def served_embeddings(server: LocalTriton, texts: list[str]) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        rows = []
        for text in texts:
            tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
            rows.append(client.infer("text_embedding", [tensor]).as_numpy("EMBEDDING")[0])
    finally:
        client.close()
    return np.stack(rows)


def test_in_process_limit_does_the_same_work_as_the_server(
    triton: LocalTriton, model_repository: Path
) -> None:
    files = pipeline_files(model_repository)
    embedder = inprocess.InProcessEmbedder(files.onnx, files.tokenizer, files.buckets)
    texts = TEXTS[:12]
    local = embedder.embed(texts)
    served = served_embeddings(triton, texts)
    cosines = (local * served).sum(axis=1)
    assert cosines.min() > 0.9999, cosines
    point = inprocess.measure_batch(embedder, TEXTS, 8, warmup_s=0.1, duration_s=0.5)
    assert point.throughput > 0 and point.requests % 8 == 0


def test_load_generator_against_the_real_server(triton: LocalTriton) -> None:
    for target in (
        TritonGrpcTarget(triton.grpc_address, "text_embedding"),
        TritonHttpTarget(triton.http_address, "text_embedding"),
    ):
        point = run_point(target, TEXTS, 4, warmup_s=0.3, duration_s=1.0)
        assert point.errors == 0, point.first_error
        assert point.requests > 0 and point.p50_ms <= point.p99_ms
    shm = TritonGrpcShmTarget(triton.grpc_address, "text_embedding", headers=triton.admin_headers)
    point = run_point(shm, TEXTS, 1, warmup_s=0.1, duration_s=0.5)
    assert point.errors == 0, point.first_error
    missing = run_point(
        TritonGrpcTarget(triton.grpc_address, "text_embedding"),
        TEXTS,
        1,
        warmup_s=0,
        duration_s=0.3,
    )
    assert missing.requests > 0
    bad = TritonGrpcTarget(triton.grpc_address, "text_embedding", input_name="NOT_AN_INPUT")
    failed = run_point(bad, TEXTS, 1, warmup_s=0, duration_s=0.3)
    assert failed.requests == 0 and failed.errors > 0 and "NOT_AN_INPUT" in failed.first_error


def test_fastapi_baseline_returns_the_same_embeddings(
    triton: LocalTriton, model_repository: Path
) -> None:
    import json
    import urllib.request

    files = pipeline_files(model_repository)
    with fastapi_server(files) as url:
        request = urllib.request.Request(
            url,
            data=json.dumps({"text": TEXTS[3]}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            embedding = np.array(json.loads(response.read())["embedding"], dtype=np.float32)
        point = run_point(JsonHttpTarget(url), TEXTS, 2, warmup_s=0.2, duration_s=0.8)
    served = served_embeddings(triton, [TEXTS[3]])[0]
    assert float(embedding @ served) > 0.9999
    assert point.errors == 0 and point.requests > 0
