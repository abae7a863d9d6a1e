"""Temporary copies of part of a model repository with edited configs, for benchmark and tuning runs.

Model files are symlinked (no 90 MB copies); every ``config.pbtxt`` is parsed, edited as a
``ModelConfig`` protobuf and written back with ``save_config``, never patched as text.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from tritonctl.model_config import ModelConfig, load_config, save_config

ConfigEdit = Callable[[ModelConfig], None]


def ensemble_members(repository: Path, model: str) -> list[str]:
    """``model`` and every model its ensemble steps call, recursively, in a stable order."""
    seen: list[str] = []

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.append(name)
        config = load_config(repository / name)
        for step in config.ensemble_scheduling.step:
            visit(step.model_name)

    visit(model)
    return seen


def composing_models(repository: Path, model: str) -> list[str]:
    """The non-ensemble models behind ``model`` (``model`` itself if it is not an ensemble)."""
    return [
        name
        for name in ensemble_members(repository, model)
        if load_config(repository / name).platform != "ensemble"
    ]


def _link_tree(source: Path, target: Path) -> None:
    for entry in source.iterdir():
        if entry.name in ("config.pbtxt", "config.pbtxt.bak") or entry.name.startswith("."):
            continue
        destination = target / entry.name
        if entry.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            _link_tree(entry, destination)
        else:
            os.symlink(entry.resolve(), destination)


def stage_repository(
    source: Path,
    target: Path,
    models: Iterable[str],
    edit: ConfigEdit | None = None,
    per_model: dict[str, ModelConfig] | None = None,
) -> Path:
    """Copy ``models`` (and their ensemble members) from ``source`` into ``target``.

    ``per_model`` replaces a model's config outright (the tuner's candidates); ``edit`` is then
    applied to every config (e.g. drop ``dynamic_batching``).
    """
    source, target = Path(source), Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    names: list[str] = []
    for model in models:
        names += [n for n in ensemble_members(source, model) if n not in names]
    for name in names:
        folder = target / name
        folder.mkdir()
        _link_tree(source / name, folder)
        config = ModelConfig()
        config.CopyFrom((per_model or {}).get(name) or load_config(source / name))
        if edit is not None:
            edit(config)
        save_config(config, folder)
        if config.platform == "ensemble" and not any(p.name.isdigit() for p in folder.iterdir()):
            (folder / "1").mkdir()  # Triton needs a version folder, even an empty one
    return target


def without_dynamic_batching(config: ModelConfig) -> None:
    """Configuration (c): every model schedules requests one by one."""
    config.ClearField("dynamic_batching")


def without_response_cache(config: ModelConfig) -> None:
    """Benchmarks cycle a fixed corpus: a response cache would answer from memory, not compute."""
    config.ClearField("response_cache")


def chain(*edits: ConfigEdit) -> ConfigEdit:
    def apply(config: ModelConfig) -> None:
        for edit in edits:
            edit(config)

    return apply
