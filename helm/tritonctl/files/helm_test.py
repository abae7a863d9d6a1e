"""`helm test`: a real inference through tritonclient against the release, over HTTP and gRPC.

Environment: TRITON_HTTP and TRITON_GRPC ("host:port"), TRITON_MODEL (default text_embedding),
TRITON_RESTRICTED_APIS (the server's restrictedApis.apis, comma-separated; empty: none) and
TRITON_ADMIN_KEY_FILE (a file holding their key, sent with every call: inference and metadata may be restricted too;
header `admin-key` over HTTP, metadata `triton-grpc-protocol-admin-key` over gRPC, as Triton
expects).
Exits non-zero with the reason when the server, the model or the answer is wrong.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

TEXTS = [
    "A cat is sitting on the mat.",
    "A kitten sits on a rug.",
    "Quarterly revenue grew by twelve percent.",
]


def embed_http(url: str, model: str, headers: dict[str, str]) -> np.ndarray:
    client = httpclient.InferenceServerClient(url)
    try:
        assert client.is_server_live(headers=headers), "server is not live"
        assert client.is_server_ready(headers=headers), "server is not ready"
        assert client.is_model_ready(model, headers=headers), f"model {model} is not ready"
        text = httpclient.InferInput("TEXT", [len(TEXTS), 1], "BYTES")
        text.set_data_from_numpy(np.array([[t.encode()] for t in TEXTS], dtype=np.object_))
        outputs = [httpclient.InferRequestedOutput("EMBEDDING")]
        # A copy: tritonclient.http adds its own (integer) headers to the dict it is given.
        result = client.infer(model, [text], outputs=outputs, headers=dict(headers))
        return result.as_numpy("EMBEDDING")
    finally:
        client.close()


def embed_grpc(url: str, model: str, headers: dict[str, str]) -> np.ndarray:
    client = grpcclient.InferenceServerClient(url)
    try:
        text = grpcclient.InferInput("TEXT", [len(TEXTS), 1], "BYTES")
        text.set_data_from_numpy(np.array([[t.encode()] for t in TEXTS], dtype=np.object_))
        outputs = [grpcclient.InferRequestedOutput("EMBEDDING")]
        result = client.infer(model, [text], outputs=outputs, headers=headers)
        return result.as_numpy("EMBEDDING")
    finally:
        client.close()


def check_embeddings(embeddings: np.ndarray) -> None:
    assert embeddings.shape == (len(TEXTS), 384), f"EMBEDDING shape {embeddings.shape}"
    assert np.isfinite(embeddings).all(), "EMBEDDING has non-finite values"
    norms = np.linalg.norm(embeddings, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3), f"embeddings are not unit length: {norms}"
    similar, unrelated = embeddings[0] @ embeddings[1], embeddings[0] @ embeddings[2]
    assert similar > unrelated + 0.2, f"cat/kitten {similar:.3f} vs cat/revenue {unrelated:.3f}"


def repository_index_status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"http://{url}/v2/repository/index", data=b"{}", headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def check_admin_api_is_restricted(url: str, key: str) -> None:
    """Closed without the key, open with the release's key (the Secret the server reads)."""
    status = repository_index_status(url, {})
    assert status == 403, f"repository API answered {status} without the admin key, expected 403"
    status = repository_index_status(url, {"admin-key": key})
    assert status == 200, f"repository API answered {status} with the release's admin key"


def main() -> int:
    http_url = os.environ["TRITON_HTTP"]
    grpc_url = os.environ.get("TRITON_GRPC", "")
    model = os.environ.get("TRITON_MODEL", "text_embedding")
    restricted = set(filter(None, os.environ.get("TRITON_RESTRICTED_APIS", "").split(",")))
    key_file = os.environ.get("TRITON_ADMIN_KEY_FILE", "")
    key = Path(key_file).read_text().strip() if key_file else ""
    headers = {"admin-key": key} if key else {}
    try:
        over_http = embed_http(http_url, model, headers)
        check_embeddings(over_http)
        print(f"HTTP {http_url}: {model} -> {over_http.shape}, unit norm, similar texts closer")
        if grpc_url:
            grpc_headers = {f"triton-grpc-protocol-{k}": v for k, v in headers.items()}
            over_grpc = embed_grpc(grpc_url, model, grpc_headers)
            np.testing.assert_allclose(over_grpc, over_http, atol=1e-4)
            print(f"gRPC {grpc_url}: same embeddings")
        if "model-repository" in restricted:
            check_admin_api_is_restricted(http_url, key)
            print("repository API: 403 without the admin key, 200 with it")
    except Exception as error:  # noqa: BLE001 - any failure, assertions included, exits 1 with the reason
        print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
