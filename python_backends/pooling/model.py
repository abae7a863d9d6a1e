"""Triton Python model ``pooling``: the text pipeline's last step, ``embedding`` → ``EMBEDDING``.

Masked mean pooling and L2 normalisation run inside the encoder's ONNX graph (its
``EMBEDDING`` output, see ``tritonctl.recipes.text.export``): the encoder hands this step one
384-float row per text rather than its ``[S, 384]`` hidden states. This step keeps what needs
Python: a request whose embedding holds NaN or Inf, or is all zeros (the encoder pooled no
token: an all-zero attention mask), gets an INVALID_ARG error of its own (the others are
answered), and every valid embedding feeds the drift gauges. All requests of an
``execute`` call are checked and observed with one matrix product.

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
        rows = [pb_utils.get_input_tensor_by_name(r, "embedding").as_numpy() for r in requests]
        sizes = [len(r) for r in rows]
        pooled = np.concatenate(rows).astype(np.float32, copy=False)

        rows_finite = np.isfinite(pooled).all(axis=1)
        # The encoder pools the tokens its attention mask marks: with none marked (an all-zero
        # mask, which the tokenizer never makes but a direct caller can send) the row is zeros.
        rows_empty = rows_finite & ~pooled.any(axis=1)
        rows_ok = rows_finite & ~rows_empty
        if self.drift is not None and rows_ok.any():
            # the rows are unit length: the cosine to the unit centroid is a dot product
            cosine = pooled[rows_ok].astype(np.float64) @ self.centroid
            counts = drift_window.bin_counts(cosine, self.cosine_edges)
            self.drift.observe(counts, low=cosine < self.low_threshold)

        bounds = np.cumsum(sizes)[:-1]
        return [
            _answer(chunk, finite, empty)
            for chunk, finite, empty in zip(
                np.split(pooled, bounds),
                np.split(rows_finite, bounds),
                np.split(rows_empty, bounds),
                strict=True,
            )
        ]


def _answer(chunk, finite, empty):
    """One request's response: its embeddings, or INVALID_ARG naming the first bad item."""
    if finite.all() and not empty.any():
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("EMBEDDING", chunk)])
    if not finite.all():
        message = _NOT_FINITE
    else:
        message = (
            f"input 'embedding' of item {int(np.flatnonzero(empty)[0])} is all zeros: no token "
            "was pooled (an attention_mask of zeros)"
        )
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    )


_NOT_FINITE = "input 'embedding' holds NaN or Inf: values must be finite"
