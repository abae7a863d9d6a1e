"""The CPU encoder backend's row packing (``pack_rows_by_mask``) on the real server.

Rows of a request come padded to the bucket of its longest text; the backend cuts each row back
to the bucket of its own length and batches rows of equal width together. The embeddings must
not change, and a request whose inputs disagree in shape must still be refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonctl.server import LocalTriton

pytestmark = pytest.mark.server


def _encode(server: LocalTriton, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        inputs = []
        for name, array in (("input_ids", ids), ("attention_mask", mask)):
            tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        return client.infer("text_encoder", inputs).as_numpy("EMBEDDING")
    finally:
        client.close()


def _row(tokens: list[int], width: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((1, width), dtype=np.int64)
    ids[0, : len(tokens)] = tokens
    mask = (np.arange(width) < len(tokens)).astype(np.int64)[None]
    return ids, mask


def test_packed_rows_embed_as_they_do_alone(triton: LocalTriton) -> None:
    rng = np.random.default_rng(7)
    lengths = [
        5,
        12,
        30,
        70,
        9,
        120,
    ]  # buckets 16, 16, 32, 128, 16, 128 inside one 128-wide request
    rows = [[101, *rng.integers(1000, 20000, n - 2).tolist(), 102] for n in lengths]
    batch = [_row(tokens, 128) for tokens in rows]
    together = _encode(
        triton, np.concatenate([b[0] for b in batch]), np.concatenate([b[1] for b in batch])
    )
    alone = np.concatenate([_encode(triton, *_row(t, len(t))) for t in rows])
    assert together.shape == (len(rows), 384)
    assert float((together * alone).sum(axis=1).min()) > 0.9999


def test_inputs_of_different_shapes_are_refused(triton: LocalTriton) -> None:
    ids, _ = _row([101, 2000, 102], 16)
    _, mask = _row([101, 2000, 102], 32)
    with pytest.raises(InferenceServerException, match="one shape"):
        _encode(triton, ids, mask)
