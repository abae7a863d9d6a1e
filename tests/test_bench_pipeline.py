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
from tritonctl.bench.peers import fastapi_server, litserve_server
from tritonctl.bench.run import pipeline_files
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
    with fastapi_server(files.onnx, files.tokenizer, files.buckets) as url:
        request = urllib.request.Request(
            url,
            data=json.dumps({"texts": [TEXTS[3]]}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            embedding = np.array(json.loads(response.read())["embeddings"][0], dtype=np.float32)
        point = run_point(JsonHttpTarget(url), TEXTS, 2, warmup_s=0.2, duration_s=0.8)
    served = served_embeddings(triton, [TEXTS[3]])[0]
    assert float(embedding @ served) > 0.9999
    assert point.errors == 0 and point.requests > 0


def test_litserve_peer_returns_the_same_embeddings_and_stops_its_workers(
    triton: LocalTriton, model_repository: Path
) -> None:
    import json
    import urllib.request

    files = pipeline_files(model_repository)
    with litserve_server(files.onnx, files.tokenizer, files.buckets) as url:
        request = urllib.request.Request(
            url,
            data=json.dumps({"texts": TEXTS[3:5]}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            rows = np.array(json.loads(response.read())["embeddings"], dtype=np.float32)
        point = run_point(
            JsonHttpTarget(url, items_per_request=2), TEXTS, 4, warmup_s=0.2, duration_s=0.8
        )
        port = url.rsplit(":", 1)[1].split("/")[0]
    served = served_embeddings(triton, TEXTS[3:5])
    assert rows.shape == (2, 384) and float((rows * served).sum(axis=1).min()) > 0.9999
    assert point.errors == 0 and point.requests > 0 and point.requests % 2 == 0
    assert _gone(lambda args: "tritonctl.bench.litserve_app" in args and port in args), (
        "LitServe worker processes outlived the server"
    )


def _gone(match, timeout_s: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    """True once no live (non-zombie) process's argv matches: a SIGKILLed worker takes a
    moment to disappear from /proc."""
    import os
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        live = [
            pid
            for pid in os.listdir("/proc")
            if pid.isdigit() and match(_cmdline(pid)) and not _zombie(pid)
        ]
        if not live:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _zombie(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def test_every_row_computes_the_same_padded_tokens(model_repository: Path) -> None:
    """The FastAPI and LitServe rows pad to the served tokenizer's buckets, as Triton does."""
    from tritonctl.bench.inprocess import Embedder, session

    files = pipeline_files(model_repository)
    real = session(files.onnx, 1)
    shapes: list[tuple[int, ...]] = []

    class Recording:  # the real session, with the shapes it was run on written down
        def get_inputs(self):  # type: ignore[no-untyped-def]
            return real.get_inputs()

        def get_outputs(self):  # type: ignore[no-untyped-def]
            return real.get_outputs()

        def run(self, names, feed):  # type: ignore[no-untyped-def]
            shapes.append(feed["input_ids"].shape)
            return real.run(names, feed)

    embedder = Embedder(files.tokenizer, Recording(), files.buckets)
    embedder.embed(["Hi."])  # 4 tokens: padded to the first bucket, not run at length 4
    embedder.embed_grouped(["Hi.", " ".join(["word"] * 40)])  # two buckets, two runs
    assert shapes == [(1, files.buckets[0]), (1, files.buckets[0]), (1, files.buckets[2])]
