"""Each edge bundle against the served Triton models, on the same inputs (issue 14's targets).

Text: the 250-sentence evaluation corpus through ``text_embedding`` (served FP32) and through
the bundle; FP32 bundles need min cosine >= 0.9999 to it, INT8 ones >= 0.99. Digits: the 360
held-out images as PNG files through ``digit_classifier_<variant>`` and through the bundle;
identical top labels on >= 99.5% of images, accuracy within 1.5 points of the served teacher.
Bad input: the server and the bundle refuse the same inputs, and the server's message holds
the bundle's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.edge_support import BAD_TEXTS, DIGITS, TEXT, built_bundles
from tests.test_digits_preprocess import BAD_INPUTS
from tritonctl.client import embed
from tritonctl.corpus import sentences
from tritonctl.edge.evaluate import (
    FIXED_SAMPLE,
    MAX_POINTS_BELOW_TEACHER,
    MIN_AGREEMENT,
    MIN_COSINE_FP32,
    MIN_COSINE_INT8,
    digits_test_set,
    load_runner,
    png,
)
from tritonctl.server import LocalTriton

pytestmark = pytest.mark.server
FIXED_INT8_FLOOR = 0.98


@pytest.fixture(scope="module")
def edge_bundles(model_repository: Path) -> dict[str, Path]:
    """The bundles ``tritonctl build edge`` made (the ``model_repository`` fixture builds all)."""
    return built_bundles()


def served_labels(server: LocalTriton, model: str, images: list[bytes]) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        labels = []
        for start in range(0, len(images), 32):
            chunk = np.array(images[start : start + 32], dtype=np.object_).reshape(-1, 1)
            tensor = grpcclient.InferInput("IMAGE", list(chunk.shape), "BYTES")
            tensor.set_data_from_numpy(chunk)
            result = client.infer(
                model, [tensor], outputs=[grpcclient.InferRequestedOutput("LABELS")]
            )
            labels.append(result.as_numpy("LABELS")[:, 0])
    finally:
        client.close()
    return np.array([int(label) for label in np.concatenate(labels)])


@pytest.fixture(scope="module")
def served_fp32(triton: LocalTriton) -> np.ndarray:
    texts = sentences()  # in requests of 32: the ensemble's max_batch_size is 64
    return np.concatenate(
        [
            embed(texts[i : i + 32], triton.grpc_address, model="text_embedding")
            for i in range(0, len(texts), 32)
        ]
    )


def names(edge_bundles: dict[str, Path], task: str) -> list[str]:
    return [n for n in edge_bundles if n.startswith("text_encoder") == (task == "embed")]


def test_text_bundles_match_the_served_fp32_embeddings(
    edge_bundles: dict[str, Path], served_fp32: np.ndarray
) -> None:
    texts = sentences()
    checked = {}
    for name in names(edge_bundles, "embed"):
        runner = load_runner(edge_bundles[name])
        vectors = runner.Bundle(edge_bundles[name], threads=2).embed(texts)
        cosine = (vectors * served_fp32).sum(axis=1)
        needed = MIN_COSINE_FP32 if name.endswith("-fp32") else MIN_COSINE_INT8
        checked[name] = round(float(cosine.min()), 6)
        assert cosine.min() >= needed, (name, checked[name])
    assert {TEXT, "text_encoder-onnxruntime-fp32"} <= set(checked), checked


def test_the_fixed_shape_text_variant_matches_too(
    edge_bundles: dict[str, Path], served_fp32: np.ndarray
) -> None:
    texts = sentences()[:FIXED_SAMPLE]  # one text per call at 128 tokens: a sample keeps CI short
    for name in ("text_encoder-onnxruntime-fp32", TEXT):
        runner = load_runner(edge_bundles[name])
        fixed = runner.Bundle(edge_bundles[name], threads=2, variant="fixed_shape")
        lengths = [len(ids) for ids in fixed.tokenize(texts)]
        fits = [i for i, n in enumerate(lengths) if n <= 128]
        assert len(fits) >= 0.9 * len(texts)
        cosine = (fixed.embed([texts[i] for i in fits]) * served_fp32[fits]).sum(axis=1)
        # INT8 alone at 128 tokens: the padding enters its dynamic activation range, which costs
        # it the 0.99 target (docs/edge.md); the build reports the figure, this bounds it.
        needed = MIN_COSINE_FP32 if name.endswith("-fp32") else FIXED_INT8_FLOOR
        assert cosine.min() >= needed, (name, float(cosine.min()))


def test_digits_bundles_give_the_served_labels(
    edge_bundles: dict[str, Path], triton: LocalTriton
) -> None:
    test = digits_test_set()
    images = [png(image) for image in test["images"]]
    served = {}
    teacher = served_labels(triton, "digit_classifier_teacher", images)
    teacher_accuracy = float((teacher == test["labels"]).mean())
    for name in names(edge_bundles, "classify"):
        runner = load_runner(edge_bundles[name])
        bundle = runner.Bundle(edge_bundles[name], threads=2)
        ensemble = bundle.manifest["source"]["served_ensemble"]
        if ensemble not in served:
            served[ensemble] = served_labels(triton, ensemble, images)
        labels, scores = bundle.classify(images)
        predicted = labels[:, 0].astype(int)
        agreement = float((predicted == served[ensemble]).mean())
        accuracy = float((predicted == test["labels"]).mean())
        assert agreement >= MIN_AGREEMENT, (name, ensemble, agreement)
        assert (teacher_accuracy - accuracy) * 100 <= MAX_POINTS_BELOW_TEACHER, (name, accuracy)
        assert np.all(np.diff(scores, axis=1) <= 0)  # most probable first, like the server
    assert len(served) >= 2


def _served_error(server: LocalTriton, model: str, name: str, item: bytes) -> str:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        tensor = grpcclient.InferInput(name, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[item]], dtype=np.object_))
        with pytest.raises(InferenceServerException) as error:
            client.infer(model, [tensor])
        return str(error.value.message())
    finally:
        client.close()


@pytest.mark.parametrize("case", [c for c in BAD_TEXTS if c != "lone surrogate"])
def test_bad_text_gets_the_same_message_from_the_bundle_and_the_server(
    edge_bundles: dict[str, Path], triton: LocalTriton, case: str
) -> None:
    text, _ = BAD_TEXTS[case]
    item = text if isinstance(text, bytes) else text.encode()
    runner = load_runner(edge_bundles[TEXT])
    with pytest.raises(runner.InputError) as refused:
        runner.Bundle(edge_bundles[TEXT], threads=1).embed([text])
    assert str(refused.value) in _served_error(triton, "text_embedding_int8", "TEXT", item)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_images_get_the_same_message_from_the_bundle_and_the_server(
    edge_bundles: dict[str, Path], triton: LocalTriton, case: str
) -> None:
    data, _ = BAD_INPUTS[case]
    runner = load_runner(edge_bundles[DIGITS])
    with pytest.raises(runner.InputError) as refused:
        runner.Bundle(edge_bundles[DIGITS], threads=1).classify([data])
    served = _served_error(triton, "digit_classifier_student", "IMAGE", data)
    assert str(refused.value) in served, (str(refused.value), served)


def test_the_build_report_holds_the_edge_table_with_the_served_round_trip(
    edge_bundles: dict[str, Path],
) -> None:
    from tritonctl.recipes.edge import report_dir

    report = json.loads((report_dir() / "build_report.json").read_text())
    assert not report["failed_gates"]
    for name, row in report["bundles"].items():
        assert row["model_gzip_bytes"] < row["model_bytes"] * 1.01, name
        for threads in ("1", "all"):
            bench = row["bench"][threads]
            assert 0 < bench["p50_ms"] <= bench["p95_ms"] and bench["peak_rss_mb"] > 0, name
        assert row["served"] in report["served"], (name, report.get("served_error"))
    table = (report_dir() / "edge_table.md").read_text()
    assert all(name in table for name in report["bundles"])
    assert (report_dir() / "latency.png").stat().st_size > 10_000
