"""The model repository on disk: its models, their versions, and the Python backends' code.

Python pre/post-processing code lives in ``python_backends/<model>/``; ``sync_python_backends``
copies it into ``model_repository/<model>/<version>/`` where Triton expects it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tritonctl.backends import PYTHON_BASED_BACKENDS
from tritonctl.model_config import ModelConfig, load_config


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    config: ModelConfig

    @property
    def versions(self) -> list[Path]:
        return sorted(
            (p for p in self.path.iterdir() if p.is_dir() and p.name.isdigit()),
            key=lambda p: int(p.name),
        )

    @property
    def kind(self) -> str:
        """``ensemble``, ``python``, ``onnxruntime``, ``tensorrt`` or the backend's name."""
        if self.config.platform == "ensemble":
            return "ensemble"
        if self.config.platform == "onnxruntime_onnx" or self.config.backend == "onnxruntime":
            return "onnxruntime"
        if self.config.platform == "tensorrt_plan" or self.config.backend == "tensorrt":
            return "tensorrt"
        return self.config.backend or self.config.platform


def model_dirs(repository: Path) -> list[Path]:
    return sorted(p for p in repository.iterdir() if p.is_dir() and (p / "config.pbtxt").exists())


def models(repository: Path) -> list[ModelEntry]:
    """Every model of the repository, its config parsed (raises ``ConfigError`` on a bad one)."""
    return [ModelEntry(p.name, p, load_config(p)) for p in model_dirs(repository)]


def sync_python_backends(repository: Path, sources: Path) -> list[Path]:
    """Copy ``sources/<model>/*.py`` into every version folder of the Python model ``<model>``."""
    copied: list[Path] = []
    for folder in sorted(p for p in sources.iterdir() if p.is_dir()):
        if folder.name in PYTHON_BASED_BACKENDS:
            continue
        model_dir = repository / folder.name
        if not (model_dir / "config.pbtxt").exists():
            continue
        versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        if not versions:
            versions = [model_dir / "1"]
            versions[0].mkdir()
        for version in versions:
            for file in folder.glob("*.py"):
                target = version / file.name
                if not target.exists() or target.read_bytes() != file.read_bytes():
                    shutil.copy2(file, target)
                    copied.append(target)
    return copied
