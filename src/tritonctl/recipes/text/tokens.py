"""Tokenization for the text-embedding build, identical to the served ``tokenizer`` model.

Token sequences are padded to length buckets so that Triton's dynamic batcher (which joins only
requests of equal shape) can batch sentences of similar length. The build measures and
verifies with exactly these batches, so its figures describe what the server runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: padded sequence lengths; the last one is the truncation length
BUCKETS: tuple[int, ...] = (16, 32, 64, 128, 256)
MAX_LENGTH = BUCKETS[-1]


def bucket_for(length: int) -> int:
    """The smallest bucket holding ``length`` tokens."""
    return next((b for b in BUCKETS if b >= length), BUCKETS[-1])


def load_tokenizer(path: Path):
    """The fast tokenizer from ``tokenizer.json``, truncating at ``MAX_LENGTH``, unpadded.

    The shipped file pads and truncates to 128 on its own; both are replaced here.
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_LENGTH)
    return tokenizer


@dataclass(frozen=True)
class Batch:
    """Sentences (by index into the corpus) padded to one bucket."""

    indices: list[int]
    input_ids: np.ndarray  # int64 [N, bucket]
    attention_mask: np.ndarray  # int64 [N, bucket]

    @property
    def feed(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}


def encode(tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask for ``texts``, padded to the bucket of the longest one."""
    encodings = tokenizer.encode_batch(list(texts))
    width = bucket_for(max((len(e.ids) for e in encodings), default=1))
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    return ids, mask


def bucketed_batches(tokenizer, texts: Sequence[str], batch_size: int = 32) -> list[Batch]:
    """``texts`` grouped by bucket and cut into batches, as the dynamic batcher would form them."""
    lengths = [len(e.ids) for e in tokenizer.encode_batch(list(texts))]
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(bucket_for(length), []).append(index)
    batches = []
    for _, members in sorted(groups.items()):
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            ids, mask = encode(tokenizer, [texts[i] for i in chunk])
            batches.append(Batch(chunk, ids, mask))
    return batches


def full_batches(batches: Sequence[Batch], size: int) -> Iterator[Batch]:
    """Batches holding exactly ``size`` sentences (for throughput at that batch size)."""
    return (b for b in batches if len(b.indices) == size)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean over tokens, then L2 normalisation (the sentence-transformers head)."""
    weights = mask.astype(np.float32)
    summed = np.einsum("nsd,ns->nd", hidden.astype(np.float32), weights)
    counts = np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    pooled = summed / counts
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return (pooled / norms).astype(np.float32)
