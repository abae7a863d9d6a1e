"""Where the project's folders and the cache live."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository checkout: ``TRITONCTL_ROOT`` if set, else the first parent holding ``model_repository/``."""
    env = os.environ.get("TRITONCTL_ROOT")
    if env:
        return Path(env).resolve()
    for base in (Path.cwd(), Path(__file__).resolve()):
        for candidate in (base, *base.parents):
            if (candidate / "model_repository").is_dir() and (
                candidate / "python_backends"
            ).is_dir():
                return candidate
    return Path.cwd().resolve()


def model_repository() -> Path:
    return project_root() / "model_repository"


def python_backends() -> Path:
    return project_root() / "python_backends"


def cache_dir() -> Path:
    """Per-user cache for assembled server folders and build intermediates."""
    base = os.environ.get("TRITONCTL_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) / "tritonctl" if base else Path.home() / ".cache" / "tritonctl"
    if os.environ.get("TRITONCTL_CACHE"):
        root = Path(os.environ["TRITONCTL_CACHE"])
    root.mkdir(parents=True, exist_ok=True)
    return root


def reports_dir() -> Path:
    path = project_root() / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path
