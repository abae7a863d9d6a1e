"""Small typed helpers over ``tritonclient`` for the project's pipelines.

    from tritonctl.client import embed
    vectors = embed(["a sentence", "another"], "127.0.0.1:8001", protocol="grpc")

``url`` is ``host:port`` (``LocalTriton.grpc_address`` / ``http_address``); an ``http://`` prefix
is accepted. Errors from the server raise ``InferenceError`` with Triton's message.

Transient failures (gRPC ``UNAVAILABLE``, HTTP 502/503/504, a refused connection, a full queue,
a stub being reloaded) are retried with exponential backoff by ``tritonctl.retry`` for up to
30 s, each attempt bounded by the time left; bad input (``INVALID_ARGUMENT`` / 400) never is.
Pass ``retry=None`` to send exactly once (within ``timeout``), or a ``RetryPolicy`` of your own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from tritonctl.retry import RetriesExhausted, RetryPolicy, call_with_retry

Protocol = Literal["grpc", "http"]
DEFAULT_TIMEOUT_S = 60.0
#: What ``infer``/``embed`` use unless told otherwise: retries within 30 s (see RetryPolicy).
DEFAULT_RETRY = RetryPolicy()


class InferenceError(RuntimeError):
    """The server answered a request with an error (or could not be reached)."""


class RequestError(InferenceError):
    """The server refused the request itself (bad input, unknown model): the caller's to fix."""


# What Triton answers a request it refuses as the caller's fault, over gRPC and HTTP.
REFUSED = frozenset({"StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND", "400", "404"})


def _address(url: str) -> str:
    for prefix in ("http://", "https://", "grpc://"):
        if url.startswith(prefix):
            return url[len(prefix) :].rstrip("/")
    return url


def client(url: str, protocol: Protocol = "grpc", timeout: float = DEFAULT_TIMEOUT_S) -> Any:
    """A ``tritonclient`` ``InferenceServerClient`` for ``protocol``; close it when done.

    ``timeout`` bounds the HTTP client's connection and network waits (a gRPC call takes its
    own ``client_timeout``).
    """
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(_address(url))
    if protocol == "http":
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(
            _address(url), connection_timeout=timeout, network_timeout=timeout
        )
    raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")


def _module(protocol: Protocol) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def text_input(texts: Sequence[str | bytes], protocol: Protocol = "grpc") -> Any:
    """The ``TEXT`` input (BYTES ``[N, 1]``) for the text pipelines."""
    items = [t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in texts]
    array = np.array(items, dtype=np.object_).reshape(-1, 1)
    tensor = _module(protocol).InferInput("TEXT", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def infer(
    url: str,
    model: str,
    inputs: Sequence[Any],
    outputs: Sequence[str],
    protocol: Protocol = "grpc",
    retry: RetryPolicy | None = DEFAULT_RETRY,
    timeout: float = DEFAULT_TIMEOUT_S,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """One inference request, retried on transient errors; returns ``{output name: array}``.

    ``timeout`` bounds a call sent once (``retry=None``); with a policy, each attempt is bounded
    by the time left before the policy's deadline.
    """
    from tritonclient.utils import InferenceServerException

    module = _module(protocol)
    requested = [module.InferRequestedOutput(name) for name in outputs]

    def attempt(timeout: float = timeout) -> Any:
        conn = client(url, protocol, timeout=timeout)
        try:
            if protocol == "grpc":
                kwargs["client_timeout"] = timeout
            return conn.infer(model, list(inputs), outputs=requested, **kwargs)
        finally:
            conn.close()

    try:
        if retry is None:
            result = attempt()
        else:
            result = call_with_retry(attempt, policy=retry, timeout_keyword="timeout")
    except InferenceServerException as error:
        kind = RequestError if str(error.status()) in REFUSED else InferenceError
        raise kind(f"{model}: {error.message()}") from None
    except RetriesExhausted as error:
        last = error.last
        reason = last.message() if isinstance(last, InferenceServerException) else str(last)
        raise InferenceError(
            f"{model}: {reason} (gave up after {error.attempts} attempts)"
        ) from last
    return {name: result.as_numpy(name) for name in outputs}


def embed(
    texts: Sequence[str | bytes],
    url: str,
    protocol: Protocol = "grpc",
    model: str = "text_embedding",
    retry: RetryPolicy | None = DEFAULT_RETRY,
) -> np.ndarray:
    """Embeddings ``[len(texts), 384]`` (FP32, unit length) from a text-embedding ensemble."""
    if len(texts) == 0:
        return np.zeros((0, 384), dtype=np.float32)
    inputs = [text_input(texts, protocol)]
    out = infer(url, model, inputs, ["EMBEDDING"], protocol, retry=retry)
    return out["EMBEDDING"]


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of ``vectors``."""
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    unit = vectors / norms
    return np.asarray(unit @ unit.T)
