"""Azure ML: ``model.yml``, ``endpoint.yml`` and ``deployment.yml``.

The deployment is a managed online deployment with a custom environment: the project's serving
image in the workspace's registry, the Triton model (``type: triton_model``) mounted at
``/models``, and Azure's liveness, readiness and scoring routes on Triton's own HTTP port, as in
Azure's Triton custom-container example. The image's own command (``docker/entrypoint.sh``,
the chart's) then serves ``/models``: the models named in ``TRITON_LOAD_MODELS``, explicit model
control, and the repository, shared-memory, trace and logging APIs locked behind a key drawn at
container start and kept in a file inside the container. The scoring route is ``/``, so every
Triton HTTP route is reachable through the endpoint, and that lock is what closes the admin
ones (Triton honours ``--http-restricted-api`` on its plain HTTP listener, unlike on its
SageMaker and Vertex ones).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tritonctl.cloud.facts import AZUREML_MODEL_DIR, AZUREML_PORT

SCHEMA = "https://azuremlschemas.azureedge.net/latest/{}.schema.json"
#: The serving image's command: what Azure runs (a deployment cannot set one).
ENTRYPOINT = "docker/entrypoint.sh"


def resource_name(model: str) -> str:
    """Endpoint names: 3-32 characters, a letter first, then letters, digits and ``-``."""
    name = re.sub(r"[^a-z0-9-]", "-", f"tritonctl-{model}".lower()).strip("-")
    return name[:32].rstrip("-")


def model_yaml(model: str, *, path: str = "./model") -> dict[str, Any]:
    return {
        "$schema": SCHEMA.format("model"),
        "name": resource_name(model),
        "version": 1,
        "type": "triton_model",
        "path": path,
        "description": f"Triton model repository for '{model}' (written by tritonctl package)",
    }


def endpoint_yaml(model: str) -> dict[str, Any]:
    return {
        "$schema": SCHEMA.format("managedOnlineEndpoint"),
        "name": resource_name(model),
        "auth_mode": "key",
    }


def deployment_yaml(
    model: str,
    image: str,
    models: Sequence[str],
    *,
    instance_type: str = "Standard_F4s_v2",
    instance_count: int = 1,
    timeout_ms: int = 5000,
    max_concurrent: int = 16,
) -> dict[str, Any]:
    route = {"port": AZUREML_PORT}
    return {
        "$schema": SCHEMA.format("managedOnlineDeployment"),
        "name": "blue",
        "endpoint_name": resource_name(model),
        "model": f"azureml:{resource_name(model)}:1",
        "model_mount_path": AZUREML_MODEL_DIR,
        "environment": {
            "name": "tritonctl-triton",
            "image": image,
            "inference_config": {
                "liveness_route": {**route, "path": "/v2/health/live"},
                "readiness_route": {**route, "path": "/v2/health/ready"},
                "scoring_route": {**route, "path": "/"},
            },
        },
        # The image's command loads these (explicit model control); the steps before the ensemble.
        "environment_variables": {"TRITON_LOAD_MODELS": " ".join(ordered(model, models))},
        "instance_type": instance_type,
        "instance_count": instance_count,
        "request_settings": {
            "request_timeout_ms": timeout_ms,
            "max_concurrent_requests_per_instance": max_concurrent,
        },
    }


def ordered(model: str, models: Sequence[str]) -> list[str]:
    """The package's models with ``model`` (the ensemble) last."""
    return [m for m in models if m != model] + [model]
