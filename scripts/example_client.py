"""Embed sentences with the served ``text_embedding`` ensemble, over gRPC and over HTTP.

Start a server first (``tritonctl serve`` or ``make serve``), then::

    python scripts/example_client.py "How do I reset my password?" "I forgot my password."

Only ``tritonclient`` and numpy are needed: this is what a user's application does.
"""

from __future__ import annotations

import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def embed(client, module, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``TEXT`` is BYTES ``[N, 1]``: N sentences in one request; ``EMBEDDING`` is FP32 ``[N, 384]``."""
    data = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(-1, 1)
    text = module.InferInput("TEXT", list(data.shape), "BYTES")
    text.set_data_from_numpy(data)
    result = client.infer(
        "text_embedding", [text], outputs=[module.InferRequestedOutput("EMBEDDING")]
    )
    return result.as_numpy("EMBEDDING")


def main(texts: list[str]) -> None:
    grpc = grpcclient.InferenceServerClient("127.0.0.1:8001")
    http = httpclient.InferenceServerClient("127.0.0.1:8000")
    try:
        by_grpc = embed(grpc, grpcclient, texts)
        by_http = embed(http, httpclient, texts)
    finally:
        grpc.close()
        http.close()  # an open keep-alive connection would delay the server's shutdown
    print(f"{len(texts)} embeddings of dimension {by_grpc.shape[1]}")
    print(f"gRPC and HTTP agree: {np.allclose(by_grpc, by_http, atol=1e-6)}")
    similarity = by_grpc @ by_grpc.T  # the vectors are unit length: dot product = cosine
    for i, text in enumerate(texts):
        row = " ".join(f"{v:.3f}" for v in similarity[i])
        print(f"{row}  {text}")


if __name__ == "__main__":
    main(
        sys.argv[1:]
        or ["A man is playing a guitar.", "Someone plays the guitar.", "It is raining."]
    )
