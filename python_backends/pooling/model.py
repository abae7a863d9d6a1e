"""Triton Python model ``pooling``: masked mean pooling + L2 normalisation → ``EMBEDDING``.

Inputs ``last_hidden_state`` (FP32 [S, 384] per item) and ``attention_mask`` (INT64 [S]).
Requests may carry different sequence lengths (their padding buckets): all requests of an
``execute`` call are padded to the longest one (zero hidden states, zero mask, which changes
nothing in a masked mean) and pooled with one einsum. A request whose hidden states hold NaN
or Inf gets an INVALID_ARG error of its own; the others are answered.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
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

        bounds = np.cumsum(sizes)[:-1]
        finite = [bool(f.all()) for f in np.split(np.isfinite(pooled).all(axis=1), bounds)]
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
