"""Static checks of a model repository, before a server ever sees it.

Each problem names the file (and line, where the config has one) so it can be fixed directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritonctl.model_config import ConfigError, ModelConfig, load_config

#: File each kind of model needs in its version folder when no ``default_model_filename`` is set.
DEFAULT_MODEL_FILES = {
    "onnxruntime_onnx": "model.onnx",
    "onnxruntime": "model.onnx",
    "tensorrt_plan": "model.plan",
    "tensorrt": "model.plan",
    "pytorch_libtorch": "model.pt",
    "python": "model.py",
}


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


def _line_of(path: Path, needle: str) -> int | None:
    try:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if needle in line:
                return number
    except OSError:
        return None
    return None


def check_model(model_dir: Path) -> list[Problem]:
    config_path = model_dir / "config.pbtxt"
    try:
        config = load_config(config_path)
    except ConfigError as error:
        return [Problem(config_path, str(error).split(": ", 1)[-1], error.line)]
    problems: list[Problem] = []
    if config.name and config.name != model_dir.name:
        problems.append(
            Problem(
                config_path,
                f"name '{config.name}' differs from its folder '{model_dir.name}'",
                _line_of(config_path, "name:"),
            )
        )
    if config.platform == "ensemble":
        return problems
    problems += _check_versions(model_dir, config, config_path)
    return problems


def _check_versions(model_dir: Path, config: ModelConfig, config_path: Path) -> list[Problem]:
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        return [Problem(model_dir, "no version folder (e.g. 1/): run `tritonctl build` first")]
    kind = config.platform or config.backend
    filename = config.default_model_filename or DEFAULT_MODEL_FILES.get(kind)
    if not filename:
        return []
    return [
        Problem(version / filename, f"missing model file for {kind} model '{model_dir.name}'")
        for version in sorted(versions)
        if not (version / filename).exists()
    ]


def check_repository(repository: Path) -> list[Problem]:
    """All problems found in ``repository``; an empty list means it is ready to serve."""
    repository = Path(repository)
    if not repository.is_dir():
        return [Problem(repository, "model repository folder does not exist")]
    model_dirs = sorted(
        p for p in repository.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    problems: list[Problem] = []
    for model_dir in model_dirs:
        if not (model_dir / "config.pbtxt").exists():
            problems.append(Problem(model_dir, "no config.pbtxt"))
            continue
        problems += check_model(model_dir)
    if not model_dirs:
        problems.append(Problem(repository, "model repository holds no model"))
    return problems
