"""Every dependency the project installs has a lower and an upper bound (SECURITY.md: "pinned to
tested ranges"): pyproject.toml's dependencies, extras and build requirements, and the
requirements files the images and tools install from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the dev extra installs tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT_FILES = sorted(
    [*ROOT.glob("docker/*requirements*.txt"), *ROOT.glob("helm/*requirements*.txt")]
)
UPPER = ("<", "<=", "~=", "===")


def declared() -> list[tuple[str, str]]:
    """(where, requirement) for every requirement the project declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = [("build-system", r) for r in project["build-system"]["requires"]]
    found += [("dependencies", r) for r in project["project"]["dependencies"]]
    for extra, requirements in project["project"]["optional-dependencies"].items():
        found += [(f"extra {extra}", r) for r in requirements]
    for path in REQUIREMENT_FILES:
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                found.append((str(path.relative_to(ROOT)), line))
    return found


def bounded(requirement: Requirement) -> tuple[bool, bool]:
    """(has a lower bound, has an upper bound)."""
    specs = list(requirement.specifier)
    exact = any(s.operator in ("==", "===") for s in specs)
    lower = exact or any(s.operator in (">", ">=", "~=") for s in specs)
    upper = exact or any(s.operator in UPPER for s in specs)
    return lower, upper


def test_the_requirement_files_are_found() -> None:
    names = {p.name for p in REQUIREMENT_FILES}
    assert {"requirements.txt", "locust-requirements.txt"} <= names
    assert len(declared()) > 30


@pytest.mark.parametrize(("where", "line"), declared(), ids=lambda v: str(v))
def test_every_dependency_has_lower_and_upper_bounds(where: str, line: str) -> None:
    requirement = Requirement(line)
    lower, upper = bounded(requirement)
    assert lower and upper, f"{where}: {line!r} needs both a lower and an upper bound"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("jsonschema>=4.23", (True, False)),
        ("fastapi", (False, False)),
        ("torch==2.13.*", (True, True)),
        ("numpy>=1.26,<2", (True, True)),
        ("tensorrt>=10.3,<12; sys_platform == 'linux'", (True, True)),
    ],
)
def test_the_bound_check_itself(line: str, expected: tuple[bool, bool]) -> None:
    assert bounded(Requirement(line)) == expected
