"""``tritonctl deploy --target sagemaker`` end to end against moto in server mode.

moto is an EMULATOR of the AWS APIs: it stores what the calls create (the S3 object, the
model, the endpoint config, the endpoint) and answers the describe calls, but it runs no
container. What it proves is that the package's bodies are accepted by an implementation of the
SageMaker and S3 APIs and that the deploy sequence completes; the last test then serves what
the emulator holds (the archive from its S3, the environment from its DescribeModel) with the
real server, as SageMaker would.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloud_support import column, digit_images
from tritonctl.cli import main
from tritonctl.cloud.deploy import DeployError, deploy_sagemaker
from tritonctl.cloud.package import package
from tritonctl.server import free_port

boto3 = pytest.importorskip(
    "boto3", reason="the cloud SDKs are in the `cloud` extra: pip install -e '.[cloud]'"
)
pytest.importorskip("moto", reason="moto (the AWS API emulator) is in the `cloud` extra")

BUCKET = "amzn-s3-demo-bucket"
REGION = "us-east-1"


def _die_with_pytest() -> None:
    """In the child between fork and exec: SIGKILL it when pytest dies, even by SIGKILL, so no
    moto_server outlives a killed test run (a finally block does not run then)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server (the AWS API emulator) on a free loopback port, with fake credentials.
    Stopped, with its process group, however the module ends; it carries the session's tag
    (inherited), so the session's own check would also find it."""
    port = free_port()
    binary = Path(sys.executable).with_name("moto_server")
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    with open(tmp_path_factory.mktemp("moto") / "moto.log", "wb") as log:
        process = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_pytest,
        )
        try:
            os.environ.update(
                AWS_ACCESS_KEY_ID="emulator",
                AWS_SECRET_ACCESS_KEY="emulator",
                AWS_DEFAULT_REGION=REGION,
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("moto_server did not start") from None
                    time.sleep(0.1)
            url = f"http://127.0.0.1:{port}"
            boto3.client("s3", endpoint_url=url, region_name=REGION).create_bucket(Bucket=BUCKET)
            yield url
        finally:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="module")
def digits_package(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sagemaker-digits")
    package("sagemaker", model_repository, "digit_classifier", folder)
    return folder


@pytest.mark.parametrize("kind", ["realtime", "serverless", "async"])
def test_deploy_reaches_in_service_on_the_emulator(
    moto_server: str, digits_package: Path, tmp_path: Path, kind: str
) -> None:
    folder = tmp_path / "pkg"
    shutil.copytree(digits_package, folder)
    # One model name per kind: the emulator, like SageMaker, refuses to create a model twice.
    for name in (
        "create-model.json",
        f"endpoint-config-{kind}.json",
        f"create-endpoint-{kind}.json",
    ):
        text = (folder / name).read_text().replace("tritonctl-digit-classifier", f"digits-{kind}")
        (folder / name).write_text(text)
    described = deploy_sagemaker(folder, kind=kind, endpoint_url=moto_server, log=lambda _: None)
    assert described["EndpointStatus"] == "InService"
    sagemaker = boto3.client("sagemaker", endpoint_url=moto_server, region_name=REGION)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert ("ServerlessConfig" in variant) == (kind == "serverless")
    assert ("AsyncInferenceConfig" in config) == (kind == "async")


def test_deploy_refuses_a_package_that_does_not_validate(
    moto_server: str, digits_package: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pkg"
    shutil.copytree(digits_package, folder)
    body = (folder / "create-model.json").read_text().replace('"s3://', '"gs://')
    (folder / "create-model.json").write_text(body)
    with pytest.raises(DeployError, match="does not match Url's pattern"):
        deploy_sagemaker(folder, endpoint_url=moto_server, log=lambda _: None)


def test_cli_deploy_target_sagemaker(
    moto_server: str, digits_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "deploy",
            "--target",
            "sagemaker",
            "--package",
            str(digits_package),
            "--endpoint-url",
            moto_server,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "InService" in out and f"emulator at {moto_server}" in out


@pytest.mark.server
@pytest.mark.slow
def test_what_the_emulator_holds_is_what_the_contract_tests_serve(
    moto_server: str, digits_package: Path, tmp_path: Path, sagemaker_digits
) -> None:  # type: ignore[no-untyped-def]
    """Deploy, then fetch the archive and environment back from the emulator: the archive
    unpacks (as SageMaker unpacks it into /opt/ml/model) to exactly the folder, and the
    environment is exactly the one, that ``sagemaker_digits`` (the contract tests' server,
    started as SageMaker starts it) serves digits from. Checked here by serving them."""
    import json

    folder = tmp_path / "pkg"
    shutil.copytree(digits_package, folder)
    for name in (
        "create-model.json",
        "endpoint-config-realtime.json",
        "create-endpoint-realtime.json",
    ):
        text = (folder / name).read_text().replace("tritonctl-digit-classifier", "digits-fetched")
        (folder / name).write_text(text)
    deploy_sagemaker(folder, endpoint_url=moto_server, log=lambda _: None)
    sagemaker = boto3.client("sagemaker", endpoint_url=moto_server, region_name=REGION)
    container = sagemaker.describe_model(ModelName="digits-fetched")["PrimaryContainer"]
    bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
    archive = tmp_path / "model.tar.gz"
    boto3.client("s3", endpoint_url=moto_server, region_name=REGION).download_file(
        bucket, key, str(archive)
    )
    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    served, started = sagemaker_digits
    served_dir = served.folder / "model"

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        }

    assert files(unpacked) == files(served_dir)
    assert container["Environment"] == json.loads((served.folder / "environment.json").read_text())
    _, pngs, _ = digit_images(4)
    assert started.endpoint.invoke({"IMAGE": column(pngs)}, binary=True)["LABELS"].shape == (4, 3)
