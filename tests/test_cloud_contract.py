"""The SageMaker and Vertex AI serving contracts, with real requests to the real server started
exactly as each cloud starts it (SageMaker's own ``serve`` script; Vertex's AIP_* variables and
container spec), for both pipelines: embeddings and digits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cloud_support import (
    column,
    digit_images,
    texts,
)
from tritonctl.cloud import contract, facts

pytestmark = [pytest.mark.server, pytest.mark.slow]

SENTENCES = [
    "The cat sat on the mat.",
    "A cat was sitting on a rug.",
    "Quarterly revenue grew by eight percent.",
]


@pytest.fixture(params=["sagemaker", "vertex"])
def text_endpoint(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return request.getfixturevalue(f"{request.param}_text")[1]


@pytest.fixture(params=["sagemaker", "vertex"])
def digits_endpoint(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return request.getfixturevalue(f"{request.param}_digits")[1]


@pytest.mark.parametrize(
    "served", ["sagemaker_text", "sagemaker_digits", "vertex_text", "vertex_digits"]
)
def test_health_is_refused_while_loading_and_ok_after(
    request: pytest.FixtureRequest, served: str
) -> None:
    started = request.getfixturevalue(served)[1]
    assert started.healthy_while_loading is False
    assert started.endpoint.healthy()


def test_sagemaker_routes_are_the_contract(sagemaker_digits) -> None:  # type: ignore[no-untyped-def]
    endpoint = sagemaker_digits[1].endpoint
    assert (endpoint.predict_path, endpoint.health_path) == ("/invocations", "/ping")
    assert endpoint.request("GET", "/ping").status == 200
    # The plain KServe routes do not exist on this listener: HTTP and gRPC are off.
    assert endpoint.request("GET", "/v2/health/ready").status == 400


def test_vertex_routes_come_from_the_container_spec(vertex_digits) -> None:  # type: ignore[no-untyped-def]
    built, started = vertex_digits
    spec = json.loads((built.folder / "container-spec.json").read_text())
    endpoint = started.endpoint
    assert endpoint.predict_path == spec["predictRoute"] == "/v2/models/digit_classifier/infer"
    assert endpoint.health_path == spec["healthRoute"]
    assert endpoint.request("GET", spec["healthRoute"]).status == 200


def test_embeddings_json_and_binary_agree(text_endpoint) -> None:  # type: ignore[no-untyped-def]
    endpoint = text_endpoint.endpoint
    as_json = endpoint.invoke({"TEXT": texts(SENTENCES)})["EMBEDDING"]
    as_binary = endpoint.invoke({"TEXT": texts(SENTENCES)}, binary=True, outputs=["EMBEDDING"])[
        "EMBEDDING"
    ]
    assert as_json.shape == (3, 384)
    np.testing.assert_allclose(as_binary, as_json, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(as_json, axis=1), 1.0, atol=1e-4)
    similar, unrelated = as_json[0] @ as_json[1], as_json[0] @ as_json[2]
    assert similar > 0.6 > unrelated, (similar, unrelated)


def test_binary_body_is_smaller_than_json_for_the_same_request(text_endpoint) -> None:  # type: ignore[no-untyped-def]
    body, header = contract.binary_body({"TEXT": texts(SENTENCES)})
    assert header < len(body)
    reply = text_endpoint.endpoint.post(
        text_endpoint.endpoint.predict_path,
        body,
        {"Content-Type": f"{text_endpoint.endpoint.binary_prefix}{header}"},
    )
    assert reply.status == 200, reply.error


def test_digits_png_in_binary_and_plain_pgm_in_json_give_the_same_labels(digits_endpoint) -> None:  # type: ignore[no-untyped-def]
    from tritonctl import paths

    _, pngs, pgms = digit_images(32)
    test_set = np.load(paths.reports_dir() / "digits" / "test_set.npz")
    # The ensemble serves the channel-pruned CNN: served labels equal its in-process ones.
    in_process = test_set["pred_pruned_channels"][:32]
    endpoint = digits_endpoint.endpoint
    binary = endpoint.invoke({"IMAGE": column(pngs)}, binary=True)
    text = endpoint.invoke({"IMAGE": column(pgms)})
    top_binary = [int(row[0]) for row in binary["LABELS"]]
    top_text = [int(row[0]) for row in text["LABELS"]]
    assert top_binary == top_text == [int(x) for x in in_process]
    np.testing.assert_allclose(binary["SCORES"], text["SCORES"], atol=1e-5)


def test_vertex_redirect_reaches_the_other_models(vertex_text) -> None:  # type: ignore[no-untyped-def]
    endpoint = vertex_text[1].endpoint
    body = contract.json_body({"TEXT": texts(["hello redirect"])})
    tokens = endpoint.post(
        endpoint.predict_path, body, contract.redirect("v2/models/tokenizer/infer")
    )
    assert tokens.status == 200, tokens.error
    names = {o["name"] for o in json.loads(tokens.body)["outputs"]}
    assert names == {"input_ids", "attention_mask"}
    config = endpoint.post(
        endpoint.predict_path, b"", contract.redirect("v2/models/pooling/config")
    )
    assert config.status == 200 and json.loads(config.body)["name"] == "pooling"
    ready = endpoint.post(
        endpoint.predict_path, b"", contract.redirect("v2/models/text_encoder/ready")
    )
    assert ready.status == 200
    # A model that is not in the package is simply not there.
    missing = endpoint.post(
        endpoint.predict_path, body, contract.redirect("v2/models/digits_teacher/infer")
    )
    assert missing.status in (400, 404) and "digits_teacher" in missing.error


# Triton answers a body it cannot parse as JSON with 500, the others with 400; each names why.
BAD_BODIES = {
    "not JSON": (b"{not json", "application/json", "failed to parse the request JSON"),
    "empty body": (b"", "application/json", ""),
    "unknown input": (
        json.dumps(
            {"inputs": [{"name": "NOPE", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]}
        ).encode(),
        "application/json",
        "NOPE",
    ),
    "wrong datatype": (
        json.dumps(
            {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
        ).encode(),
        "application/json",
        "FP32",
    ),
    "shape and data disagree": (
        json.dumps(
            {"inputs": [{"name": "TEXT", "shape": [2, 1], "datatype": "BYTES", "data": ["x"]}]}
        ).encode(),
        "application/json",
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_bodies_are_refused_with_a_reason_and_the_endpoint_keeps_serving(
    text_endpoint,
    case: str,  # type: ignore[no-untyped-def]
) -> None:
    body, content_type, named = BAD_BODIES[case]
    endpoint = text_endpoint.endpoint
    reply = endpoint.post(endpoint.predict_path, body, {"Content-Type": content_type})
    expected = 500 if case == "not JSON" else 400
    assert reply.status == expected, (case, reply.status, reply.body[:200])
    assert named.lower() in reply.error.lower(), reply.error
    assert endpoint.invoke({"TEXT": texts(["still serving"])})["EMBEDDING"].shape == (1, 384)


def test_binary_header_size_beyond_the_body_is_refused(text_endpoint) -> None:  # type: ignore[no-untyped-def]
    endpoint = text_endpoint.endpoint
    body, header = contract.binary_body({"TEXT": texts(["x"])})
    reply = endpoint.post(
        endpoint.predict_path, body, {"Content-Type": f"{endpoint.binary_prefix}{len(body) + 10}"}
    )
    assert reply.status == 400 and "header size" in reply.error, reply.error
    assert header < len(body)


def test_invalid_utf8_text_is_refused_by_the_tokenizer(text_endpoint) -> None:  # type: ignore[no-untyped-def]
    endpoint = text_endpoint.endpoint
    with pytest.raises(contract.ContractError) as caught:
        endpoint.invoke({"TEXT": column([b"ok", b"\xff\xfe not utf-8"])}, binary=True)
    assert caught.value.status in (400, 500)
    assert "utf-8" in caught.value.message.lower(), caught.value.message
    assert endpoint.invoke({"TEXT": texts(["fine again"])})["EMBEDDING"].shape == (1, 384)


def test_corrupt_image_is_refused_with_the_reason(digits_endpoint) -> None:  # type: ignore[no-untyped-def]
    endpoint = digits_endpoint.endpoint
    _, pngs, _ = digit_images(1)
    with pytest.raises(contract.ContractError) as caught:
        endpoint.invoke({"IMAGE": column([pngs[0][:40]])}, binary=True)
    assert "image" in caught.value.message.lower(), caught.value.message
    assert endpoint.invoke({"IMAGE": column(pngs)}, binary=True)["LABELS"].shape == (1, 3)


def _noise_png(size: int) -> bytes:
    """An uncompressed PNG of random pixels, a little over ``size`` bytes."""
    import io

    from PIL import Image

    side = int((size / 3) ** 0.5) + 8
    pixels = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


@pytest.mark.parametrize("cloud", ["sagemaker", "vertex"])
def test_a_body_over_the_cloud_limit_is_refused_before_sending(
    request: pytest.FixtureRequest, cloud: str
) -> None:
    """The cloud's front door refuses such a body; Triton itself has no limit, so the client
    refuses it locally, naming the limit. Sent anyway, the container serves it: the limit
    lives in the cloud, not in the image."""
    limit = facts.SAGEMAKER_REALTIME_PAYLOAD if cloud == "sagemaker" else facts.VERTEX_PAYLOAD
    for served in ("text", "digits"):
        endpoint = request.getfixturevalue(f"{cloud}_{served}")[1].endpoint
        if served == "text":
            inputs = {"TEXT": texts(["x" * (limit // 8)] * 8)}
        else:
            inputs = {"IMAGE": column([_noise_png(limit)])}
        with pytest.raises(contract.PayloadTooLarge, match=f"{limit:,}"):
            endpoint.invoke(inputs, binary=True)
    # Sent anyway: images (each under the preprocessing's pixel guard) that together are over
    # the limit, which the model decodes and classifies.
    endpoint = request.getfixturevalue(f"{cloud}_digits")[1].endpoint
    one = _noise_png(900 * 900 * 3)
    body, header = contract.binary_body({"IMAGE": column([one] * (limit // len(one) + 1))})
    assert len(body) > limit
    reply = endpoint.post(
        endpoint.predict_path, body, {"Content-Type": f"{endpoint.binary_prefix}{header}"}
    )
    assert reply.status == 200, reply.error
