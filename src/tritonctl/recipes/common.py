"""What both recipes share: the build error and the hash of their sources for the stamp."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


class BuildError(RuntimeError):
    """A recipe produced something that failed its numerical check or a gate."""


def hash_sources(digest: Any, sources: Iterable[Path]) -> None:
    """Feed each file's name and bytes into ``digest`` (a ``hashlib`` object), in order."""
    for source in sources:
        digest.update(source.name.encode() + source.read_bytes())
