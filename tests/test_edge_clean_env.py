"""A bundle copied to an empty folder runs in a fresh virtual environment holding only its runtime.

For one text bundle (ONNX Runtime + tokenizers) and one image bundle (LiteRT + Pillow): a new
venv gets exactly the bundle's ``requirements.txt`` (pip, from its cache or PyPI), then the
bundle's CLI runs there in isolated mode (``python -I``: no user site, no PYTHONPATH, no
current-directory surprises) and must give the answers the project's own environment gives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

from tests.edge_support import built_bundles
from tritonctl.edge.evaluate import load_runner

pytestmark = pytest.mark.slow
BUNDLES = ("text_encoder-onnxruntime-int8", "digits_teacher-litert-static_int8")
FORBIDDEN = {"torch", "tritonctl", "tritonclient", "onnx", "transformers", "litert-torch"}


@pytest.fixture(scope="module")
def edge_bundles(model_repository: Path) -> dict[str, Path]:
    """The bundles ``tritonctl build edge`` made (the ``model_repository`` fixture builds all)."""
    return built_bundles()


def fresh_venv(folder: Path, requirements: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    python = folder / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(requirements)],
        check=True, env=env, timeout=600,
    )  # fmt: skip
    return python


@pytest.mark.parametrize("name", BUNDLES)
def test_a_copied_bundle_runs_in_a_venv_with_only_its_runtime(
    edge_bundles: dict[str, Path], tmp_path: Path, name: str
) -> None:
    if name not in edge_bundles:
        pytest.skip(f"{name} was not built (see reports/edge/build_report.json 'not_built')")
    folder = tmp_path / "empty" / name
    shutil.copytree(edge_bundles[name], folder)
    python = fresh_venv(tmp_path / "venv", folder / "requirements.txt")
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    packages = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert not packages & FORBIDDEN, packages & FORBIDDEN

    manifest = json.loads((folder / "manifest.json").read_text())
    command = [str(python), "-I", "runner.py"]
    if manifest["task"] == "embed":
        texts = ["A cat sat on the mat.", "Stock markets fell sharply today."]
        command += ["embed", *texts]
    else:
        images = sorted((folder / "samples").glob("*.png"))
        command += ["classify", *(str(p) for p in images)]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300, env={})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]

    reference = load_runner(edge_bundles[name]).Bundle(edge_bundles[name], threads=1)
    if manifest["task"] == "embed":
        vectors = np.array([line["embedding"] for line in lines])
        np.testing.assert_allclose(vectors, reference.embed(texts), atol=1e-4)
    else:
        labels, _ = reference.classify([p.read_bytes() for p in images])
        assert [line["top_k"][0][0] for line in lines] == list(labels[:, 0])
        # The samples are one held-out image per class, named by their label.
        right = sum(line["top_k"][0][0] == Path(line["image"]).stem[-1] for line in lines)
        assert right >= len(lines) - 1

    # The same venv refuses a tampered bundle at load, with exit code 2.
    model = folder / manifest["model"]["file"]
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    refused = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=300, env={}
    )
    assert refused.returncode == 2 and "does not match manifest.json" in refused.stderr
    assert sys.executable != str(python)
