"""Matplotlib figures for reports: headless, saved as PNG files or inlined in HTML."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any


def figure(width: float = 8.0, height: float = 5.0, dpi: int = 100) -> tuple[Any, Any]:
    """A new figure and its axes on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=dpi)


def save(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG at ``path`` and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def png_bytes(fig: Any) -> bytes:
    """``fig`` as PNG bytes, freed afterwards."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` holding ``png`` inline, so the HTML page is self-contained."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
