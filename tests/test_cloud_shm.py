"""The SageMaker package loads and serves under SageMaker's fixed 64 MiB /dev/shm.

The server runs in a private mount namespace whose /dev/shm is a tmpfs of SageMaker's size, plus
what the local ONNX Runtime stand-in stubs need (in the NGC image the native ONNX Runtime backend
uses no /dev/shm). Each stub's command line names its model file and its region, so the test
measures the container's share (the ``model.py`` stubs') directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.cloud_support import column, digit_images, start_observed, texts
from tritonctl.cloud import contract, facts, sagemaker, selection, shm
from tritonctl.cloud.frontends import SageMakerTriton, private_shm_supported
from tritonctl.model_config import load_config, save_config
from tritonctl.server import ServerError

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _server(
    folder: Path, env: dict[str, str], plan: shm.ShmPlan, log_file: Path | None = None
) -> SageMakerTriton:
    """The SageMaker front end with SageMaker's /dev/shm, plus the local stand-ins' share."""
    limit = facts.SAGEMAKER_SHM_BYTES + plan.local_extra_bytes
    return SageMakerTriton(folder, env, shm_limit_bytes=limit, log_file=log_file, exit_timeout=5)


def _python_regions(server: SageMakerTriton) -> list[int]:
    """Sizes of the Python backend's regions: what the NGC image's stubs would hold."""
    return server.region_sizes()


@pytest.fixture(scope="module", autouse=True)
def needs_private_shm() -> None:
    reason = private_shm_supported()
    if reason:
        pytest.skip(f"cannot give the server SageMaker's fixed /dev/shm here: {reason}")


def _stage(
    repository: Path, model: str, folder: Path, *, python_instances: int | None = None
) -> shm.ShmPlan:
    selection.stage(repository, model, folder)
    if python_instances:
        # A Python-heavy layout: the preprocessing model with more instances, as tuning for
        # throughput does. 16 MiB regions x 5 instances is more than SageMaker's 64 MiB.
        config = load_config(folder / "image_preprocess")
        config.instance_group[0].count = python_instances
        save_config(config, folder / "image_preprocess" / "config.pbtxt")
    return shm.plan(
        selection.closure(folder, model),
        limit_bytes=facts.SAGEMAKER_SHM_BYTES,
        payload_limit=facts.SAGEMAKER_REALTIME_PAYLOAD,
    )


@pytest.fixture(scope="module")
def python_heavy_digits(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, shm.ShmPlan]:
    folder = tmp_path_factory.mktemp("digits-heavy") / "model"
    plan = _stage(model_repository, "digit_classifier", folder, python_instances=4)
    assert plan.python_instances == 5
    assert plan.stock_load_bytes > facts.SAGEMAKER_SHM_BYTES >= plan.peak_bytes
    return folder, plan


def test_stock_serve_defaults_do_not_load_under_sagemakers_shm(
    python_heavy_digits, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    folder, plan = python_heavy_digits
    env = {"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "digit_classifier"}
    # a log of its own: a failed start removes the run folder that holds the default log
    server = _server(folder, env, plan, log_file=tmp_path / "server.log")
    try:
        with pytest.raises(ServerError):
            start_observed(server)
        log = (tmp_path / "server.log").read_text()
        assert "shared memory" in log.lower() and "16777216" in log
    finally:
        server.stop()


@pytest.fixture(scope="module")
def planned_digits(python_heavy_digits) -> Iterator[SageMakerTriton]:  # type: ignore[no-untyped-def]
    folder, plan = python_heavy_digits
    env = sagemaker.container_environment("digit_classifier", plan)
    server = _server(folder, env, plan)
    try:
        start_observed(server)
        yield server
    finally:
        server.kill()  # nothing in flight: a graceful stop only waits


def test_packaged_environment_loads_and_serves_under_sagemakers_shm(
    planned_digits, python_heavy_digits
) -> None:  # type: ignore[no-untyped-def]
    _, plan = python_heavy_digits
    _, pngs, _ = digit_images(64)
    labels = planned_digits.endpoint.invoke({"IMAGE": column(pngs)}, binary=True)["LABELS"]
    assert labels.shape == (64, 3)
    regions = _python_regions(planned_digits)
    assert len(regions) == plan.python_instances
    assert sum(regions) <= plan.peak_bytes <= facts.SAGEMAKER_SHM_BYTES


def test_a_batch_beyond_the_shm_fails_alone_and_the_model_keeps_serving(planned_digits) -> None:  # type: ignore[no-untyped-def]
    """Only possible with a body far over SageMaker's 6 MB (the cloud would refuse it): shows
    that running out of /dev/shm is a per-request error, not a crash."""
    import io

    from PIL import Image

    # Each image is under the preprocessing's pixel guard (it must reach the stub's region to
    # fail there); 32 of them are 78 MB, more than the whole /dev/shm.
    noise = np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=0)
    endpoint = contract.sagemaker(planned_digits.url)
    endpoint.payload_limit = 1 << 40
    with pytest.raises(contract.ContractError, match="Failed to increase the shared memory pool"):
        endpoint.invoke({"IMAGE": column([buffer.getvalue()] * 32)}, binary=True)
    _, pngs, _ = digit_images(2)
    assert endpoint.invoke({"IMAGE": column(pngs)}, binary=True)["LABELS"].shape == (2, 3)
    assert planned_digits.process is not None and planned_digits.process.poll() is None


def test_text_package_grows_within_sagemakers_shm(sagemaker_text) -> None:  # type: ignore[no-untyped-def]
    """The contract's text server runs under SageMaker's /dev/shm with the package's
    environment; a body over the regions' 1 MiB start makes the tokenizer's region grow."""
    built, started = sagemaker_text
    server = started.server
    assert server.shm_limit_bytes, "the contract's SageMaker server runs without the shm limit"
    # 8 texts of 150 KB (under the tokenizer's 256 KiB per text; cut to 256 tokens): 1.2 MB
    long_text = ("tokens and more words " * 7000)[:150_000]
    out = server.endpoint.invoke({"TEXT": texts([long_text] * 8)}, binary=True)
    assert out["EMBEDDING"].shape == (8, 384)
    regions = _python_regions(server)
    assert len(regions) == built.shm.python_instances
    assert sum(regions) <= built.shm.peak_bytes <= facts.SAGEMAKER_SHM_BYTES
    # the tokenizer's region grew past its start to take the body: growth works in the box
    assert max(regions) > facts.MIB
