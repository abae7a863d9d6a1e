"""Configuration (d): what users write by hand, a FastAPI endpoint running tokenizer + ONNX Runtime
per request. Kept as plain as the typical hand-written service:

* one ``InferenceSession`` with ONNX Runtime's default threads, shared by all requests;
* a synchronous ``def`` endpoint, so FastAPI runs each request in its thread pool;
* one uvicorn worker (uvicorn's default), no batching across requests.

The bench starts it with ``python -m uvicorn tritonctl.bench.fastapi_app:app --workers 1``;
``TRITONCTL_BENCH_ONNX`` and ``TRITONCTL_BENCH_TOKENIZER`` name the files it serves (the same
ONNX file and tokenizer as the Triton pipeline).
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel
from tokenizers import Tokenizer

tokenizer = Tokenizer.from_file(os.environ["TRITONCTL_BENCH_TOKENIZER"])
tokenizer.no_padding()
tokenizer.enable_truncation(256)
session = ort.InferenceSession(
    os.environ["TRITONCTL_BENCH_ONNX"], providers=["CPUExecutionProvider"]
)
input_names = {i.name for i in session.get_inputs()}

app = FastAPI()


class EmbedRequest(BaseModel):
    text: str


@app.post("/embed")
def embed(request: EmbedRequest) -> dict[str, list[float]]:
    encoding = tokenizer.encode(request.text)
    ids = np.array([encoding.ids], dtype=np.int64)
    mask = np.array([encoding.attention_mask], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    hidden = session.run(None, {k: v for k, v in feed.items() if k in input_names})[0]
    pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum()
    return {"embedding": (pooled[0] / np.linalg.norm(pooled[0])).tolist()}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
