"""The digits recipe's gates and its rule for choosing the served default variant."""

from __future__ import annotations

from typing import Any

from tritonctl.recipes.digits import serving
from tritonctl.recipes.stats import at_most

TEACHER_MIN_ACCURACY = 0.97
GATE_POINTS = 1.5
DEFAULT_POINTS = 0.5
PRUNE_AMOUNT = 0.6
CHANNEL_KEEP = 0.5
VARIANTS = serving.VARIANTS


def default_variant(rows: dict[str, dict[str, Any]]) -> str:
    """The served default: fewest MACs among variants within ``DEFAULT_POINTS`` of the teacher
    on the *validation* split (ties: the smaller file). The test split never chooses: it
    reports, with intervals, what the choice is worth. The teacher is always eligible."""
    eligible = [
        v
        for v in VARIANTS
        if v == "teacher" or at_most(rows[v]["validation_points_below_teacher"], DEFAULT_POINTS)
    ]
    return min(eligible, key=lambda v: (rows[v]["macs"], rows[v]["onnx_bytes"]))
