"""Offline text drift: embed a sample in process exactly as the served pipeline does.

The text build's own helpers do the work (``text_tokens`` for the ``tokenizer`` model's
bucketed tokenization, truncating at 256 tokens; ``text_measure`` for the ONNX session and the
``pooling`` model's masked mean + L2 normalisation), over the FP32 encoder the server serves
(``text_encoder/1/model.onnx``), the model the reference profile was computed with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def embed_sentences(sentences: Sequence[str], repository: Path, threads: int = 2) -> np.ndarray:
    """Embeddings ``[N, 384]`` (float32, unit length) of ``sentences``, in their order."""
    from tritonctl.build.text_measure import embed, session
    from tritonctl.build.text_tokens import bucketed_batches, load_tokenizer
    from tritonctl.drift import DriftError

    model = repository / "text_encoder" / "1" / "model.onnx"
    tokenizer_file = repository / "tokenizer" / "1" / "tokenizer.json"
    for path in (model, tokenizer_file):
        if not path.exists():
            raise DriftError(
                f"no {path}: build the text models first (tritonctl build text-embedding)"
            )
    texts = list(sentences)
    batches = bucketed_batches(load_tokenizer(tokenizer_file), texts)
    return embed(session(model, threads), batches, len(texts))
