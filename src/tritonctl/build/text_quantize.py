"""INT8 text encoder that keeps the FP32 embeddings' direction (min cosine ≥ 0.99).

Plain dynamic quantization (per-tensor INT8 weights, per-tensor UINT8 activations computed at
run time) loses too much: BERT-style encoders have a few activation channels up to 10-15× larger
than the rest (FFN inputs reach |x| ≈ 30 while the median channel peaks near 1.8), and one
per-tensor activation scale then leaves the other channels with a handful of levels. Short
sentences suffer most (few tokens to average the noise out in mean pooling).

What this module does, each step measured on the evaluation corpus and kept in the report:

1. ``smooth``: SmoothQuant-style migration. For every quantized MatMul/Attention input ``x``
   with calibrated per-channel peaks ``a_j`` (from ``corpus.calibration_sentences``, never the
   evaluation set) and weight row peaks ``w_j``, a ``Mul(x, 1/s)`` is inserted in front of
   the node and the weight rows are multiplied by ``s_j = a_j^α / w_j^(1-α)``: the product is
   unchanged in FP32, the activation range is flattened. (In this post-LayerNorm model the
   LayerNorm output also feeds the residual, so ``1/s`` cannot be folded into LayerNorm.)
2. dynamic quantization with per-channel weights on the ORT-fused graph (``QAttention``,
   ``DynamicQuantizeMatMul``: the fastest INT8 kernels on CPU).
3. if the gate is still missed: a leave-one-out sensitivity analysis (each quantizable node
   kept in FP32 in turn, scored against FP32 on the calibration set) and greedy exclusion of
   the most sensitive nodes until the gate holds on the evaluation corpus.

α (the migration strength) is chosen among ``SMOOTH_ALPHAS`` on the calibration set too.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritonctl.build.text_measure import accuracy, embed, session
from tritonctl.build.text_tokens import Batch

#: migration strengths tried; the best on the calibration set is kept
SMOOTH_ALPHAS = (0.5, 0.6, 0.75)
#: node kinds that dynamic quantization turns into INT8 kernels here
QUANTIZED_OPS = ("MatMul", "Attention", "EmbedLayerNormalization")
#: the gate is checked with this margin, so that another CPU's kernels do not tip it over
MARGIN = 0.001
#: at most this many nodes are kept in FP32 (beyond it INT8 would lose its speed)
MAX_EXCLUDED = 6


class QuantizationError(RuntimeError):
    """No INT8 variant met the accuracy gate."""


@dataclass
class Attempt:
    technique: str
    min_cosine: float
    mean_cosine: float
    excluded: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "min_cosine": round(self.min_cosine, 5),
            "mean_cosine": round(self.mean_cosine, 5),
            "excluded_nodes": self.excluded,
        }


def _weighted_nodes(model) -> list:  # type: ignore[no-untyped-def, type-arg]
    """MatMul/Attention nodes whose second input is a weight (initializer)."""
    weights = {i.name for i in model.graph.initializer}
    return [
        n
        for n in model.graph.node
        if n.op_type in ("MatMul", "Attention") and len(n.input) > 1 and n.input[1] in weights
    ]


def calibrate(path: Path, batches: Sequence[Batch]) -> dict[str, np.ndarray]:
    """Per-channel peak |activation| at the input of every weighted MatMul/Attention."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    names = sorted({n.input[0] for n in _weighted_nodes(model)})
    for name in names:
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "calibrate.onnx"
        onnx.save(model, str(probe))
        sess = session(probe, 2)
        peaks: dict[str, np.ndarray] = {}
        for batch in batches:
            # Padded positions count: run-time quantization ranges include them.
            for name, value in zip(names, sess.run(names, batch.feed), strict=True):
                peak = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
                peaks[name] = np.maximum(peaks.get(name, peak), peak)
    return peaks


