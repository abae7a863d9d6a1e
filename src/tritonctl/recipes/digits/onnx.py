"""ONNX for the digits models: export, check against PyTorch, INT8 static quantization, timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from tritonctl.recipes.common import BuildError
from tritonctl.recipes.digits.train import logits

INPUT, OUTPUT = "INPUT", "LOGITS"
OPSET = 17
#: ONNX Runtime and PyTorch may differ by float rounding only.
MAX_ABS_DIFF = 1e-3


def export(model: torch.nn.Module, path: Path) -> Path:
    """Opset 17, dynamic batch axis, ``INPUT`` ``[N, 1, 8, 8]`` → ``LOGITS`` ``[N, 10]``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        str(path),
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    return path


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(path: Path | ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    sess = session(path) if isinstance(path, Path) else path
    return sess.run([OUTPUT], {INPUT: x})[0]


def verify(model: torch.nn.Module, path: Path, x: np.ndarray) -> float:
    """Max abs logit difference of ONNX Runtime vs PyTorch on ``x``; raises over the tolerance."""
    diff = float(np.abs(run(path, x) - logits(model, x)).max())
    if not diff <= MAX_ABS_DIFF:
        raise BuildError(f"{path}: ONNX differs from PyTorch by {diff:.2e} > {MAX_ABS_DIFF:.0e}")
    return diff


class _Calibration(CalibrationDataReader):
    """Feeds training-split batches to the static quantizer's min/max calibration."""

    def __init__(self, x: np.ndarray, batch: int = 64) -> None:
        self._batches: Iterator[np.ndarray] = iter(np.array_split(x, max(1, len(x) // batch)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT: np.ascontiguousarray(batch)}


def quantize(fp32: Path, int8: Path, calibration: np.ndarray, work: Path) -> Path:
    """Static INT8 (QDQ, per-channel weights, uint8 activations) calibrated on ``calibration``."""
    work.mkdir(parents=True, exist_ok=True)
    prepared = work / "int8_prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    int8.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(
        str(prepared),
        str(int8),
        _Calibration(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return int8


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    predictions = run(path, x).argmax(1)
    return float((predictions == y).mean()), predictions


def timing(path: Path, x: np.ndarray, *, repeats: int = 300, batch: int = 64) -> dict[str, float]:
    """In-process ONNX Runtime (1 thread): median batch-1 latency and batch-64 throughput."""
    sess = session(path)
    one = x[:1]
    many = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
    for _ in range(20):
        run(sess, one)
        run(sess, many)
    latencies = []
    for i in range(repeats):
        sample = x[i % len(x) : i % len(x) + 1]
        start = time.perf_counter()
        run(sess, sample)
        latencies.append(time.perf_counter() - start)
    batch_times = []
    for _ in range(max(10, repeats // 6)):
        start = time.perf_counter()
        run(sess, many)
        batch_times.append(time.perf_counter() - start)
    return {
        "latency_ms_batch1": statistics.median(latencies) * 1e3,
        "throughput_batch64": batch / statistics.median(batch_times),
    }
