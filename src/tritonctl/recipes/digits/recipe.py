"""``tritonctl build digits``: a digit classifier and its optimized variants, served as ensembles.

Trains on scikit-learn's bundled digits (offline, fixed-seed stratified split) a teacher CNN and
four variants: a distilled ``student`` (≥4× fewer parameters), a magnitude-``pruned`` teacher
(≥50% zero weights, fine-tuned), a channel-pruned teacher (``pruned_channels``: really narrower,
fewer MACs) and a static ``int8`` teacher (ONNX Runtime QDQ, calibrated on the training split).
Each is exported to ONNX, checked against PyTorch, timed, and must stay within
``GATE_POINTS`` of the teacher's held-out accuracy, or the build fails (NaN-safe comparisons;
the failed build's report goes to ``build_report.failed.json``, and neither the models nor the
report of record change).

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

The default variant (what ``digit_classifier`` serves) is chosen by a deterministic rule on the
*validation* split: the variant with the fewest multiply-accumulates among those within
``DEFAULT_POINTS`` of the teacher's validation accuracy (ties: the smaller ONNX file). The test
split is never used to choose: the report gives each variant's test accuracy with a 95 %
Wilson interval and an exact McNemar test against the teacher on the same images, and says
which differences are not significant (at 360 images, one image is 0.28 points). Measured
latencies are reported but not used to choose, since timings on shared CPUs vary.

Re-running with an unchanged recipe (its source and seed) and all outputs present is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tritonctl import paths
from tritonctl.console import console
from tritonctl.recipes.common import BuildError, hash_sources
from tritonctl.recipes.digits import serving as digits_serving
from tritonctl.recipes.digits.data import SEED

VARIANTS = digits_serving.VARIANTS


def report_dir() -> Path:
    return paths.reports_dir() / "digits"


def recipe_hash(seed: int = SEED) -> str:
    """Hash of everything the build's result depends on: this recipe's code, seed, libraries."""
    libraries = "|".join(version(name) for name in ("torch", "onnxruntime", "scikit-learn"))
    digest = hashlib.sha256(f"{seed}|{libraries}".encode())
    hash_sources(digest, sorted(Path(__file__).parent.glob("*.py")))
    hash_sources(digest, [Path(__file__).parents[1] / "stats.py"])
    return digest.hexdigest()


def outputs(repository: Path) -> list[Path]:
    files = [repository / digits_serving.model_name(v) / "1" / "model.onnx" for v in VARIANTS]
    files += [repository / digits_serving.POSTPROCESS / "1" / "reference_profile.json"]
    return files + [report_dir() / name for name in ("build_report.json", "test_set.npz")]


def _stamp_path() -> Path:
    return report_dir() / "stamp.json"


def _stamp(repository: Path, seed: int) -> dict[str, str]:
    return {"recipe": recipe_hash(seed), "repository": str(repository.resolve())}


def up_to_date(repository: Path, seed: int = SEED) -> bool:
    try:
        stamp = json.loads(_stamp_path().read_text())
    except (OSError, ValueError):
        return False
    return stamp == _stamp(repository, seed) and all(path.exists() for path in outputs(repository))


def build(repository: Path, *, force: bool = False, seed: int = SEED) -> dict[str, Any]:
    """Train, optimize, export, check and serve the digits models; returns the report."""
    repository = Path(repository)
    if not force and up_to_date(repository, seed):
        console.print("[green]digits[/]: up to date (recipe, seed and libraries unchanged)")
        return json.loads((report_dir() / "build_report.json").read_text())
    # A private work folder: two checkouts (or test sessions) may build at once.
    with tempfile.TemporaryDirectory(prefix="digits_build-", dir=paths.cache_dir()) as work:
        return _build(repository, seed, Path(work))


def _build(repository: Path, seed: int, work: Path) -> dict[str, Any]:
    # The heavy libraries load only when there is work to do: the no-op check stays quick.
    from tritonctl.recipes.digits import data as digits_data
    from tritonctl.recipes.digits import steps as digits_steps
    from tritonctl.recipes.digits.report import chart, print_table

    started = time.perf_counter()
    data = digits_data.load(seed)
    models = digits_steps.train_all(data, seed)
    # Export into a staging copy; the served repository changes only once every gate passes.
    staging = work / "repository"
    variants = digits_steps.export_all(models, data, staging, work)
    report = digits_steps.report(models, variants, data, seed)
    report["build_seconds"] = round(time.perf_counter() - started, 1)

    out = report_dir()
    out.mkdir(parents=True, exist_ok=True)
    print_table(report)
    failures = [gate for gate, passed in report["gates"].items() if not passed]
    if failures:
        # The report of record stays the last good build's; this one is kept for reading.
        failed = out / "build_report.failed.json"
        failed.write_text(json.dumps(report, indent=2) + "\n")
        raise BuildError(f"digits build failed its gates: {', '.join(failures)} (see {failed})")

    for variant in VARIANTS:
        onnx = Path(digits_serving.model_name(variant), "1", "model.onnx")
        (repository / onnx).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staging / onnx, repository / onnx)
    default = report["default_variant"]
    digits_serving.write_configs(repository, default)
    profile = digits_steps.reference_profile(
        repository / digits_serving.model_name(default) / "1" / "model.onnx", data
    )
    profile["model"] = digits_serving.model_name(default)
    profile_path = repository / digits_serving.POSTPROCESS / "1" / "reference_profile.json"
    profile_path.write_text(json.dumps(profile, indent=2) + "\n")
    # The report, its chart and the held-out predictions describe the installed models: they
    # are written only now that every gate has passed and the models are in place.
    predictions = {f"pred_{v}": variants[v]["predictions"] for v in VARIANTS}
    digits_data.save_test_set(data.test, out / "test_set.npz", **predictions)
    chart(report, out / "accuracy_vs_latency.png")
    (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "build_report.failed.json").unlink(missing_ok=True)
    _stamp_path().write_text(json.dumps(_stamp(repository, seed)))
    console.print(
        f"[green]digits[/]: built in {report['build_seconds']} s; default variant {default}"
    )
    return report
