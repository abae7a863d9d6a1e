"""The cloud commands as users run them: ``tritonctl package`` and ``tritonctl serve --sagemaker``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cloud_support import column, digit_images
from tritonctl.cli import main
from tritonctl.cloud import contract
from tritonctl.server import free_port

pytest.importorskip(
    "botocore", reason="the cloud SDKs are in the `cloud` extra: pip install -e '.[cloud]'"
)


def test_package_command_writes_validates_and_prints_the_commands(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pkg"
    code = main(
        ["package", "vertex", "--model", "digit_classifier", "-o", str(out), "--project", "p1"]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "validated offline with the vertex SDK" in printed
    assert "gcloud ai models upload" in printed and "placeholders" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"] == [
        "classify_postprocess",
        "digit_classifier",
        "digits_pruned_channels",
        "image_preprocess",
    ]
    assert manifest["image"].startswith("us-central1-docker.pkg.dev/p1/")


def test_package_command_names_an_unknown_model(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["package", "sagemaker", "--model", "nope", "-o", str(tmp_path)]) == 1
    assert "'nope' is not in" in capsys.readouterr().err


@pytest.mark.server
@pytest.mark.slow
def test_serve_sagemaker_serves_and_stops_cleanly_on_sigint(
    model_repository: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    port = free_port()
    process = spawn(
        [
            sys.executable,
            "-m",
            "tritonctl",
            "serve",
            "--sagemaker",
            "--model",
            "digit_classifier",
            "--port",
            str(port),
        ]
    )
    endpoint = contract.sagemaker(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 300
    while not endpoint.healthy():
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "not ready in 300 s"
        time.sleep(0.5)
    _, pngs, _ = digit_images(2)
    assert endpoint.invoke({"IMAGE": column(pngs)}, binary=True)["LABELS"].shape == (2, 3)
    process.send_signal(signal.SIGINT)
    assert process.wait(120) == 0
    output = process.stdout.read() if process.stdout else ""
    assert "SageMaker real-time contract" in output and "0.0.0.0" in output
    assert not endpoint.healthy()
