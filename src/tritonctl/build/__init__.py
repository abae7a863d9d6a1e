"""Conversion recipes: each turns a real model into artefacts in ``model_repository/``.

A recipe is a module here with ``build(repository: Path, *, force: bool = False) -> dict``
that returns its report (also written as JSON under ``reports/``). Re-running with unchanged
inputs is a no-op.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: recipe name -> module in this package
RECIPES = {
    "text-embedding": "text_embedding",
    "digits": "digits",
    "adaptive": "adaptive",  # after both pipelines: its BLS models route to them
}


def recipe(name: str) -> Callable[..., dict[str, Any]]:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe '{name}'; choose from {', '.join(RECIPES)}")
    module = importlib.import_module(f"tritonctl.build.{RECIPES[name]}")
    return module.build


def build(name: str, repository: Path, *, force: bool = False) -> dict[str, Any]:
    return recipe(name)(repository, force=force)
