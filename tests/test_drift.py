"""Drift scores offline: PSI and the sliding window, and ``tritonctl drift`` on real digits and
real text (the samples are described in ``tests/text_samples.py``)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import text_samples
from tritonctl import paths
from tritonctl.cli import main
from tritonctl.corpus import sentences
from tritonctl.drift import (
    DriftError,
    noise_p99,
    read_images,
    score_digits_sample,
    score_file,
    score_text_sample,
    verdict,
)
from tritonctl.drift_scores import sensor_noise
from tritonctl.drift_window import (
    MIN_SAMPLES,
    DriftWindow,
    Throttle,
    bin_counts,
    pixel_counts,
    psi,
)


def test_psi_is_zero_for_equal_histograms_and_grows_with_the_shift() -> None:
    reference = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(reference, reference * 400) == pytest.approx(0.0, abs=1e-12)
    small = psi(reference, [110, 100, 100, 90])
    large = psi(reference, [300, 50, 30, 20])
    assert 0 < small < 0.1 < 0.25 < large


def test_psi_smooths_empty_bins_instead_of_diverging() -> None:
    value = psi([0.5, 0.5, 0.0], [0, 10, 10])
    assert np.isfinite(value) and value > 1.0


def test_psi_refuses_histograms_of_different_bins() -> None:
    with pytest.raises(ValueError, match="differ in bins"):
        psi([0.5, 0.5], [1, 2, 3])


def test_bin_counts_clip_values_outside_the_edges_into_the_end_bins() -> None:
    rows = bin_counts([-5.0, 0.2, 0.7, 9.0], [0.0, 0.5, 1.0])
    assert rows.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1]]


def test_pixel_counts_histogram_each_image() -> None:
    images = np.array([[[0, 0], [16, 16]], [[1, 1], [1, 16]]], dtype=np.float32)
    counts = pixel_counts(images, np.arange(18) - 0.5)
    assert counts.shape == (2, 17)
    assert counts[0, 0] == 2 and counts[0, 16] == 2 and counts[1, 1] == 3


def test_window_keeps_only_the_newest_items() -> None:
    window = DriftWindow([0.5, 0.5], size=4)
    window.add(bin_counts([0.0, 0.0, 0.0], [0, 1, 2]), low=[True, True, True])
    window.add(bin_counts([1.5, 1.5, 1.5], [0, 1, 2]), low=[False, False, False])
    assert window.count == 4
    assert window.total.tolist() == [1, 3]  # two of the first three fell out of the ring
    assert window.low_ratio() == pytest.approx(0.25)
    window.add(bin_counts(np.full(10, 0.5), [0, 1, 2]))  # more than fits: the newest 4
    assert window.total.tolist() == [4, 0]


def test_throttle_fires_every_n_items_or_after_the_time() -> None:
    now = [0.0]
    throttle = Throttle(every=10, seconds=5.0, clock=lambda: now[0])
    assert not throttle.due(4)
    assert throttle.due(6)
    assert not throttle.due(1)
    now[0] = 6.0
    assert throttle.due(1)


# --- real digits, offline -------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_images(model_repository: Path) -> np.ndarray:
    """The digits build's held-out test split (never seen by the reference profile)."""
    return read_images(paths.reports_dir() / "digits" / "test_set.npz")


def test_in_distribution_digits_keep_psi_below_0_1(test_images: np.ndarray) -> None:
    scores = score_digits_sample(test_images)
    assert scores.samples == len(test_images) >= 300
    assert scores.max_psi < 0.1, scores.as_dict()
    assert scores.low_confidence_ratio < 0.05


@pytest.mark.parametrize("shift", ["inverted", "noisy"])
def test_shifted_digits_drive_psi_above_0_25(test_images: np.ndarray, shift: str) -> None:
    shifted = 16 - test_images if shift == "inverted" else sensor_noise(test_images)
    scores = score_digits_sample(shifted)
    assert scores.max_psi > 0.25, scores.as_dict()
    assert scores.psi["input_intensity"] > 0.25


def test_inverted_digits_also_lose_confidence(test_images: np.ndarray) -> None:
    base = score_digits_sample(test_images).low_confidence_ratio
    assert score_digits_sample(16 - test_images).low_confidence_ratio > base + 0.05


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    pixels = np.rint(image.reshape(8, 8) * 255.0 / 16.0).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_image_folder_scores_like_its_arrays(test_images: np.ndarray, tmp_path: Path) -> None:
    for index, image in enumerate(test_images[:40]):
        (tmp_path / f"{index:03d}.png").write_bytes(_png(image))
    np.testing.assert_array_equal(read_images(tmp_path), test_images[:40])


