"""The served digits pipeline on the real Triton server: accuracy, bad input, response cache.

Held-out images go in as PNG bytes through the ``digit_classifier*`` ensembles
(``image_preprocess`` → ONNX variant → ``classify_postprocess``) as bursts of concurrent
requests, so the dynamic batcher and the vectorised Python models see real batches.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.test_digits_preprocess import BAD_INPUTS, animated_gif, black_on_white_jpeg, png, png16
from tritonctl.recipes.digits import recipe as digits
from tritonctl.recipes.digits.serving import (
    MAX_BATCH,
    MAX_QUEUE,
    TOP_K,
    VARIANTS,
    ensemble_name,
    model_name,
)
from tritonctl.server import LocalTriton

pytestmark = pytest.mark.server
CONCURRENCY = 16
#: gRPC requests outstanding at once: full batches can form, and the queue stays under its limit.
IN_FLIGHT = MAX_BATCH
assert IN_FLIGHT < MAX_QUEUE

Outcome = tuple[list[bytes], np.ndarray] | InferenceServerException


@pytest.fixture(scope="module")
def test_set(model_repository: Path) -> dict[str, np.ndarray]:
    return dict(np.load(digits.report_dir() / "test_set.npz"))


def in_process_predictions(repository: Path, variant: str, images: np.ndarray) -> np.ndarray:
    path = repository / model_name(variant) / "1" / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["LOGITS"], {"INPUT": images.astype(np.float32)[:, None]})[0].argmax(1)  # type: ignore[no-any-return]


def _item(data: bytes) -> np.ndarray:
    return np.array([[data]], dtype=np.object_)


def infer_grpc(server: LocalTriton, model: str, blobs: list[bytes]) -> list[Outcome]:
    """All ``blobs`` as concurrent one-image gRPC requests, ``IN_FLIGHT`` at most; in order.

    The bound is the server's admission limit, not politeness: each step admits
    ``MAX_QUEUE`` waiting requests and rejects the rest, so a burst of all 360 at once was
    refused ("Exceeds maximum queue size") whenever a loaded CPU let the queue build up.
    """
    client = grpcclient.InferenceServerClient(server.grpc_address)
    done: queue.Queue[tuple[int, Outcome]] = queue.Queue()
    slots = threading.BoundedSemaphore(IN_FLIGHT)
    try:
        outputs = [
            grpcclient.InferRequestedOutput("LABELS"),
            grpcclient.InferRequestedOutput("SCORES"),
        ]
        for index, data in enumerate(blobs):
            tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
            tensor.set_data_from_numpy(_item(data))

            def callback(
                result: grpcclient.InferResult | None,
                error: InferenceServerException | None,
                index: int = index,
            ) -> None:
                slots.release()
                if error is not None:
                    done.put((index, error))
                else:
                    assert result is not None
                    done.put(
                        (index, (list(result.as_numpy("LABELS")[0]), result.as_numpy("SCORES")[0]))
                    )

            if not slots.acquire(timeout=60):
                raise TimeoutError(f"no answer to {IN_FLIGHT} in-flight requests within 60 s")
            client.async_infer(model, [tensor], callback, outputs=outputs)
        results: dict[int, Outcome] = dict(done.get(timeout=60) for _ in blobs)
    finally:
        client.close()
    return [results[i] for i in range(len(blobs))]


def infer_http(server: LocalTriton, model: str, blobs: list[bytes]) -> list[Outcome]:
    """All ``blobs`` as one-image HTTP requests from ``CONCURRENCY`` threads; results in order.

    Each thread has its own client (they are not thread-safe); tritonclient.http's own
    ``async_infer`` pool was measured an order of magnitude slower than this here.
    """

    def worker(indices: range) -> list[tuple[int, Outcome]]:
        client = httpclient.InferenceServerClient(server.http_address)
        results: list[tuple[int, Outcome]] = []
        try:
            for index in indices:
                tensor = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
                tensor.set_data_from_numpy(_item(blobs[index]))
                try:
                    result = client.infer(model, [tensor])
                    outcome: Outcome = (
                        list(result.as_numpy("LABELS")[0]),
                        result.as_numpy("SCORES")[0],
                    )
                except InferenceServerException as error:
                    outcome = error
                results.append((index, outcome))
        finally:
            client.close()
        return results

    chunks = [range(start, len(blobs), CONCURRENCY) for start in range(CONCURRENCY)]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = dict(item for part in pool.map(worker, chunks) for item in part)
    return [results[i] for i in range(len(blobs))]


PROTOCOLS: dict[str, Callable[[LocalTriton, str, list[bytes]], list[Outcome]]] = {
    "grpc": infer_grpc,
    "http": infer_http,
}


def top1(outcomes: list[Outcome]) -> np.ndarray:
    labels = []
    for outcome in outcomes:
        assert not isinstance(outcome, InferenceServerException), outcome
        labels.append(int(outcome[0][0]))
    return np.array(labels)


# Every variant, each over one protocol (alternating, so both are covered): 360 images per case.
@pytest.mark.parametrize(
    ("protocol", "variant"),
    [(list(PROTOCOLS)[i % 2], variant) for i, variant in enumerate(VARIANTS)],
)
def test_served_accuracy_equals_in_process_accuracy(
    triton: LocalTriton,
    model_repository: Path,
    test_set: dict[str, np.ndarray],
    protocol: str,
    variant: str,
) -> None:
    images, labels = test_set["images"], test_set["labels"]
    before = _executions(triton, model_name(variant))
    # A unique note per run: the response cache (maybe warmed by other tests) cannot answer.
    note = uuid.uuid4().hex
    blobs = [png(image, note) for image in images]
    outcomes = PROTOCOLS[protocol](triton, ensemble_name(variant), blobs)
    served = top1(outcomes)
    inferences, executions = np.subtract(_executions(triton, model_name(variant)), before)
    # The concurrent one-image requests reached the ONNX model in dynamic batches.
    assert inferences == len(images) and executions < inferences
    expected = in_process_predictions(model_repository, variant, images)
    np.testing.assert_array_equal(served, expected)
    assert float((served == labels).mean()) == float((expected == labels).mean())
    for label_list, scores in outcomes:  # type: ignore[misc]
        assert len(label_list) == TOP_K and len(set(label_list)) == TOP_K
        assert np.all(np.diff(scores) <= 0) and 0 < scores.sum() <= 1 + 1e-5


def test_default_ensemble_serves_its_variant(
    triton: LocalTriton, model_repository: Path, test_set: dict[str, np.ndarray]
) -> None:
    report = json.loads((digits.report_dir() / "build_report.json").read_text())
    report_default = report["default_variant"]
    images = test_set["images"][:48]
    served = top1(
        infer_http(triton, ensemble_name(None), [black_on_white_jpeg(image) for image in images])
    )
    expected = in_process_predictions(model_repository, report_default, images)
    # JPEG may move a pixel by one level; the prediction should almost never change.
    assert (served == expected).mean() >= 0.95


def test_one_request_may_carry_several_images(
    triton: LocalTriton, test_set: dict[str, np.ndarray]
) -> None:
    images, labels = test_set["images"][:5], test_set["labels"][:5]
    tensor = httpclient.InferInput("IMAGE", [5, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[png(image)] for image in images], dtype=np.object_))
    client = httpclient.InferenceServerClient(triton.http_address)
    try:
        result = client.infer(ensemble_name("teacher"), [tensor])
    finally:
        client.close()
    assert result.as_numpy("LABELS").shape == (5, TOP_K)
    assert result.as_numpy("SCORES").shape == (5, TOP_K)
    predicted = [int(row[0]) for row in result.as_numpy("LABELS")]
    assert (np.array(predicted) == labels).mean() >= 0.8


def test_bad_inputs_fail_alone_while_good_images_in_the_same_burst_succeed(
    triton: LocalTriton, test_set: dict[str, np.ndarray]
) -> None:
    images, labels = test_set["images"], test_set["labels"]
    first, second = images[labels == 4][0], images[labels == 6][0]
    good = [(png(images[i]), int(labels[i])) for i in range(6)]
    defined = [(animated_gif(first, second), 4), (png16(images[7]), int(labels[7]))]
    bad = list(BAD_INPUTS.values())
    # Interleave, and send every bad input twice: a cached error must not replace an answer.
    burst: list[tuple[bytes, int | str]] = []
    for index, (data, phrase) in enumerate(bad * 2):
        burst += [(data, phrase), good[index % len(good)]]
    burst += defined
    for protocol, call in PROTOCOLS.items():
        outcomes = call(triton, ensemble_name(None), [data for data, _ in burst])
        for (_, expected), outcome in zip(burst, outcomes, strict=True):
            if isinstance(expected, str):
                assert isinstance(outcome, InferenceServerException), (protocol, expected)
                assert expected in str(outcome), (protocol, str(outcome))
                status = str(outcome.status())
                assert status in ("400", "StatusCode.INVALID_ARGUMENT"), (protocol, status)
            else:
                assert not isinstance(outcome, InferenceServerException), (protocol, outcome)
                assert int(outcome[0][0]) == expected, protocol
    assert triton.is_ready()


def _executions(server: LocalTriton, model: str) -> tuple[int, int]:
    """(inference count, execution count) of ``model`` so far."""
    client = httpclient.InferenceServerClient(server.http_address)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return int(stats["inference_count"]), int(stats["execution_count"])


def _cache_hits(server: LocalTriton, model: str) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    match = re.search(rf'nv_cache_num_hits_per_model{{model="{model}",version="1"}} (\S+)', text)
    return float(match.group(1)) if match else 0.0


def test_response_cache_answers_repeats_identically(
    triton: LocalTriton, test_set: dict[str, np.ndarray]
) -> None:
    model = ensemble_name("student")
    blob = png(test_set["images"][100], uuid.uuid4().hex)
    before = _cache_hits(triton, model)
    first = infer_grpc(triton, model, [blob])[0]
    repeats = infer_grpc(triton, model, [blob] * 3)
    for outcome in repeats:
        assert not isinstance(outcome, InferenceServerException) and not isinstance(
            first, InferenceServerException
        )
        assert outcome[0] == first[0]
        np.testing.assert_array_equal(outcome[1], first[1])
    assert _cache_hits(triton, model) >= before + 3
