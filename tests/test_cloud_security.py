"""What the cloud front ends let a caller do, sent as real requests to the real server.

Triton 2.51 applies no ``--http-restricted-api`` to its SageMaker and Vertex AI listeners, the
SageMaker listener keeps its multi-model load/unload routes in single-model mode, and the
Vertex redirect header reaches ``v2/repository/...``. The packaged configurations turn model
control off, so every route that loads or unloads a model is refused; the stock configurations
(SageMaker's ``serve`` defaults, Vertex with explicit model control) are shown to be open, so
these tests fail if the packaged configuration ever loses its protection.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.cloud_support import (
    column,
    digit_images,
    make_package,
    start_observed,
)
from tests.tiny_repository import make_tiny_repository
from tritonctl.cloud import contract, facts, selection, shm, vertex
from tritonctl.cloud.frontends import AzureMLTriton, SageMakerTriton, VertexTriton
from tritonctl.cloud.package import Package

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _serves_digits(endpoint: contract.Endpoint) -> bool:
    _, pngs, _ = digit_images(1)
    try:
        return endpoint.invoke({"IMAGE": column(pngs)}, binary=True)["LABELS"].shape == (1, 3)
    except contract.ContractError:
        return False


def sagemaker_attacks(built: Package) -> dict[str, tuple[str, str, bytes]]:
    """(method, path, body) of every SageMaker-listener route that loads, unloads or reads."""
    model_dir = str((built.folder / "model").resolve())
    return {
        "load a model from the archive": (
            "POST",
            "/models",
            json.dumps({"model_name": "again", "url": model_dir}).encode(),
        ),
        "load from another folder": (
            "POST",
            "/models",
            json.dumps({"model_name": "etc", "url": "/etc"}).encode(),
        ),
        "load from a folder that does not exist": (
            "POST",
            "/models",
            json.dumps({"model_name": "ghost", "url": "/no/such/folder"}).encode(),
        ),
        "load through a traversal": (
            "POST",
            "/models",
            json.dumps({"model_name": "up", "url": "/opt/ml/models/../../../etc"}).encode(),
        ),
        "unload the served model": ("DELETE", "/models/digit_classifier", b""),
        "unload a step": ("DELETE", "/models/image_preprocess", b""),
        "repository index": ("POST", "/v2/repository/index", b"{}"),
        "repository unload": ("POST", "/v2/repository/models/digit_classifier/unload", b"{}"),
    }


def test_packaged_sagemaker_refuses_every_load_and_unload(sagemaker_digits) -> None:  # type: ignore[no-untyped-def]
    built, started = sagemaker_digits
    endpoint = started.endpoint
    for name, (method, path, body) in sagemaker_attacks(built).items():
        reply = endpoint.request(method, path, body or None)
        assert reply.status in (400, 404), (name, reply.status, reply.body[:200])
        if path == "/models" and method == "POST":
            # Refused before it looks at the path: no existence oracle for /etc either.
            assert "not allowed if model control mode is not EXPLICIT" in reply.error, reply.error
    assert json.loads(endpoint.request("GET", "/models").body) == {"models": []}
    assert endpoint.healthy() and _serves_digits(endpoint)


def vertex_attacks() -> dict[str, tuple[str, bytes]]:
    """Redirect targets that load, unload, or open shared memory (the only file-like objects a
    Vertex caller can name)."""
    register = json.dumps({"key": "/../../etc/hostname", "offset": 0, "byte_size": 8}).encode()
    return {
        "unload the served model": ("v2/repository/models/digit_classifier/unload", b"{}"),
        "unload a step": ("v2/repository/models/image_preprocess/unload", b"{}"),
        "load a model": ("v2/repository/models/image_preprocess/load", b"{}"),
        "load with uploaded files": (
            "v2/repository/models/evil/load",
            json.dumps(
                {"parameters": {"config": "{}", "file:1/model.py": "aW1wb3J0IG9z"}}
            ).encode(),
        ),
        "shared memory outside /dev/shm": ("v2/systemsharedmemory/region/r/register", register),
        "trace settings": ("v2/trace/setting", b'{"trace_level": ["TIMESTAMPS"]}'),
        "log settings": ("v2/logging", b'{"log_verbose_level": 1}'),
    }


def test_packaged_vertex_refuses_every_load_unload_and_file(vertex_digits) -> None:  # type: ignore[no-untyped-def]
    endpoint = vertex_digits[1].endpoint
    for name, (target, body) in vertex_attacks().items():
        reply = endpoint.post(endpoint.predict_path, body, contract.redirect(target))
        assert reply.status in (400, 403, 500, 503), (name, reply.status, reply.body[:200])
        if "repository" in target:
            assert reply.status == 503 and "not allowed" in reply.error, (name, reply.error)
    assert endpoint.healthy() and _serves_digits(endpoint)


def test_packaged_text_endpoints_refuse_unload_too(sagemaker_text, vertex_text) -> None:  # type: ignore[no-untyped-def]
    sagemaker = sagemaker_text[1].endpoint
    assert sagemaker.request("DELETE", "/models/tokenizer").status == 404
    assert (
        sagemaker.request(
            "POST", "/models", json.dumps({"model_name": "x", "url": "/"}).encode()
        ).status
        == 400
    )
    vertex = vertex_text[1].endpoint
    reply = vertex.post(
        vertex.predict_path, b"{}", contract.redirect("v2/repository/models/tokenizer/unload")
    )
    assert reply.status == 503
    assert sagemaker.healthy() and vertex.healthy()


def _stock_folder(root: Path) -> Path:
    """A one-model repository (the tiny Python ``add_one``): the stock configurations' holes are
    the server's, not the model's, and this starts in a fraction of a pipeline's time."""
    folder = make_tiny_repository(root / "model")
    shutil.rmtree(folder / "double")
    return folder


