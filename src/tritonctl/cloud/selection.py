"""The models one deployable model needs, staged as a model repository of their own.

A cloud endpoint serves one model: an ensemble and the models its steps call, nothing else. The
staged folder holds the model folders at its top (no ``config.pbtxt`` at the root), with their
built artefacts and the Python backends' current code, and is what ``model.tar.gz``, the Vertex
artifact folder and the Azure ML model are made from.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from tritonctl import paths
from tritonctl.check import check_model
from tritonctl.model_config import ConfigError
from tritonctl.repository import ModelEntry, models, sync_python_backends

#: Files never shipped: editor/tool leftovers and config backups.
EXCLUDED_SUFFIXES = (".bak", ".pyc", ".tmp")
EXCLUDED_DIRS = ("__pycache__",)


class SelectionError(ValueError):
    """The model is not in the repository, or the repository cannot be packaged."""


def closure(repository: Path, model: str) -> list[ModelEntry]:
    """``model`` and, for an ensemble, every model its steps use (recursively), by name.

    The result is sorted by name; ``model`` itself is always in it.
    """
    try:
        entries = {entry.name: entry for entry in models(repository)}
    except ConfigError as error:
        raise SelectionError(str(error)) from error
    if model not in entries:
        ensembles = sorted(n for n, e in entries.items() if e.kind == "ensemble")
        raise SelectionError(
            f"model '{model}' is not in {repository} (its ensembles: {', '.join(ensembles)})"
        )
    needed: dict[str, ModelEntry] = {}
    pending = [model]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        entry = entries.get(name)
        if entry is None:
            raise SelectionError(f"'{model}' needs model '{name}', which is not in {repository}")
        needed[name] = entry
        pending.extend(step.model_name for step in entry.config.ensemble_scheduling.step)
    return [needed[name] for name in sorted(needed)]


def shipped(path: Path) -> bool:
    return path.suffix not in EXCLUDED_SUFFIXES and not any(
        part in EXCLUDED_DIRS for part in path.parts
    )


def stage(
    repository: Path,
    model: str,
    destination: Path,
    *,
    python_sources: Path | None = None,
) -> list[ModelEntry]:
    """Write ``model`` and what it needs into ``destination`` (replaced if present).

    The repository is checked first (the same checks as ``tritonctl check``) and the Python
    backends' code is synced into it, so the staged copy is what ``tritonctl serve`` would serve.
    An ensemble gets an empty version folder ``1/``: git keeps no empty folders, and Triton with
    ``--model-namespacing`` (which the SageMaker ``serve`` script turns on) refuses an ensemble
    without one ("at least one version must be available").
    """
    repository = Path(repository)
    sources = python_sources or paths.python_backends()
    if sources.is_dir():
        sync_python_backends(repository, sources)
    selected = closure(repository, model)
    # The selected models only (the ensemble checks see their configs): checking the whole
    # repository loaded every ONNX file in it, a few seconds per package for nothing.
    configs = {entry.name: entry.config for entry in selected}
    problems = [
        problem
        for entry in selected
        for problem in check_model(entry.path, configs, sources if sources.is_dir() else None)
    ]
    if problems:
        raise SelectionError(
            "the models to package have problems (run `tritonctl build`):\n"
            + "\n".join(f"  {p}" for p in problems)
        )
    destination = Path(destination)
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for entry in selected:
        # Copies, never hard links: an edit of the staged copy must not reach the repository.
        for source in sorted(entry.path.rglob("*")):
            relative = source.relative_to(repository)
            if not shipped(relative):
                continue
            if source.is_dir():
                (destination / relative).mkdir(parents=True, exist_ok=True)
            elif source.is_file():
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination / relative)
        if entry.kind == "ensemble" and not entry.versions:
            (destination / entry.name / "1").mkdir()
    return selected


def staged_files(folder: Path) -> Iterable[Path]:
    """Every file and folder under ``folder``, sorted, for a reproducible archive."""
    return sorted(folder.rglob("*"))
