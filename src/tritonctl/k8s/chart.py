"""The project's Helm chart, rendered in-process by Helm's own engine (helm-python-sdk)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tritonctl import paths

#: Files in the rendered output that are not Kubernetes objects.
NOT_MANIFESTS = ("NOTES.txt",)


class ChartError(RuntimeError):
    """The chart, or the values given to it, cannot be rendered."""


def chart_dir() -> Path:
    """``helm/tritonctl`` in the checkout."""
    return paths.project_root() / "helm" / "tritonctl"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, recursing into mappings (Helm's ``-f a -f b`` order)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_values(files: Iterable[str | Path] = (), sets: Iterable[str] = ()) -> dict[str, Any]:
    """Values from ``-f`` files then ``--set`` expressions, later ones winning, like Helm."""
    import helm_python

    values: dict[str, Any] = {}
    for file in files:
        data = yaml.safe_load(Path(file).read_text()) or {}
        if not isinstance(data, Mapping):
            raise ChartError(
                f"{file}: a values file must hold a mapping, not {type(data).__name__}"
            )
        values = deep_merge(values, data)
    for expression in sets:
        values = deep_merge(values, helm_python.parse_set_string(expression))
    return values


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "tritonctl",
    namespace: str = "default",
    chart: str | Path | None = None,
) -> dict[str, str]:
    """Template path -> rendered text, exactly as ``helm template`` renders it (schema checked)."""
    import helm_python

    path = Path(chart) if chart else chart_dir()
    try:
        with helm_python.Chart.load(path) as loaded:
            return loaded.render(dict(values or {}), name=release, namespace=namespace)
    except helm_python.HelmError as error:
        raise ChartError(str(error).strip()) from error


def manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a render, in template order (NOTES.txt and empty docs left out)."""
    objects: list[dict[str, Any]] = []
    for name in sorted(rendered):
        if name.endswith(NOT_MANIFESTS):
            continue
        for document in yaml.safe_load_all(rendered[name]):
            if document:
                objects.append(document)
    return objects


def notes(rendered: Mapping[str, str]) -> str:
    return next((text for name, text in rendered.items() if name.endswith("NOTES.txt")), "")


def to_yaml(rendered: Mapping[str, str]) -> str:
    """One multi-document YAML stream with ``# Source:`` headers, like ``helm template``."""
    parts = []
    for name in sorted(rendered):
        text = rendered[name].strip()
        if text and not name.endswith(NOT_MANIFESTS):
            for document in text.split("\n---"):
                document = document.strip().removeprefix("---").strip()
                if document:
                    parts.append(f"---\n# Source: {name}\n{document}\n")
    return "".join(parts)


def lint(
    values: Mapping[str, Any] | None = None, chart: str | Path | None = None
) -> dict[str, Any]:
    """``helm lint`` through the SDK: ``{"messages": [...], "errors": [...]}``."""
    import helm_python

    return helm_python.lint(Path(chart) if chart else chart_dir(), dict(values or {}))