def smooth(source: Path, target: Path, peaks: dict[str, np.ndarray], alpha: float) -> Path:
    """Write ``source`` with activation outliers migrated into the weights (see module doc)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    init = {i.name: i for i in model.graph.initializer}
    nodes = _weighted_nodes(model)
    weight_peak: dict[str, np.ndarray] = {}
    for node in nodes:
        w = np.abs(numpy_helper.to_array(init[node.input[1]])).max(axis=1)
        weight_peak[node.input[0]] = np.maximum(weight_peak.get(node.input[0], w), w)
    scales = {
        x: np.clip(peaks[x] ** alpha / np.maximum(weight_peak[x], 1e-5) ** (1 - alpha), 1e-2, 1e3)
        for x in weight_peak
    }
    inserted: dict[str, str] = {}
    ordered = []
    for node in model.graph.node:
        if node in nodes:
            x = node.input[0]
            if x not in inserted:
                name = f"{x.strip('/').replace('/', '_')}_smooth"
                inv = numpy_helper.from_array((1.0 / scales[x]).astype(np.float32), name + "_inv")
                model.graph.initializer.append(inv)
                ordered.append(helper.make_node("Mul", [x, inv.name], [name], name=name + "_mul"))
                inserted[x] = name
            weight = init[node.input[1]]
            scaled = numpy_helper.to_array(weight) * scales[x][:, None]
            weight.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), weight.name))
            node.input[0] = inserted[x]
        ordered.append(node)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    onnx.save(model, str(target))
    return target


def quantizable_nodes(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in QUANTIZED_OPS]


def quantize(
    source: Path,
    target: Path,
    *,
    per_channel: bool,
    exclude: Sequence[str] = (),
    reduce_range: bool = False,
) -> Path:
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it warns "consider pre-processing" on every call
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            nodes_to_exclude=list(exclude),
            # Shape inference cannot type the outputs of ORT's fused contrib ops.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
    return target


def _score(path: Path, batches: Sequence[Batch], reference: np.ndarray) -> dict[str, float]:
    return accuracy(embed(session(path, 2), batches, len(reference)), reference)


def build_int8(
    optimized: Path,
    target: Path,
    *,
    eval_batches: Sequence[Batch],
    reference: np.ndarray,
    calibration: Sequence[Batch],
    gate: float,
    workdir: Path,
    step: Callable[[str], None] = lambda _: None,
) -> tuple[Path, list[Attempt]]:
    """Quantize ``optimized`` into ``target`` meeting ``min cosine ≥ gate``; return the attempts.

    Every choice (α, the sensitive nodes) is made on the calibration set against the FP32
    graph; the evaluation corpus only scores the results and decides when to stop.
    """
    attempts: list[Attempt] = []
    count = sum(len(b.indices) for b in calibration)
    fp32_calibration = embed(session(optimized, 2), calibration, count)

    def attempt(technique: str, path: Path, excluded: Sequence[str] = ()) -> Attempt:
        figures = _score(path, eval_batches, reference)
        result = Attempt(technique, figures["min_cosine"], figures["mean_cosine"], list(excluded))
        attempts.append(result)
        step(f"{technique}: min cosine {result.min_cosine:.4f}")
        return result

    def on_calibration(path: Path) -> float:
        return _score(path, calibration, fp32_calibration)["min_cosine"]

    plain = quantize(optimized, workdir / "int8_per_tensor.onnx", per_channel=False)
    attempt("dynamic, per-tensor weights", plain)
    channel = quantize(optimized, workdir / "int8_per_channel.onnx", per_channel=True)
    attempt("dynamic, per-channel weights", channel)

    peaks = calibrate(optimized, calibration)
    scored = []
    for alpha in SMOOTH_ALPHAS:
        smoothed = smooth(optimized, workdir / f"smoothed{alpha}.onnx", peaks, alpha)
        path = quantize(smoothed, workdir / f"int8_smoothed{alpha}.onnx", per_channel=True)
        scored.append((on_calibration(path), alpha, smoothed, path))
        step(f"smoothing α={alpha}")
    _, alpha, smoothed, best_path = max(scored)
    best = attempt(f"smoothed (α={alpha}) + dynamic, per-channel weights", best_path)
    if best.min_cosine >= gate + MARGIN:
        return _keep(best_path, target), attempts

    # Sensitivity: keep one node in FP32 at a time; the node whose exclusion helps most first.
    gains = []
    for node in quantizable_nodes(smoothed):
        path = quantize(smoothed, workdir / "loo.onnx", per_channel=True, exclude=[node])
        gains.append((on_calibration(path), node))
        step(f"sensitivity: {node}")
    ranked = [node for _, node in sorted(gains, reverse=True)]
    for kept in range(1, MAX_EXCLUDED + 1):
        excluded = ranked[:kept]
        path = quantize(
            smoothed, workdir / f"int8_excl{kept}.onnx", per_channel=True, exclude=excluded
        )
        result = attempt(
            f"smoothed (α={alpha}) + per-channel, {kept} most sensitive node(s) in FP32",
            path,
            excluded,
        )
        if result.min_cosine >= gate + MARGIN:
            return _keep(path, target), attempts
    raise QuantizationError(
        f"no INT8 variant reached min cosine {gate} (+{MARGIN} margin): "
        + "; ".join(f"{a.technique}: {a.min_cosine:.4f}" for a in attempts)
    )


def _keep(path: Path, target: Path) -> Path:
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target
