"""Fixtures and helpers for the managed-cloud tests: packages, and the real server started as
SageMaker and Vertex AI start it. Import the fixtures you use into the test module."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.serving_support import digits_test_images, png
from tritonctl.cloud import contract, facts
from tritonctl.cloud.frontends import (
    CloudTriton,
    SageMakerTriton,
    VertexTriton,
    private_shm_supported,
)
from tritonctl.cloud.package import Package, package


@dataclass
class Started:
    """A cloud front end that is up, and what its health route said while the models loaded."""

    server: CloudTriton
    healthy_while_loading: bool

    @property
    def endpoint(self) -> contract.Endpoint:
        return self.server.endpoint


def start_observed(server: CloudTriton, timeout: float = 300) -> Started:
    """Start ``server`` in a thread and probe its health route once the process exists, before
    the models have loaded (loading takes seconds; the probe comes right after the fork)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.start(timeout=timeout)
        except BaseException as error:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while server.process is None and thread.is_alive():
        thread.join(0.01)
    early = server.endpoint.healthy() if server.process is not None else True
    thread.join()
    if errors:
        raise errors[0]
    return Started(server, early)


def make_package(tmp_factory: pytest.TempPathFactory, cloud: str, model: str) -> Package:
    """The package, less SageMaker's ``model.tar.gz``: the servers serve the ``model`` folder
    it is made from (tests/test_cloud_package.py checks the archive; the deploy test checks the
    one the emulator holds against this folder)."""
    from tritonctl import paths

    out = tmp_factory.mktemp(f"{cloud}-{model}")
    return package(cloud, paths.model_repository(), model, out, archive=False)


def sagemaker_shm_limit(built: Package) -> int:
    """SageMaker's fixed /dev/shm, plus what the local ONNX Runtime stand-in's stubs take (the
    NGC image's native ONNX Runtime backend takes none); 0 (no limit) where a private /dev/shm
    cannot be made."""
    if private_shm_supported():
        return 0
    return facts.SAGEMAKER_SHM_BYTES + built.shm.local_extra_bytes


def _front_end(cloud: str, built: Package, **options: object) -> CloudTriton:
    import json

    if cloud == "sagemaker":
        # The SageMaker contract runs under SageMaker's /dev/shm: the package's environment is
        # what makes the Python-backend models load there.
        env = json.loads((built.folder / "environment.json").read_text())
        limit = sagemaker_shm_limit(built)
        return SageMakerTriton(
            built.folder / "model", env, shm_limit_bytes=limit, exit_timeout=10, **options
        )  # type: ignore[arg-type]
    spec = json.loads((built.folder / "container-spec.json").read_text())
    return VertexTriton(built.folder / "model", spec, exit_timeout=10, **options)  # type: ignore[arg-type]


def _serve(
    tmp_factory: pytest.TempPathFactory, cloud: str, model: str
) -> Iterator[tuple[Package, Started]]:
    built = make_package(tmp_factory, cloud, model)
    server = _front_end(cloud, built)
    try:
        started = start_observed(server)
        yield built, started
    finally:
        # Nothing is in flight by then, and a graceful stop only waits (the Python backend
        # sleeps 1 s per instance while unloading); the CLI test covers the graceful stop.
        server.kill()


@pytest.fixture(scope="session")
def sagemaker_text(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Package, Started]]:
    yield from _serve(tmp_path_factory, "sagemaker", "text_embedding")


@pytest.fixture(scope="session")
def sagemaker_digits(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Package, Started]]:
    yield from _serve(tmp_path_factory, "sagemaker", "digit_classifier")


@pytest.fixture(scope="session")
def vertex_text(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Package, Started]]:
    yield from _serve(tmp_path_factory, "vertex", "text_embedding")


@pytest.fixture(scope="session")
def vertex_digits(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Package, Started]]:
    yield from _serve(tmp_path_factory, "vertex", "digit_classifier")


def texts(items: list[str]) -> np.ndarray:
    return np.array([[t.encode()] for t in items], dtype=object)


def pgm(image: np.ndarray) -> bytes:
    """A digits image (0-16) as a plain-text PGM: an image JSON can carry."""
    values = np.rint(np.asarray(image).reshape(8, 8)).astype(int)
    rows = "\n".join(" ".join(str(v) for v in row) for row in values)
    return f"P2\n8 8\n16\n{rows}\n".encode()


def digit_images(count: int) -> tuple[np.ndarray, list[bytes], list[bytes]]:
    """``count`` held-out digits: the pixel arrays, their PNGs and their plain PGMs."""
    images = digits_test_images()[:count]
    return images, [png(i) for i in images], [pgm(i) for i in images]


def column(items: list[bytes]) -> np.ndarray:
    return np.array([[item] for item in items], dtype=object)