def _serves_add_one(endpoint: contract.Endpoint) -> bool:
    try:
        out = endpoint.invoke({"X": np.ones((1, 4), np.float32)})["Y"]
    except contract.ContractError:
        return False
    return bool((out == 2).all())


@pytest.fixture()
def stock_sagemaker(tmp_path: Path) -> Iterator[tuple[Path, SageMakerTriton]]:
    """SageMaker's ``serve`` with its stock defaults: only the default model named."""
    folder = _stock_folder(tmp_path)
    server = SageMakerTriton(folder, {"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "add_one"})
    try:
        start_observed(server)
        yield folder, server
    finally:
        server.kill()  # nothing in flight: a graceful stop only waits


def test_stock_sagemaker_configuration_lets_any_caller_unload_the_model(stock_sagemaker) -> None:  # type: ignore[no-untyped-def]
    """Why the package changes the defaults: with them, any caller loads a model (its
    ``model.py`` is code the server runs) from a folder it names, invokes it, and unloads it."""
    folder, server = stock_sagemaker
    endpoint = server.endpoint
    assert _serves_add_one(endpoint)
    body = json.dumps({"model_name": "again", "url": str(folder.resolve())}).encode()
    assert endpoint.request("POST", "/models", body).status == 200
    invoked = dataclasses.replace(endpoint, predict_path="/models/again/invoke")
    assert _serves_add_one(invoked)
    assert endpoint.request("DELETE", "/models/again").status == 200
    assert not _serves_add_one(invoked)
    assert _serves_add_one(endpoint)


@pytest.fixture()
def explicit_vertex(tmp_path: Path) -> Iterator[VertexTriton]:
    """Vertex AI with explicit model control, which a user might choose to load models."""
    folder = _stock_folder(tmp_path)
    plan = shm.plan(
        selection.closure(folder, "add_one"),
        limit_bytes=facts.MIB * 64,
        payload_limit=facts.VERTEX_PAYLOAD,
    )
    spec = vertex.container_spec("add_one", "local", plan)
    spec["args"] = [a for a in spec["args"] if not a.startswith("--model-control-mode")]
    spec["args"] += ["--model-control-mode=explicit", "--load-model=add_one"]
    server = VertexTriton(folder, spec)
    try:
        start_observed(server)
        yield server
    finally:
        server.kill()  # nothing in flight: a graceful stop only waits


def test_vertex_with_explicit_model_control_lets_the_redirect_unload(explicit_vertex) -> None:  # type: ignore[no-untyped-def]
    endpoint = explicit_vertex.endpoint
    assert _serves_add_one(endpoint)
    reply = endpoint.post(
        endpoint.predict_path, b"{}", contract.redirect("v2/repository/models/add_one/unload")
    )
    assert reply.status == 200, reply.error
    assert not _serves_add_one(endpoint)


@pytest.fixture(scope="module")
def azureml_digits(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AzureMLTriton]:
    """The serving image's own command with the package's deployment.yml variables."""
    import yaml

    built = make_package(tmp_path_factory, "azureml", "digit_classifier")
    deployment = yaml.safe_load((built.folder / "deployment.yml").read_text())
    server = AzureMLTriton(
        built.folder / "model",
        deployment["environment_variables"],
        "digit_classifier",
        exit_timeout=5,
    )
    try:
        start_observed(server)
        yield server
    finally:
        server.kill()  # nothing in flight: a graceful stop only waits


AZURE_ATTACKS = {
    "repository index": ("/v2/repository/index", b"{}"),
    "unload the served model": ("/v2/repository/models/digit_classifier/unload", b"{}"),
    "load with uploaded files": (
        "/v2/repository/models/evil/load",
        json.dumps({"parameters": {"config": "{}", "file:1/model.py": "aW1wb3J0IG9z"}}).encode(),
    ),
    "shared memory": (
        "/v2/systemsharedmemory/region/r/register",
        json.dumps({"key": "/x", "offset": 0, "byte_size": 8}).encode(),
    ),
    "trace settings": ("/v2/trace/setting", b'{"trace_level": ["TIMESTAMPS"]}'),
    "log settings": ("/v2/logging", b'{"log_verbose_level": 1}'),
}


def test_packaged_azureml_locks_every_admin_route(azureml_digits: AzureMLTriton) -> None:
    """Azure's scoring route "/" passes every Triton route through; the lock key was drawn at
    start and stays inside the container, so each admin route answers 403 to a caller. With the
    key (which only the container's own processes can read) the index answers: the lock, not
    some other failure, is what refuses."""
    endpoint = azureml_digits.endpoint
    for name, (path, body) in AZURE_ATTACKS.items():
        reply = endpoint.post(path, body, {"Content-Type": "application/json"})
        assert reply.status == 403, (name, reply.status, reply.body[:200])
        guessed = endpoint.post(path, body, {"admin-key": "guess"})
        assert guessed.status == 403, name
    assert endpoint.healthy() and _serves_digits(endpoint)
    inside = endpoint.post("/v2/repository/index", b"{}", {"admin-key": azureml_digits.lock_key})
    assert inside.status == 200
