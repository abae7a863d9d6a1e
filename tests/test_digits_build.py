"""The digits build: its gates, its ONNX files, the reference profile, and the no-op rebuild."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tritonctl.model_config import load_config
from tritonctl.recipes.digits import gates
from tritonctl.recipes.digits import recipe as digits
from tritonctl.recipes.digits.serving import VARIANTS, ensemble_name, model_name


@pytest.fixture(scope="module")
def report(model_repository: Path) -> dict[str, Any]:
    return json.loads((digits.report_dir() / "build_report.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def test_set(model_repository: Path) -> dict[str, np.ndarray]:
    return dict(np.load(digits.report_dir() / "test_set.npz"))


def test_every_gate_passes(report: dict[str, Any]) -> None:
    assert report["gates"] and all(report["gates"].values()), report["gates"]
    rows = report["variants"]
    assert set(rows) == set(VARIANTS)
    assert rows["teacher"]["accuracy"] >= 0.97
    for variant, row in rows.items():
        assert row["accuracy"] >= rows["teacher"]["accuracy"] - 0.015, variant
    assert rows["student"]["parameters"] * 4 <= rows["teacher"]["parameters"]
    assert rows["pruned"]["weight_sparsity"] >= 0.5
    assert rows["pruned"]["nonzero_parameters"] < rows["teacher"]["parameters"] / 2
    # Structured pruning made the network narrower: fewer parameters *and* less compute.
    assert rows["pruned_channels"]["macs"] < rows["teacher"]["macs"] / 2
    assert rows["pruned_channels"]["parameters"] < rows["teacher"]["parameters"]
    assert rows["int8"]["onnx_bytes"] < rows["teacher"]["onnx_bytes"] / 2
    for row in rows.values():
        assert row["latency_ms_batch1"] > 0 and row["throughput_batch64"] > 0
    assert (digits.report_dir() / "accuracy_vs_latency.png").stat().st_size > 0


def test_onnx_files_reproduce_the_reported_accuracy(
    model_repository: Path, report: dict[str, Any], test_set: dict[str, np.ndarray]
) -> None:
    x = test_set["images"].astype(np.float32)[:, None]
    for variant in VARIANTS:
        path = model_repository / model_name(variant) / "1" / "model.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        predictions = session.run(["LOGITS"], {"INPUT": x})[0].argmax(1)
        np.testing.assert_array_equal(predictions, test_set[f"pred_{variant}"])
        accuracy = float((predictions == test_set["labels"]).mean())
        assert accuracy == pytest.approx(report["variants"][variant]["accuracy"]), variant


def test_report_gives_intervals_and_paired_tests(
    report: dict[str, Any], test_set: dict[str, np.ndarray]
) -> None:
    from tritonctl.recipes.stats import mcnemar_exact, wilson

    labels, teacher = test_set["labels"], test_set["pred_teacher"]
    for variant, row in report["variants"].items():
        predictions = test_set[f"pred_{variant}"]
        hits = int((predictions == labels).sum())
        assert row["accuracy_ci95"] == pytest.approx(wilson(hits, len(labels)), abs=1e-4)
        low, high = row["validation_accuracy_ci95"]
        assert low <= row["validation_accuracy"] <= high
        if variant == "teacher":
            continue
        paired = row["vs_teacher_test"]
        expected = mcnemar_exact(predictions == labels, teacher == labels)
        assert paired["mcnemar_p"] == pytest.approx(expected["p_value"], abs=1e-4)
        assert paired["significant"] == (expected["p_value"] < 0.05)
        assert (variant in report["significance"]) != paired["significant"]


def test_default_ensemble_serves_the_variant_the_rule_picks(
    model_repository: Path, report: dict[str, Any]
) -> None:
    rows = report["variants"]
    assert report["default_variant"] == gates.default_variant(rows)
    assert "validation" in report["default_rule"]
    chosen = rows[report["default_variant"]]
    assert chosen["validation_points_below_teacher"] <= gates.DEFAULT_POINTS
    steps = load_config(model_repository / ensemble_name(None)).ensemble_scheduling.step
    assert [s.model_name for s in steps][1] == model_name(report["default_variant"])
    for variant in VARIANTS:
        config = load_config(model_repository / ensemble_name(variant))
        assert config.response_cache.enable
        assert config.ensemble_scheduling.step[1].model_name == model_name(variant)
        onnx = load_config(model_repository / model_name(variant))
        assert onnx.dynamic_batching.max_queue_delay_microseconds > 0
        assert not onnx.instance_group  # Triton picks the device


def test_reference_profile_for_drift_monitoring(
    model_repository: Path, report: dict[str, Any]
) -> None:
    profile = json.loads(
        (model_repository / "classify_postprocess" / "1" / "reference_profile.json").read_text()
    )
    assert profile["model"] == model_name(report["default_variant"])
    assert profile["samples"] == report["split"]["validation"]
    classes = np.array(profile["predicted_class_distribution"])
    assert classes.shape == (10,) and classes.sum() == pytest.approx(1, abs=1e-5)
    assert (
        classes.min() > 0.05
    )  # a stratified split: every digit is predicted about 10% of the time
    histogram = profile["input_intensity"]
    assert len(histogram["bin_edges"]) == 18 and len(histogram["fractions"]) == 17
    assert sum(histogram["fractions"]) == pytest.approx(1, abs=1e-5)


def test_rebuild_with_unchanged_inputs_is_a_no_op(model_repository: Path) -> None:
    files = digits.outputs(model_repository)
    before = {path: path.stat().st_mtime_ns for path in files}
    assert digits.up_to_date(model_repository)
    digits.build(model_repository)
    assert {path: path.stat().st_mtime_ns for path in files} == before
