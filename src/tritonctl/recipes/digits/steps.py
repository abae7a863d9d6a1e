"""The digits build's heavy steps: train, optimize, export, check, time, report, profile.

``tritonctl.recipes.digits.recipe`` orchestrates them; see its docstring for the outputs and gates.
"""

from __future__ import annotations

import copy
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tritonctl.console import progress
from tritonctl.recipes.digits import (
    data as digits_data,
)
from tritonctl.recipes.digits import (
    onnx as digits_onnx,
)
from tritonctl.recipes.digits import (
    serving as digits_serving,
)
from tritonctl.recipes.digits.data import Digits
from tritonctl.recipes.digits.gates import (
    CHANNEL_KEEP,
    DEFAULT_POINTS,
    GATE_POINTS,
    PRUNE_AMOUNT,
    TEACHER_MIN_ACCURACY,
    VARIANTS,
    default_variant,
)
from tritonctl.recipes.digits.train import (
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
from tritonctl.recipes.stats import at_least, at_most, mcnemar_exact, wilson


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
            val_acc, val_predictions = digits_onnx.onnx_accuracy(path, data.val.x, data.val.y)
            results[variant] = {
                "onnx_bytes": path.stat().st_size,
                # Zeroed weights are stored dense; compressed size shows what sparsity saves.
                "onnx_gzip_bytes": len(gzip.compress(path.read_bytes(), mtime=0)),
                "max_abs_diff_vs_torch": diff,
                "accuracy": acc,
                "predictions": predictions,
                "validation_accuracy": val_acc,
                "validation_predictions": val_predictions,
                **digits_onnx.timing(path, data.test.x),
            }
            bars.advance(task)
    return results


def _paired(variant: np.ndarray, teacher: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test of a variant against the teacher on the same images."""
    test = mcnemar_exact(variant == labels, teacher == labels)
    return {
        "only_variant_right": test["only_first"],
        "only_teacher_right": test["only_second"],
        "mcnemar_p": round(float(test["p_value"]), 4),
        "significant": bool(test["p_value"] < 0.05),
    }


def _interval(predictions: np.ndarray, labels: np.ndarray) -> list[float]:
    low, high = wilson(int((predictions == labels).sum()), len(labels))
    return [round(low, 4), round(high, 4)]


def report(
    models: dict[str, DigitsCNN], variants: dict[str, dict[str, Any]], data: Digits, seed: int
) -> dict[str, Any]:
    teacher = models["teacher"]
    hidden = ("predictions", "validation_predictions")
    rows: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        model = models.get(variant, teacher)
        measured = {k: v for k, v in variants[variant].items() if k not in hidden}
        rows[variant] = {
            "parameters": parameters(model),
            "nonzero_parameters": parameters(model, nonzero=True),
            "macs": macs(model.width),
            "torch_accuracy": accuracy(model, data.test) if variant != "int8" else None,
            **measured,
            "accuracy_ci95": _interval(variants[variant]["predictions"], data.test.y),
            "validation_accuracy_ci95": _interval(
                variants[variant]["validation_predictions"], data.val.y
            ),
        }
        if variant != "teacher":
            rows[variant]["vs_teacher_test"] = _paired(
                variants[variant]["predictions"], variants["teacher"]["predictions"], data.test.y
            )
            rows[variant]["vs_teacher_validation"] = _paired(
                variants[variant]["validation_predictions"],
                variants["teacher"]["validation_predictions"],
                data.val.y,
            )
    rows["int8"]["agreement_with_teacher"] = float(
        (variants["int8"]["predictions"] == variants["teacher"]["predictions"]).mean()
    )
    teacher_acc = rows["teacher"]["accuracy"]
    teacher_val = rows["teacher"]["validation_accuracy"]
    for row in rows.values():
        row["points_below_teacher"] = round((teacher_acc - row["accuracy"]) * 100, 4)
        row["validation_points_below_teacher"] = round(
            (teacher_val - row["validation_accuracy"]) * 100, 4
        )
    sparsity = weight_sparsity(models["pruned"])
    rows["pruned"]["weight_sparsity"] = sparsity
    gates = {
        f"teacher accuracy >= {TEACHER_MIN_ACCURACY:.0%}": at_least(
            teacher_acc, TEACHER_MIN_ACCURACY
        ),
        "student has >= 4x fewer parameters": rows["student"]["parameters"] * 4
        <= rows["teacher"]["parameters"],
        "pruned weight sparsity >= 50%": at_least(sparsity, 0.5),
        "pruned_channels has fewer MACs": rows["pruned_channels"]["macs"] < rows["teacher"]["macs"],
    }
    for variant in VARIANTS[1:]:
        gates[f"{variant} within {GATE_POINTS} points of teacher"] = at_most(
            rows[variant]["points_below_teacher"], GATE_POINTS
        )
    not_significant = [v for v in VARIANTS[1:] if not rows[v]["vs_teacher_test"]["significant"]]
    return {
        "recipe": "digits",
        "seed": seed,
        "split": {"train": len(data.train), "validation": len(data.val), "test": len(data.test)},
        "teacher_accuracy": teacher_acc,
        "teacher_validation_accuracy": teacher_val,
        "gate_points": GATE_POINTS,
        "gates": gates,
        "default_variant": default_variant(rows),
        "default_rule": (
            f"fewest MACs among variants within {DEFAULT_POINTS} points of the teacher's "
            f"validation accuracy ({len(data.val)} images); ties: smaller ONNX file. The test "
            "set only reports."
        ),
        "significance": (
            f"exact McNemar against the teacher on the {len(data.test)} test images: "
            + (
                f"no difference is significant at 5 % for {', '.join(not_significant)}"
                if not_significant
                else "every variant differs significantly"
            )
            + f"; one image is {100 / len(data.test):.2f} points"
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