def test_cli_prints_the_scores_as_json(
    test_images: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "noisy.npz"
    np.savez(sample, images=sensor_noise(test_images)[:, 0])
    assert main(["drift", str(sample), "--model", "digits", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "significant shift" and result["samples"] == len(test_images)


def test_cli_names_the_problem_with_a_bad_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "wrong.npz"
    np.savez(bad, other=np.zeros((3, 8, 8)))
    assert main(["drift", str(bad), "--model", "digits"]) == 2
    assert "no 'images' or 'pixels' array" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(DriftError, match="holds no image files"):
        score_file(tmp_path / "empty", "digits")


# --- real text, offline (the served FP32 encoder, in process) -------------------------------


def test_in_distribution_text_keeps_psi_below_0_1(model_repository: Path) -> None:
    scores = score_text_sample(text_samples.in_distribution())
    assert scores.samples >= 512
    assert scores.max_psi < 0.1, scores.as_dict()
    assert scores.low_confidence_ratio < 0.1  # 0.05 in the reference, by construction


@pytest.mark.parametrize("shift", sorted(text_samples.SHIFTED))
def test_shifted_text_drives_psi_above_0_25(model_repository: Path, shift: str) -> None:
    scores = score_text_sample(text_samples.SHIFTED[shift](512))
    assert scores.samples == 512
    assert scores.max_psi > 0.25, scores.as_dict()


def test_offline_text_embeddings_are_the_servers(model_repository: Path) -> None:
    """Same tokenizer, buckets, FP32 encoder and pooling as the pipeline: the reference corpus
    scores exactly as profiled (PSI 0, the reference's own 5 % below the threshold)."""
    scores = score_text_sample(sentences())
    assert scores.max_psi < 1e-3, scores.as_dict()
    assert scores.low_confidence_ratio == pytest.approx(0.05, abs=0.01)


def test_cli_scores_a_text_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = tmp_path / "code.txt"
    sample.write_text("\n".join(text_samples.source_code(300)) + "\n")
    assert main(["drift", str(sample), "--model", "text", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "significant shift" and result["samples"] == 300


# --- small samples (issue 23 item 10) -------------------------------------------------------


def strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    result: dict = json.loads(text, parse_constant=refuse)
    return result


def test_three_sentences_get_no_verdict_and_valid_json(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three ordinary sentences scored PSI 5.7 and were called a "significant shift"."""
    sample = tmp_path / "three.txt"
    sample.write_text("The weather is lovely today.\nI enjoy reading books.\nThe train was late.\n")
    assert main(["drift", str(sample), "--json"]) == 0
    captured = capsys.readouterr()
    result = strict_json(captured.out)
    assert result["verdict"] == "too few samples" and result["samples"] == 3
    assert result["max_psi"] > 0.25  # the noise that used to be reported as a shift
    assert result["min_samples"] == MIN_SAMPLES
    assert "only 3 item(s)" in result["warning"] and "only 3 item(s)" in captured.err

    assert main(["drift", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "too few samples" in out and "significant" not in out


def test_digits_json_has_no_nan(
    test_images: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "three.npz"
    np.savez(sample, images=test_images[:3, 0])
    assert main(["drift", str(sample), "--json"]) == 0
    result = strict_json(capsys.readouterr().out)
    assert result["reference_low_confidence_ratio"] is None  # not in the profile
    assert result["verdict"] == "too few samples"


def test_a_small_sample_far_beyond_the_noise_is_still_a_shift() -> None:
    """Under the minimum, a PSI over what in-distribution samples of that size reach 1 % of
    the time is a shift all the same (the 360-image and 300-line CLI tests above)."""
    assert verdict(5.7, 3) == "too few samples"
    assert verdict(0.3, 64) == "too few samples"
    assert verdict(2.5, 300) == "significant shift"
    assert verdict(0.3, MIN_SAMPLES) == "significant shift"
    assert verdict(0.05, MIN_SAMPLES) == "stable"
    assert noise_p99(2) == float("inf")
    assert noise_p99(3) > noise_p99(100) > noise_p99(400)
