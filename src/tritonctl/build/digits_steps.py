"""The digits build's heavy steps: train, optimize, export, check, time, report, profile.

``tritonctl.build.digits`` orchestrates them; see its docstring for the outputs and gates.
"""

from __future__ import annotations

import copy
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tritonctl.build import digits_data, digits_onnx, digits_serving
from tritonctl.build.digits import (
    CHANNEL_KEEP,
    DEFAULT_POINTS,
    GATE_POINTS,
    PRUNE_AMOUNT,
    TEACHER_MIN_ACCURACY,
    VARIANTS,
    default_variant,
)
from tritonctl.build.digits_data import Digits
from tritonctl.build.digits_train import (
    STUDENT,
    TEACHER,
    DigitsCNN,
    accuracy,
    channel_prune,
    macs,
    magnitude_prune,
    make_permanent,
    parameters,
    seed_everything,
    train,
    weight_sparsity,
)
from tritonctl.console import progress


def train_all(data: Digits, seed: int) -> dict[str, DigitsCNN]:
    seed_everything(seed)
    with progress() as bars:
        teacher = train(
            DigitsCNN(TEACHER),
            data.train,
            epochs=40,
            lr=2e-3,
            seed=seed,
            progress=bars,
            label="teacher",
        )

        torch.manual_seed(seed + 1)
        student = DigitsCNN(STUDENT)
        student = train(
            student,
            data.train,
            epochs=80,
            lr=5e-3,
            seed=seed + 1,
            progress=bars,
            label="student (KD)",
            teacher=teacher,
        )

        pruned = magnitude_prune(copy.deepcopy(teacher), PRUNE_AMOUNT)
        pruned = train(
            pruned,
            data.train,
            epochs=15,
            lr=5e-4,
            seed=seed + 2,
            progress=bars,
            label="pruned fine-tune",
        )
        make_permanent(pruned)

        narrow = channel_prune(teacher, CHANNEL_KEEP)
        narrow = train(
            narrow,
            data.train,
            epochs=20,
            lr=1e-3,
            seed=seed + 3,
            progress=bars,
            label="channels fine-tune",
        )
    return {"teacher": teacher, "student": student, "pruned": pruned, "pruned_channels": narrow}


def export_all(
    models: dict[str, DigitsCNN], data: Digits, repository: Path, work: Path
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with progress() as bars:
        task = bars.add_task("export, check, time", total=len(VARIANTS))
        for variant in VARIANTS:
            path = repository / digits_serving.model_name(variant) / "1" / "model.onnx"
            if variant == "int8":
                teacher_onnx = (
                    repository / digits_serving.model_name("teacher") / "1" / "model.onnx"
                )
                digits_onnx.quantize(teacher_onnx, path, data.train.x, work)
                diff = None
            else:
                model = models[variant]
                digits_onnx.export(model, path)
                diff = digits_onnx.verify(model, path, data.test.x)
            acc, predictions = digits_onnx.onnx_accuracy(path, data.test.x, data.test.y)
            results[variant] = {
                "onnx_bytes": path.stat().st_size,
                # Zeroed weights are stored dense; compressed size shows what sparsity saves.
                "onnx_gzip_bytes": len(gzip.compress(path.read_bytes(), mtime=0)),
                "max_abs_diff_vs_torch": diff,
                "accuracy": acc,
                "predictions": predictions,
                **digits_onnx.timing(path, data.test.x),
            }
            bars.advance(task)
    return results


def report(
    models: dict[str, DigitsCNN], variants: dict[str, dict[str, Any]], data: Digits, seed: int
) -> dict[str, Any]:
    teacher = models["teacher"]
    rows: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        model = models.get(variant, teacher)
        measured = {k: v for k, v in variants[variant].items() if k != "predictions"}
        rows[variant] = {
            "parameters": parameters(model),
            "nonzero_parameters": parameters(model, nonzero=True),
            "macs": macs(model.width),
            "torch_accuracy": accuracy(model, data.test) if variant != "int8" else None,
            **measured,
        }
    rows["int8"]["agreement_with_teacher"] = float(
        (variants["int8"]["predictions"] == variants["teacher"]["predictions"]).mean()
    )
    teacher_acc = rows["teacher"]["accuracy"]
    for row in rows.values():
        row["points_below_teacher"] = round((teacher_acc - row["accuracy"]) * 100, 4)
    sparsity = weight_sparsity(models["pruned"])
    rows["pruned"]["weight_sparsity"] = sparsity
    gates = {
        f"teacher accuracy >= {TEACHER_MIN_ACCURACY:.0%}": teacher_acc >= TEACHER_MIN_ACCURACY,
        "student has >= 4x fewer parameters": rows["student"]["parameters"] * 4
        <= rows["teacher"]["parameters"],
        "pruned weight sparsity >= 50%": sparsity >= 0.5,
        "pruned_channels has fewer MACs": rows["pruned_channels"]["macs"] < rows["teacher"]["macs"],
    }
    for variant in VARIANTS[1:]:
        gates[f"{variant} within {GATE_POINTS} points of teacher"] = (
            rows[variant]["points_below_teacher"] <= GATE_POINTS
        )
    return {
        "recipe": "digits",
        "seed": seed,
        "split": {"train": len(data.train), "validation": len(data.val), "test": len(data.test)},
        "teacher_accuracy": teacher_acc,
        "gate_points": GATE_POINTS,
        "gates": gates,
        "default_variant": default_variant(rows),
        "default_rule": (
            f"fewest MACs among variants within {DEFAULT_POINTS} points of the teacher's held-out "
            "accuracy; ties: smaller ONNX file"
        ),
        "variants": rows,
    }


def reference_profile(model: Path, data: Digits) -> dict[str, Any]:
    """Predicted-class distribution and input-intensity histogram on the validation split."""
    predictions = digits_onnx.run(model, data.val.x).argmax(1)
    classes = np.bincount(predictions, minlength=10) / len(predictions)
    edges = np.arange(18) - 0.5
    counts, _ = np.histogram(data.val.x, bins=edges)
    return {
        "format": 1,
        "model": str(model),
        "split": "validation",
        "samples": len(data.val),
        "labels": digits_data.CLASSES,
        "predicted_class_distribution": [round(float(f), 6) for f in classes],
        "input_intensity": {
            "bin_edges": [float(e) for e in edges],
            "fractions": [round(float(f), 6) for f in counts / counts.sum()],
        },
    }
