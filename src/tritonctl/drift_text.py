"""Offline text drift: embed a sample in process exactly as the served pipeline does.

The text build's own helpers do the work (``text_tokens`` for the ``tokenizer`` model's
bucketed tokenization, truncating at 256 tokens; ``text_measure`` for the ONNX session and the
``pooling`` model's masked mean + L2 normalisation), over the FP32 encoder the server serves
(``text_encoder/1/model.onnx``), the model the reference profile was computed with.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from tritonctl.drift_window import DriftError


def embed_sentences(sentences: Sequence[str], repository: Path, threads: int = 2) -> np.ndarray:
    """Embeddings ``[N, 384]`` (float32, unit length) of ``sentences``, in their order."""
    model = repository / "text_encoder" / "1" / "model.onnx"
    tokenizer_file = repository / "tokenizer" / "1" / "tokenizer.json"
    for path in (model, tokenizer_file):
        if not path.exists():
            raise DriftError(
                f"no {path}: build the text models first (tritonctl build text-embedding)"
            )
    stamps = tuple(path.stat().st_mtime_ns for path in (model, tokenizer_file))
    return _embed(tuple(sentences), model, tokenizer_file, stamps, threads).copy()


@lru_cache(maxsize=16)
def _embed(
    texts: tuple[str, ...], model: Path, tokenizer_file: Path, stamps: tuple[int, ...], threads: int
) -> np.ndarray:
    """The encoder's pass over ``texts``, kept for the same files (``stamps``: a rebuild is
    embedded again): the drift checks score the same held-out sample more than once."""
    from tritonctl.recipes.text.measure import embed, session
    from tritonctl.recipes.text.tokens import bucketed_batches, load_tokenizer

    batches = bucketed_batches(load_tokenizer(tokenizer_file), list(texts))
    return np.asarray(embed(session(model, threads), batches, len(texts)))
