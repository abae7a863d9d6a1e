"""``tritonctl build digits``: a digit classifier and its optimized variants, served as ensembles.

Trains on scikit-learn's bundled digits (offline, fixed-seed stratified split) a teacher CNN and
four variants: a distilled ``student`` (≥4× fewer parameters), a magnitude-``pruned`` teacher
(≥50% zero weights, fine-tuned), a channel-pruned teacher (``pruned_channels``: really narrower,
fewer MACs) and a static ``int8`` teacher (ONNX Runtime QDQ, calibrated on the training split).
Each is exported to ONNX, checked against PyTorch, timed, and must stay within
``GATE_POINTS`` of the teacher's held-out accuracy, or the build fails.

Outputs:

- ``model_repository/digits_<variant>/1/model.onnx`` and every digits ``config.pbtxt``;
- ``reports/digits/build_report.json``, ``accuracy_vs_latency.png``, and ``test_set.npz``
  (held-out ``images`` uint8 [N, 8, 8] on 0–16, ``labels`` [N], and ``pred_<variant>``: each
  variant's in-process ONNX Runtime predictions);
- ``model_repository/classify_postprocess/1/reference_profile.json``: the reference for drift
  monitoring, computed on the validation split with the default variant::

      {
        "format": 1,
        "model": "digits_student",          # the variant digit_classifier serves
        "split": "validation", "samples": 270,
        "labels": ["0", ..., "9"],
        "predicted_class_distribution": [10 fractions summing to 1, in "labels" order],
        "input_intensity": {                # pixels of the preprocessed 8×8 images
          "bin_edges": [-0.5, 0.5, ..., 16.5],   # 17 bins, one per integer level 0..16
          "fractions": [17 fractions summing to 1]
        }
      }

The default variant (what ``digit_classifier`` serves) is chosen by a deterministic rule: the
variant with the fewest multiply-accumulates among those within ``DEFAULT_POINTS`` of the
teacher's held-out accuracy (ties: the smaller ONNX file). Measured latencies are reported but
not used to choose, since timings on shared CPUs vary from run to run.

Re-running with an unchanged recipe (its source and seed) and all outputs present is a no-op.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from tritonctl import paths
from tritonctl.build import digits_data, digits_onnx, digits_serving
from tritonctl.build.digits_data import SEED, Digits
from tritonctl.build.digits_onnx import BuildError
from tritonctl.build.digits_report import chart, print_table
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
from tritonctl.console import console, progress

TEACHER_MIN_ACCURACY = 0.97
GATE_POINTS = 1.5
DEFAULT_POINTS = 0.5
PRUNE_AMOUNT = 0.6
CHANNEL_KEEP = 0.5
VARIANTS = digits_serving.VARIANTS


def report_dir() -> Path:
    return paths.reports_dir() / "digits"


def recipe_hash(seed: int = SEED) -> str:
    """Hash of everything the build's result depends on: this recipe's code, seed, libraries."""
    digest = hashlib.sha256(f"{seed}|{torch.__version__}|{onnxruntime.__version__}".encode())
    for source in sorted(Path(__file__).parent.glob("digits*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def outputs(repository: Path) -> list[Path]:
    files = [repository / digits_serving.model_name(v) / "1" / "model.onnx" for v in VARIANTS]
    files += [repository / digits_serving.POSTPROCESS / "1" / "reference_profile.json"]
    return files + [report_dir() / name for name in ("build_report.json", "test_set.npz")]


def _stamp_path() -> Path:
    return report_dir() / "stamp.json"


def up_to_date(repository: Path) -> bool:
    try:
        stamp = json.loads(_stamp_path().read_text())
    except (OSError, ValueError):
        return False
    fresh = stamp == {"recipe": recipe_hash(), "repository": str(repository.resolve())}
    return fresh and all(path.exists() for path in outputs(repository))


def build(repository: Path, *, force: bool = False, seed: int = SEED) -> dict[str, Any]:
    """Train, optimize, export, check and serve the digits models; returns the report."""
    repository = Path(repository)
    if not force and seed == SEED and up_to_date(repository):
        console.print("[green]digits[/]: up to date (recipe and seed unchanged)")
        return json.loads((report_dir() / "build_report.json").read_text())
    started = time.perf_counter()
    data = digits_data.load(seed)
    models = _train_all(data, seed)
    work = paths.cache_dir() / "digits"
    variants = _export_all(models, data, repository, work)
    report = _report(models, variants, data, seed)
    report["build_seconds"] = round(time.perf_counter() - started, 1)

    out = report_dir()
    out.mkdir(parents=True, exist_ok=True)
    predictions = {f"pred_{v}": variants[v]["predictions"] for v in VARIANTS}
    digits_data.save_test_set(data.test, out / "test_set.npz", **predictions)
    (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    chart(report, out / "accuracy_vs_latency.png")
    failures = [gate for gate, passed in report["gates"].items() if not passed]
    if failures:
        raise BuildError(f"digits build failed its gates: {', '.join(failures)} (see {out})")

    default = report["default_variant"]
    digits_serving.write_configs(repository, default)
    profile = reference_profile(
        repository / digits_serving.model_name(default) / "1" / "model.onnx", data
    )
    profile["model"] = digits_serving.model_name(default)
    profile_path = repository / digits_serving.POSTPROCESS / "1" / "reference_profile.json"
    profile_path.write_text(json.dumps(profile, indent=2) + "\n")
    _stamp_path().write_text(
        json.dumps({"recipe": recipe_hash(), "repository": str(repository.resolve())})
    )
    console.print(
        f"[green]digits[/]: built in {report['build_seconds']} s; default variant {default}"
    )
    return report


def _train_all(data: Digits, seed: int) -> dict[str, DigitsCNN]:
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


def _export_all(
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
                "max_abs_diff_vs_torch": diff,
                "accuracy": acc,
                "predictions": predictions,
                **digits_onnx.timing(path, data.test.x),
            }
            bars.advance(task)
    return results


def _report(
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
    for variant in VARIANTS:
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


def default_variant(rows: dict[str, dict[str, Any]]) -> str:
    eligible = [v for v in VARIANTS if rows[v]["points_below_teacher"] <= DEFAULT_POINTS]
    return min(eligible, key=lambda v: (rows[v]["macs"], rows[v]["onnx_bytes"]))


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
