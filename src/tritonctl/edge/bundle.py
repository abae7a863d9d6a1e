"""Assemble one self-contained bundle folder: model, pre/post-processing, samples, manifest.

The pre- and post-processing the runner applies comes from the served repository itself: the
tokenizer file and its limits (``tokenizer/config.pbtxt`` parameters), and for images a copy of
``python_backends/image_preprocess/model.py`` and ``classify_postprocess/model.py`` (their pure
functions run outside Triton), so a bundle decodes, refuses and ranks exactly as the server.
"""

from __future__ import annotations

import datetime
import json
import platform
import shutil
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tritonctl import __version__, paths
from tritonctl.edge import runner
from tritonctl.model_config import load_config

#: the runner's third-party imports per task and runtime: what a clean environment installs
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert"}
TASK_PACKAGES = {"embed": "tokenizers", "classify": "pillow"}


@dataclass(frozen=True)
class Spec:
    """One bundle: ``model`` converted for ``runtime`` at ``precision``.

    ``source`` is the served ONNX model it comes from (``model_repository/<source>/1``) and
    ``served`` the ensemble whose answers it must reproduce.
    """

    model: str
    runtime: str
    precision: str
    source: str
    served: str

    @property
    def name(self) -> str:
        return f"{self.model}-{self.runtime}-{self.precision}"

    @property
    def task(self) -> str:
        return "embed" if self.model == "text_encoder" else "classify"


def _parameters(model: str, repository: Path) -> dict[str, str]:
    config = load_config(repository / model / "config.pbtxt")
    return {key: value.string_value for key, value in config.parameters.items()}


def preprocessing(task: str, repository: Path) -> dict[str, Any]:
    """The served preprocessing's settings, read from its ``config.pbtxt``."""
    if task == "embed":
        params = _parameters("tokenizer", repository)
        return {
            "tokenizer": "tokenizer.json",
            "max_length": int(params["max_length"]),
            "max_text_bytes": int(params["max_text_bytes"]),
            "max_text_chars": int(params.get("max_text_chars") or 16 * int(params["max_length"])),
            "length_buckets": [int(b) for b in params["length_buckets"].split(",")],
        }
    from tritonctl.drift import backend_module

    defaults = backend_module("image_preprocess")
    params = _parameters("image_preprocess", repository)
    return {
        "module": "image_preprocess.py",
        "max_image_pixels": int(params.get("max_image_pixels") or defaults.DEFAULT_MAX_PIXELS),
        "max_image_bytes": int(params.get("max_image_bytes") or defaults.DEFAULT_MAX_BYTES),
    }


def postprocessing(task: str, repository: Path, *, pooling_in_graph: bool) -> dict[str, Any]:
    if task == "embed":
        return {"pooling": "in_graph" if pooling_in_graph else "runner"}
    top_k = _parameters("classify_postprocess", repository).get("top_k") or "3"
    return {"module": "classify_postprocess.py", "top_k": int(top_k)}


def copy_support_files(spec: Spec, folder: Path, repository: Path) -> None:
    """The runner and the processing files next to the model."""
    shutil.copyfile(Path(runner.__file__), folder / "runner.py")
    if spec.task == "embed":
        shutil.copyfile(
            repository / "tokenizer" / "1" / "tokenizer.json", folder / "tokenizer.json"
        )
    else:
        backends = paths.python_backends()
        for name in ("image_preprocess", "classify_postprocess"):
            shutil.copyfile(backends / name / "model.py", folder / f"{name}.py")


def requirements(spec: Spec) -> list[str]:
    """Exact versions of what the runner imports, as installed where the bundle was built."""
    names = ["numpy", TASK_PACKAGES[spec.task], RUNTIME_PACKAGES[spec.runtime]]
    return [f"{name}=={version(name)}" for name in names]


def write_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Checksum every file in ``folder`` into ``manifest.json``; return the manifest."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != runner.MANIFEST)
    manifest["files"] = {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": runner.sha256(p)}
        for p in files
    }
    (folder / runner.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def manifest(
    spec: Spec, model: dict[str, Any], repository: Path, stamp: str, **extra: Any
) -> dict[str, Any]:
    source = repository / spec.source / "1" / "model.onnx"
    runtime_package = RUNTIME_PACKAGES[spec.runtime]
    return {
        "format": runner.FORMAT,
        "name": spec.name,
        "task": spec.task,
        "precision": spec.precision,
        "runtime": {
            "name": spec.runtime,
            "package": runtime_package,
            "version": version(runtime_package),
        },
        "model": model,
        "preprocessing": preprocessing(spec.task, repository),
        "postprocessing": postprocessing(
            spec.task, repository, pooling_in_graph=extra.pop("pooling_in_graph", False)
        ),
        "source": {
            "served_model": spec.source,
            "served_ensemble": spec.served,
            "file": str(source.relative_to(repository.parent)) if source.exists() else None,
            "sha256": runner.sha256(source) if source.exists() else None,
        },
        "requirements": requirements(spec),
        "build": {
            "stamp": stamp,
            "tritonctl": __version__,
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        },
        **extra,
    }
