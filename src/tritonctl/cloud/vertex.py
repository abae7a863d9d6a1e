"""Vertex AI: the container spec for ``Model.upload`` / ``gcloud ai models upload``.

Vertex starts the container with ``AIP_MODE=PREDICTION`` and ``AIP_HTTP_PORT`` (the first
container port), ``AIP_PREDICT_ROUTE`` and ``AIP_HEALTH_ROUTE`` (the spec's routes), and
``AIP_STORAGE_URI`` (its copy of the artifact folder). Triton 2.51 reads ``AIP_MODE`` itself: it
then turns its Vertex AI listener on and plain HTTP and gRPC off, and serves the predict route
for ``--vertex-ai-default-model`` (required when the repository holds several models, as an
ensemble's does). Vertex expands ``$(VAR)`` in ``args`` from the container's environment.

Model control stays off (``--model-control-mode=none``): Triton 2.51's Vertex listener applies
no ``--http-restricted-api``, and its ``X-Vertex-Ai-Triton-Redirect`` header reaches
``v2/repository/models/<m>/load`` and ``/unload``, which model control ``none`` refuses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from tritonctl.cloud.facts import VERTEX_DEFAULT_SHM_MB, VERTEX_PORT
from tritonctl.cloud.sagemaker import CACHE_BYTES
from tritonctl.cloud.shm import ShmPlan

REDIRECT_HEADER = "X-Vertex-Ai-Triton-Redirect"
BINARY_CONTENT_TYPE = "application/vnd.vertex-ai-triton.binary+json;json-header-size="


def routes(model: str) -> tuple[str, str]:
    """(predict route, health route): the KServe v2 paths a Triton user expects.

    Triton matches them as regular expressions, so the model name is escaped.
    """
    return f"/v2/models/{re.escape(model)}/infer", "/v2/health/ready"


def server_args(model: str, shm: ShmPlan) -> list[str]:
    """``tritonserver`` arguments; ``$(AIP_STORAGE_URI)`` is expanded by Vertex."""
    return [
        "--model-repository=$(AIP_STORAGE_URI)",
        f"--vertex-ai-default-model={model}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        f"--cache-config=local,size={CACHE_BYTES}",
        "--log-verbose=0",
        *shm.backend_config(),
    ]


def container_spec(
    model: str, image: str, shm: ShmPlan, *, shm_mb: int = VERTEX_DEFAULT_SHM_MB
) -> dict[str, Any]:
    """``ModelContainerSpec`` as a JSON-able dict (field names as in the REST API)."""
    predict, health = routes(model)
    return {
        "imageUri": image,
        "command": ["tritonserver"],
        "args": server_args(model, shm),
        "ports": [{"containerPort": VERTEX_PORT}],
        "predictRoute": predict,
        "healthRoute": health,
        "sharedMemorySizeMb": str(max(shm_mb, -(-shm.peak_bytes // (1024 * 1024)))),
    }


def model_resource(
    model: str, artifact_uri: str, spec: Mapping[str, Any], *, display_name: str
) -> dict[str, Any]:
    """The ``Model`` given to ``ModelService.UploadModel``."""
    return {
        "displayName": display_name,
        "artifactUri": artifact_uri,
        "containerSpec": dict(spec),
        "labels": {"created-by": "tritonctl", "triton-model": _label(model)},
    }


def _label(value: str) -> str:
    """Vertex label values: lowercase letters, digits, ``_`` and ``-``, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Vertex's (Kubernetes') ``$(VAR)`` expansion: defined variables are replaced, ``$$`` is a
    literal ``$``, anything else is left as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return [_VAR.sub(replace, arg) for arg in args]


def environment(spec: Mapping[str, Any], *, port: int, storage_uri: str) -> dict[str, str]:
    """The variables Vertex sets in the container for ``spec``."""
    env = {
        "AIP_MODE": "PREDICTION",
        "AIP_HTTP_PORT": str(port),
        "AIP_PREDICT_ROUTE": str(spec["predictRoute"]),
        "AIP_HEALTH_ROUTE": str(spec["healthRoute"]),
        "AIP_STORAGE_URI": storage_uri,
    }
    env.update({item["name"]: item["value"] for item in spec.get("env", [])})
    return env
