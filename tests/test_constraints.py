"""constraints.txt (the pins `make` installs with) agrees with pyproject.toml's ranges."""

from __future__ import annotations

import re
import sys

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tritonctl import paths

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = paths.project_root()


def pins() -> dict[str, list[tuple[Version, Marker | None]]]:
    found: dict[str, list[tuple[Version, Marker | None]]] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)\s*(?:;\s*(.+))?", line)
        assert match, f"constraints.txt: not a pin: {line!r}"
        name, version, marker = match.groups()
        found.setdefault(canonicalize_name(name), []).append(
            (Version(version), Marker(marker) if marker else None)
        )
    return found


def requirements() -> list[Requirement]:
    """The core dependencies and those of the extras the Makefile installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.search(r"^EXTRAS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert extras, "Makefile: no EXTRAS line"
    listed = list(project["dependencies"])
    for extra in extras.group(1).split(","):
        listed.extend(project["optional-dependencies"][extra.strip()])
    return [Requirement(r) for r in listed]


def test_every_pin_is_inside_the_range_pyproject_allows() -> None:
    pinned = pins()
    outside = []
    for requirement in requirements():
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        for version, marker in pinned.get(canonicalize_name(requirement.name), []):
            if marker is not None and not marker.evaluate():
                continue  # a pin for another Python
            if not requirement.specifier.contains(version, prereleases=True):
                outside.append(f"{requirement} but constraints.txt pins {version}")
    assert not outside, "regenerate constraints.txt (its header says how):\n" + "\n".join(outside)


def test_the_direct_dependencies_are_pinned_except_torch() -> None:
    pinned = pins()
    missing = sorted(
        {
            r.name
            for r in requirements()
            if canonicalize_name(r.name) not in pinned
            and canonicalize_name(r.name) not in {"torch", "tomli"}
        }
    )
    assert not missing, f"not in constraints.txt: {missing}"


def test_the_makefile_installs_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert '"-c constraints.txt" if sys.version_info[:2] == (3, 11)' in makefile
    assert "--python-version 3.11" in (ROOT / "constraints.txt").read_text()
