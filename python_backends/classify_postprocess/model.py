"""Triton Python model ``classify_postprocess``: logits → top-k labels and probabilities.

Input ``LOGITS`` (FP32 ``[10]`` per item); outputs ``LABELS`` (BYTES ``[k]``, class names such
as ``b"7"``, most probable first) and ``SCORES`` (FP32 ``[k]``, their softmax probabilities).
``k`` is the config parameter ``top_k`` (default 3) and must match the outputs' dims.
All requests of an ``execute`` call go through one softmax and one sort.

The build stores ``reference_profile.json`` beside this file: the validation split's predicted
class distribution and input-intensity histogram, the reference for drift monitoring.
"""

import json
import os

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton, e.g. by unit tests of the pure helpers below
    pb_utils = None
try:
    import drift_window  # copied beside this file: see src/tritonctl/drift_window.py
except ImportError:
    drift_window = None

NOT_FINITE = "input 'LOGITS' holds NaN or Inf: logits must be finite"
CLASSES = np.array([str(d).encode() for d in range(10)], dtype=object)


def top_k(logits, k):
    """float ``[N, C]`` → (labels object ``[N, k]``, probabilities float32 ``[N, k]``)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(probabilities, order, axis=1).astype(np.float32)
    return CLASSES[order], scores


def _drift_parameter(config, key, default):
    return config.get("parameters", {}).get(key, {}).get("string_value") or default


class TritonPythonModel:
    def drift_monitor(self, config):
        """Sliding-window drift gauges (predicted-class PSI, low-confidence share), if profiled."""
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_profile.json")
        if drift_window is None or not os.path.exists(path):
            pb_utils.Logger.log_warn(f"no drift monitoring: {path} or drift_window.py missing")
            return None
        reference = drift_window.load_json(path)["predicted_class_distribution"]
        self.class_edges = np.arange(len(reference) + 1) - 0.5
        self.low_confidence = float(_drift_parameter(config, "low_confidence_threshold", "0.6"))
        return drift_window.Monitor(
            pb_utils,
            _drift_parameter(config, "drift_model_label", "digit_classifier"),
            "predicted_class",
            reference,
            window=int(_drift_parameter(config, "drift_window", "512")),
            low_confidence=True,
        )

    def initialize(self, args):
        config = json.loads(args["model_config"])
        value = config.get("parameters", {}).get("top_k", {}).get("string_value")
        self.k = int(value) if value else 3
        dims = {o["name"]: o["dims"] for o in config["output"]}
        if any(int(d[-1]) not in (-1, self.k) for d in dims.values()):
            raise pb_utils.TritonModelException(f"top_k={self.k} does not match output dims {dims}")
        if not 1 <= self.k <= len(CLASSES):
            raise pb_utils.TritonModelException(f"top_k must be 1..{len(CLASSES)}, got {self.k}")
        self.drift = self.drift_monitor(config)

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, "LOGITS").as_numpy() for r in requests]
        logits = np.concatenate(arrays)
        offsets = np.cumsum([len(a) for a in arrays])[:-1]
        # One isfinite over the whole batch; a request holding NaN/Inf fails alone, and is
        # kept out of the softmax and of the drift window.
        finite_rows = np.isfinite(logits).all(axis=1)
        finite = [bool(rows.all()) for rows in np.split(finite_rows, offsets)]
        logits = np.where(finite_rows[:, None], logits, 0.0)
        labels, scores = top_k(logits, self.k)
        if self.drift is not None and finite_rows.any():
            kept = logits[finite_rows]
            predicted = drift_window.bin_counts(kept.argmax(axis=1), self.class_edges)
            self.drift.observe(predicted, low=scores[finite_rows, 0] < self.low_confidence)
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("LABELS", lab), pb_utils.Tensor("SCORES", sco)]
            )
            if ok
            else pb_utils.InferenceResponse(
                error=pb_utils.TritonError(NOT_FINITE, pb_utils.TritonError.INVALID_ARG)
            )
            for lab, sco, ok in zip(
                np.split(labels, offsets), np.split(scores, offsets), finite, strict=True
            )
        ]
