"""Configuration (d): what users write by hand, a FastAPI endpoint running tokenizer + ONNX Runtime
per request. Kept as plain as the typical hand-written service:

* one ``InferenceSession`` with ONNX Runtime's default threads, shared by all requests;
* a synchronous ``def`` endpoint, so FastAPI runs each request in its thread pool;
* one uvicorn worker (uvicorn's default), no batching across requests.

``POST /embed {"texts": [...]}`` answers ``{"embeddings": [[384 floats], ...]}``. Token ids are
padded to the served tokenizer's length buckets (``TRITONCTL_BENCH_BUCKETS``), so this row
computes exactly the tokens the Triton rows compute for the same request: a comparison of
sentences per second is then a comparison of equal work.

The bench starts it with ``python -m uvicorn tritonctl.bench.fastapi_app:app --workers 1``;
``TRITONCTL_BENCH_ONNX`` and ``TRITONCTL_BENCH_TOKENIZER`` name the files it serves (the same
ONNX file and tokenizer as the Triton pipeline).
"""

from __future__ import annotations

import os

import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

from tritonctl.bench.inprocess import DEFAULT_BUCKETS, Embedder

buckets = tuple(
    int(b) for b in os.environ.get("TRITONCTL_BENCH_BUCKETS", "").split(",") if b.strip()
)
embedder = Embedder(
    os.environ["TRITONCTL_BENCH_TOKENIZER"],
    ort.InferenceSession(os.environ["TRITONCTL_BENCH_ONNX"], providers=["CPUExecutionProvider"]),
    buckets or DEFAULT_BUCKETS,
)

app = FastAPI()


class EmbedRequest(BaseModel):
    texts: list[str]


@app.post("/embed")
def embed(request: EmbedRequest) -> dict[str, list[list[float]]]:
    return {"embeddings": embedder.embed(request.texts).tolist()}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
