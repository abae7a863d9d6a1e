"""The models are built before pytest (``make test``), and a stale repository fails fast."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tritonctl.recipes import RECIPES, stale

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_builds_before_pytest() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^test: (.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert target is not None
    assert "build" in target.group(1).split()
    assert "pytest" in target.group(2)
    assert re.search(r"^build: .*\n\t\$\(BIN\)/tritonctl build all$", makefile, re.M)
    # CI runs the README's test command, which is `make test`.
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_the_fixture_does_not_build() -> None:
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    assert "stale(" in conftest and "build(" not in conftest


def test_an_empty_repository_is_stale_for_every_pipeline(tmp_path: Path) -> None:
    assert stale(tmp_path) == [name for name in RECIPES if name != "adaptive"]


def test_the_built_repository_is_stale_only_where_an_input_changed(
    model_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tritonctl.recipes.text import recipe as text

    assert stale(model_repository) == []
    monkeypatch.setattr(text, "input_hash", lambda: "inputs of another build")
    assert stale(model_repository) == ["text-embedding"]
