"""Shared fixtures: the real model repository, built once, and one real Triton server over it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tritonctl import paths
from tritonctl.server import LocalTriton

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TRITONCTL_ROOT", str(ROOT))


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """``model_repository/`` with every recipe built (a no-op when already up to date)."""
    from tritonctl.build import RECIPES, build
    from tritonctl.repository import sync_python_backends

    repository = ROOT / "model_repository"
    for name in RECIPES:
        build(name, repository)
    sync_python_backends(repository, paths.python_backends())
    return repository


@pytest.fixture(scope="session")
def triton(model_repository: Path) -> Iterator[LocalTriton]:
    """One real tritonserver serving the whole repository for the test session."""
    with LocalTriton(model_repository, exit_timeout=10) as server:
        yield server
