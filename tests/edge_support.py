"""What the edge tests share: the bundles the build made, and the inputs the server refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tritonctl.recipes.edge import edge_dir, report_dir

TEXT = "text_encoder-onnxruntime-int8"
DIGITS = "digits_student-onnxruntime-fp32"
DIGITS_LITERT = "digits_teacher-litert-static_int8"

#: the served tokenizer's refusals (python_backends/tokenizer/model.py), item by item
BAD_TEXTS: dict[str, tuple[Any, str]] = {
    "empty": ("", "TEXT item 0 is empty or whitespace only: nothing to embed"),
    "whitespace": (" \t\n ", "TEXT item 0 is empty or whitespace only: nothing to embed"),
    "invalid utf-8": (
        b"ok \xff\xfe",
        "TEXT item 0 is not valid UTF-8: byte 0xff at offset 3 (invalid start byte)",
    ),
    "lone surrogate": ("a\udc80b", "TEXT item 0 is not valid UTF-8: byte 0xed at offset 1"),
    "zero-width only": (
        "\u200b\ufeff",
        "TEXT item 0 has no content: only whitespace or characters the normaliser drops",
    ),
    "too long": ("x" * (256 * 1024 + 1), "TEXT item 0 is too long: 262145 bytes (limit 262144)"),
}


def report() -> dict[str, Any]:
    return dict(json.loads((report_dir() / "build_report.json").read_text()))


def built_bundles() -> dict[str, Path]:
    """Every bundle the last ``tritonctl build edge`` made, by name."""
    return {name: edge_dir() / name for name in report()["bundles"]}
