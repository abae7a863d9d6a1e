"""The text-embedding build: its artefacts, report, gates, configs and drift profile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tritonctl.build import text_configs, text_embedding, text_tokens
from tritonctl.corpus import calibration_sentences, sentences
from tritonctl.model_config import config_text, load_config


def test_corpus_is_large_varied_and_separate_from_calibration() -> None:
    corpus = sentences()
    assert len(corpus) >= 200 and len(set(corpus)) == len(corpus)
    assert any(not s.isascii() for s in corpus)  # non-Latin scripts, emoji
    assert any(len(s.split()) > 40 for s in corpus) and any(len(s) <= 3 for s in corpus)
    assert not set(calibration_sentences()) & set(corpus)


def test_buckets() -> None:
    assert [text_tokens.bucket_for(n) for n in (1, 16, 17, 200, 256, 999)] == [
        16, 16, 32, 256, 256, 256,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def report(model_repository: Path) -> dict:
    return json.loads(text_embedding.report_path().read_text())


def test_report_meets_the_gates(report: dict) -> None:
    variants = report["variants"]
    assert {"fp32_plain", "fp32_optimized", "int8"} <= set(variants)
    for figures in variants.values():
        assert figures["size_mb"] > 0 and figures["latency_ms_b1"] > 0
        assert figures["throughput_b32_wall"] > 0
    assert variants["fp32_plain"]["min_cosine"] >= 0.9999
    assert variants["fp32_optimized"]["min_cosine"] >= 0.9999
    assert variants["int8"]["min_cosine"] >= text_embedding.MIN_COSINE_INT8
    assert report["int8_speedup_b32"] >= text_embedding.MIN_SPEEDUP_INT8
    assert variants["int8"]["size_mb"] < variants["fp32_plain"]["size_mb"] / 2
    served = [v.get("served_as") for v in variants.values()]
    assert "text_encoder" in served and "text_encoder_int8" in served
    for name in ("plain", "optimized"):
        assert report["verification"][name]["max_abs_diff"] <= 1e-3
    assert (
        report["int8_attempts"][0]["min_cosine"] < 0.99
    )  # plain dynamic quantization is not enough


def test_tensorrt_built_or_skipped_with_a_reason(report: dict) -> None:
    from tritonctl.build.text_tensorrt import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        assert report["tensorrt"]["built"] and "tensorrt_fp16" in report["variants"]
    else:
        assert report["tensorrt"] == {"built": False, "skipped_because": reason}


def test_rebuild_with_unchanged_inputs_is_a_no_op(model_repository: Path) -> None:
    model = model_repository / "text_encoder" / "1" / "model.onnx"
    before = model.stat().st_mtime_ns
    text_embedding.build(model_repository)
    assert model.stat().st_mtime_ns == before


def test_committed_configs_are_the_generated_ones(model_repository: Path) -> None:
    for config in text_configs.all_configs(with_tensorrt=False):
        path = model_repository / config.name / "config.pbtxt"
        assert path.read_text() == config_text(config), f"{path} differs from text_configs"
        load_config(path)


def test_onnx_graph_has_dynamic_axes_and_two_inputs(model_repository: Path) -> None:
    import onnx

    for name in ("text_encoder", "text_encoder_int8"):
        graph = onnx.load(
            str(model_repository / name / "1" / "model.onnx"), load_external_data=False
        ).graph
        assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
        for tensor in graph.input:
            dims = tensor.type.tensor_type.shape.dim
            assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims)
        assert [o.name for o in graph.output] == ["last_hidden_state"]


def test_reference_profile(model_repository: Path) -> None:
    from tritonctl.drift import TextProfile

    path = model_repository / "pooling" / "1" / "reference_profile.json"
    data = json.loads(path.read_text())
    centroid = np.array(data["centroid"])
    assert centroid.shape == (384,) and math.isclose(np.linalg.norm(centroid), 1.0, rel_tol=1e-4)
    histogram = data["cosine_similarity"]
    assert len(histogram["bin_edges"]) == len(histogram["fractions"]) + 1
    assert math.isclose(sum(histogram["fractions"]), 1.0, rel_tol=1e-4)
    assert sum(histogram["counts"]) == data["corpus_size"] == len(sentences())
    assert histogram["bin_edges"] == sorted(histogram["bin_edges"])
    profile = TextProfile.load(path)
    assert profile.low_threshold == pytest.approx(data["low_threshold"])
