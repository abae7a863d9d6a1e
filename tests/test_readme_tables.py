"""The README's build tables are generated from the committed build reports, and agree."""

from __future__ import annotations

import json

import pytest

from tritonctl.recipes import readme
from tritonctl.recipes.digits import gates as digits_gates
from tritonctl.recipes.text import recipe as text_recipe


@pytest.fixture(scope="module")
def snapshots() -> dict[str, dict]:
    return readme.load_snapshots()


def test_readme_tables_are_the_generated_ones(snapshots: dict[str, dict]) -> None:
    text = (readme.paths.project_root() / "README.md").read_text()
    assert readme.render(text, snapshots) == text, (
        "README tables differ from docs/build_reports/: run scripts/update_readme_tables.py"
    )


def test_editing_a_figure_is_caught(snapshots: dict[str, dict]) -> None:
    text = (readme.paths.project_root() / "README.md").read_text()
    for name in readme.SOURCES:
        section = readme.section(text, name)
        edited = text.replace(section, section.replace("%", "0%", 1).replace(" MB", "0 MB", 1))
        assert edited != text and readme.render(edited, snapshots) != edited
    with pytest.raises(ValueError, match="no generated section 'text-embedding'"):
        readme.render("no markers here", snapshots)


def test_snapshots_are_builds_that_passed_their_fatal_gates(snapshots: dict[str, dict]) -> None:
    text, digits = snapshots["text-embedding"], snapshots["digits"]
    variants = text["variants"]
    assert variants["int8"]["min_cosine"] >= text_recipe.MIN_COSINE_INT8
    assert variants["fp32_plain"]["min_cosine"] >= 0.9999
    assert text["speed_gate"]["passed"] is (
        text["speed_gate"]["int8_speedup_b32"] >= text_recipe.MIN_SPEEDUP_INT8
    )
    assert all(digits["gates"].values())
    assert digits["default_variant"] == digits_gates.default_variant(digits["variants"])
    assert all("accuracy_ci95" in row for row in digits["variants"].values())


def test_snapshot_files_are_plain_json() -> None:
    for _, snapshot in readme.SOURCES.values():
        json.loads((readme.snapshot_dir() / snapshot).read_text())
