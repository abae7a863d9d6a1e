"""Configuration (f): LitServe, a Python serving framework with its own dynamic batching.

Configured the way LitServe's documentation recommends for a batched model: ``max_batch_size``
and ``batch_timeout`` on the ``LitAPI``, ``workers_per_device`` worker processes on the CPU,
each with its own ONNX Runtime session. Here: 2 workers (one per core) × 1 intra-op thread,
batches of up to 8 requests gathered for at most 2 ms, spinning threads off (the
configuration issue 22 measured LitServe with: 221 sentences/s at 16 clients).

Same ONNX file, tokenizer and length buckets as the Triton rows, and the same JSON protocol
as the FastAPI row (``POST /predict {"texts": [...]}`` → ``{"embeddings": [...]}``). A batch's
texts are grouped by bucket before the encoder, as Triton's batcher groups equal shapes.

Run: ``python -m tritonctl.bench.litserve_app --port P --onnx F --tokenizer T --buckets 16,32``.
"""

# No `from __future__ import annotations`: LitServe hands decode_request's annotation to
# FastAPI as the body type, and a string annotation would not resolve there.
import argparse
from typing import Any

import litserve as ls
from pydantic import BaseModel

from tritonctl.bench.inprocess import Embedder, session

WORKERS = 2
MAX_BATCH_SIZE = 8
BATCH_TIMEOUT_S = 0.002


class EmbedRequest(BaseModel):
    texts: list[str]


class EmbeddingAPI(ls.LitAPI):
    def __init__(self, onnx: str, tokenizer: str, buckets: tuple[int, ...], **kw: Any) -> None:
        super().__init__(**kw)
        self.onnx, self.tokenizer_path, self.buckets = onnx, tokenizer, buckets

    def setup(self, device: str) -> None:
        self.embedder = Embedder(
            self.tokenizer_path, session(self.onnx, 1, spinning=False), self.buckets
        )

    def decode_request(self, request: EmbedRequest, **kwargs: Any) -> list[str]:
        return request.texts

    def batch(self, inputs: list[list[str]]) -> list[list[str]]:
        return inputs

    def predict(self, x: list[list[str]], **kwargs: Any) -> list[list[list[float]]]:
        flat = [text for texts in x for text in texts]
        rows = self.embedder.embed_grouped(flat).tolist()
        out, start = [], 0
        for texts in x:
            out.append(rows[start : start + len(texts)])
            start += len(texts)
        return out

    def unbatch(self, output: list[list[list[float]]]) -> list[list[list[float]]]:
        return output

    def encode_response(self, output: list[list[float]], **kwargs: Any) -> dict[str, Any]:
        return {"embeddings": output}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--buckets", default="16,32,64,128,256")
    args = parser.parse_args()
    api = EmbeddingAPI(
        args.onnx,
        args.tokenizer,
        tuple(int(b) for b in args.buckets.split(",")),
        max_batch_size=MAX_BATCH_SIZE,
        batch_timeout=BATCH_TIMEOUT_S,
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=WORKERS)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
