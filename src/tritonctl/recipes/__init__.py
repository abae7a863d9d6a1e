"""Conversion recipes: each turns a real model into artefacts in ``model_repository/``.

``text/`` and ``digits/`` hold the two pipelines (each with its ``recipe`` module), ``adaptive``
the routers over both, and ``common`` what they share. A recipe is a module with
``build(repository: Path, *, force: bool = False) -> dict`` that returns its report (also written
as JSON under ``reports/``). Re-running with unchanged inputs is a no-op; ``stale`` lists the
recipes that would rebuild (the test suite refuses to start on a stale repository: ``make test``
builds first).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: recipe name -> module in this package
RECIPES = {
    "text-embedding": "text.recipe",
    "digits": "digits.recipe",
    "adaptive": "adaptive",  # after both pipelines: its BLS models route to them
    "edge": "edge",  # after both pipelines: its bundles are made from the served models
}


def recipe(name: str) -> Callable[..., dict[str, Any]]:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe '{name}'; choose from {', '.join(RECIPES)}")
    module = importlib.import_module(f"tritonctl.recipes.{RECIPES[name]}")
    return module.build


def build(name: str, repository: Path, *, force: bool = False) -> dict[str, Any]:
    return recipe(name)(repository, force=force)


def stale(repository: Path) -> list[str]:
    """The recipes whose outputs in ``repository`` are missing or were built from other inputs.

    Each answer is the one the recipe's own ``build`` would reach before deciding to rebuild,
    without building anything.
    """
    repository = Path(repository)
    checks: dict[str, Callable[[Path], bool]] = {
        "text-embedding": _text_up_to_date,
        "digits": _digits_up_to_date,
        "adaptive": _adaptive_up_to_date,
        "edge": _edge_up_to_date,
    }
    assert set(checks) == set(RECIPES), "a recipe without a staleness check"
    return [name for name in RECIPES if not checks[name](repository)]


def _text_up_to_date(repository: Path) -> bool:
    from tritonctl.recipes.text import recipe as text

    try:
        return text._up_to_date(repository, text.input_hash())
    except (OSError, ValueError):
        return False


def _digits_up_to_date(repository: Path) -> bool:
    from tritonctl.recipes.digits import recipe as digits

    return digits.up_to_date(repository)


def _adaptive_up_to_date(repository: Path) -> bool:
    """Every router whose two pipelines exist has the config ``adaptive.build`` would write."""
    from tritonctl.model_config import config_text, load_config
    from tritonctl.recipes import adaptive

    for name, (accurate, fast) in adaptive.ROUTES.items():
        if not all((repository / m / "config.pbtxt").exists() for m in (accurate, fast)):
            continue
        path = repository / name / "config.pbtxt"
        expected = config_text(
            adaptive.adaptive_config(name, load_config(repository / accurate), fast)
        )
        if not path.exists() or path.read_text() != expected:
            return False
    return True


def _edge_up_to_date(repository: Path) -> bool:
    from tritonctl.recipes import edge

    try:
        return edge._up_to_date(edge.input_hash(repository))
    except (OSError, ValueError):
        return False
