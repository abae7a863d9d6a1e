"""Triton Python model ``pooling``: masked mean pooling + L2 normalisation → ``EMBEDDING``.

Inputs ``last_hidden_state`` (FP32 [S, 384] per item) and ``attention_mask`` (INT64 [S]).
Requests may carry different sequence lengths (their padding buckets): all requests of an
``execute`` call are padded to the longest one (zero hidden states, zero mask, which changes
nothing in a masked mean) and pooled with one einsum. A request whose hidden states hold NaN
or Inf gets an INVALID_ARG error of its own; the others are answered.

Drift: the build stores ``reference_profile.json`` beside this file (the reference corpus'
unit centroid, the histogram of each embedding's cosine to it, its 5th percentile). A sliding
window over the last ``drift_window`` (config parameter, 512) embeddings exports the gauges
``tritonctl_drift_psi{model="text_embedding", signal="cosine"}`` and
``tritonctl_low_confidence_ratio{model="text_embedding"}`` (share of embeddings whose cosine to
the centroid is below that 5th percentile), see ``drift_window.py``. ``model`` is the config
parameter ``drift_model_label``: the pipeline operators know, whichever ensemble (FP32, INT8,
adaptive) the traffic came through.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    import drift_window  # copied beside this file: see src/tritonctl/drift_window.py
except ImportError:
    drift_window = None


def _param(config, key, default):
    return config.get("parameters", {}).get(key, {}).get("string_value") or default


class TritonPythonModel:
    def initialize(self, args):
        self.drift = self.drift_monitor(json.loads(args["model_config"]))

    def drift_monitor(self, config):
        """Cosine-to-centroid PSI and low-confidence gauges, if the build left a profile."""
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_profile.json")
        if drift_window is None or not os.path.exists(path):
            pb_utils.Logger.log_warn(f"no drift monitoring: {path} or drift_window.py missing")
            return None
        profile = drift_window.load_json(path)
        self.centroid = np.asarray(profile["centroid"], dtype=np.float64)
        self.cosine_edges, fractions = drift_window.histogram(profile["cosine_similarity"])
        self.low_threshold = float(profile["low_threshold"])
        return drift_window.Monitor(
            pb_utils,
            _param(config, "drift_model_label", "text_embedding"),
            "cosine",
            fractions,
            window=int(_param(config, "drift_window", "512")),
            low_confidence=True,
        )

    def execute(self, requests):
        hidden = [
            pb_utils.get_input_tensor_by_name(r, "last_hidden_state").as_numpy() for r in requests
        ]
        masks = [
            pb_utils.get_input_tensor_by_name(r, "attention_mask").as_numpy() for r in requests
        ]
        sizes = [h.shape[0] for h in hidden]
        width = max(h.shape[1] for h in hidden)
        states = np.concatenate([_pad(h, width) for h in hidden]).astype(np.float32, copy=False)
        weights = np.concatenate([_pad(m, width) for m in masks]).astype(np.float32)

        summed = np.einsum("nsd,ns->nd", states, weights)
        pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

        rows_finite = np.isfinite(pooled).all(axis=1)
        if self.drift is not None and rows_finite.any():
            # pooled rows are unit length: the cosine to the unit centroid is a dot product
            cosine = pooled[rows_finite].astype(np.float64) @ self.centroid
            rows = drift_window.bin_counts(cosine, self.cosine_edges)
            self.drift.observe(rows, low=cosine < self.low_threshold)

        bounds = np.cumsum(sizes)[:-1]
        finite = [bool(f.all()) for f in np.split(rows_finite, bounds)]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("EMBEDDING", chunk)])
            if ok
            else pb_utils.InferenceResponse(
                error=pb_utils.TritonError(_NOT_FINITE, pb_utils.TritonError.INVALID_ARG)
            )
            for chunk, ok in zip(np.split(pooled, bounds), finite, strict=True)
        ]


_NOT_FINITE = "input 'last_hidden_state' holds NaN or Inf: values must be finite"


def _pad(array, width):
    missing = width - array.shape[1]
    if missing == 0:
        return array
    return np.pad(array, [(0, 0), (0, missing)] + [(0, 0)] * (array.ndim - 2))
