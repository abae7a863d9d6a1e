"""SageMaker: the container environment, the ``serve`` script's command line, the API bodies.

SageMaker starts the NGC image with ``docker run <image> serve``. ``serve`` (Triton's
``docker/sagemaker/serve``, shipped here unchanged as ``upstream/sagemaker_serve-<version>`` for
2.51.0 and 2.60.0) turns
``SAGEMAKER_*`` variables into ``tritonserver`` flags. ``serve_command`` runs that very script
with ``tritonserver`` replaced by a recorder, so the local server gets exactly the flags the
cloud's would, including the script's refusals (a ``config.pbtxt`` at the archive's root, several
models with no default).

The environment tritonctl packages turns model control off. The stock script always adds
``--load-model``, which Triton accepts only with ``--model-control-mode=explicit``, and in that
mode the SageMaker listener's multi-model routes load and unload models for any caller
(``POST /models``, ``DELETE /models/<name>``; Triton 2.51 applies no ``--http-restricted-api``
to this listener). The script skips ``--load-model`` only on its multi-model branch
(``SAGEMAKER_MULTI_MODEL=true``), so the package takes that branch and hands Triton
``--model-control-mode=none`` and ``/opt/ml/model/`` through ``SAGEMAKER_TRITON_ADDITIONAL_ARGS``:
every model of the archive loads at start, and no route can load or unload one. Should the
platform ever set ``SAGEMAKER_MULTI_MODEL=false``, Triton refuses the resulting flags
(``--load-model`` without explicit mode) and the endpoint fails to start: it fails closed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from tritonctl import TRITON_VERSION
from tritonctl.cloud.facts import SAGEMAKER_MODEL_DIR
from tritonctl.cloud.recorder import ScriptRefused, recorded_argv
from tritonctl.cloud.shm import ShmPlan

#: Where the vendored scripts come from: ``upstream/sagemaker_serve-<version>`` is this file at
#: tag ``v<version>`` (2.51.0: NGC 24.10, the local server; 2.60.0: NGC 25.08, the chart's).
SERVE_SCRIPT_SOURCE = (
    "https://github.com/triton-inference-server/server/blob/v{version}/docker/sagemaker/serve"
)
_SINGLE_REPO_LINE = "SAGEMAKER_SINGLE_MODEL_REPO=/opt/ml/model/"
_MULTI_REPO_LINE = "SAGEMAKER_MULTI_MODEL_REPO=/tmp/sagemaker"

#: Local response cache per endpoint instance (the configs enable it per model).
CACHE_BYTES = 64 * 1024 * 1024


class ServeScriptError(ScriptRefused):
    """The ``serve`` script refused the archive or the environment; the message is its output."""


def serve_script(triton_version: str = TRITON_VERSION) -> str:
    """``docker/sagemaker/serve`` of that Triton release, as shipped in its NGC image."""
    name = f"sagemaker_serve-{triton_version}"
    return (resources.files("tritonctl.cloud") / "upstream" / name).read_text()


def container_environment(model: str, shm: ShmPlan) -> dict[str, str]:
    """``PrimaryContainer.Environment`` for serving ``model`` from ``/opt/ml/model``."""
    additional = [
        "--model-control-mode=none",
        f"--model-repository={SAGEMAKER_MODEL_DIR}",
        f"--cache-config=local,size={CACHE_BYTES}",
    ]
    return {
        "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": model,
        "SAGEMAKER_MULTI_MODEL": "true",
        "SAGEMAKER_TRITON_ADDITIONAL_ARGS": " ".join(additional),
        # The server reads the ping mode from its environment; the script sets it to "live" on
        # the multi-model branch only when the variable is already exported. Pin "ready".
        "SAGEMAKER_TRITON_PING_MODE": "ready",
        "SAGEMAKER_TRITON_OVERRIDE_PING_MODE": "ready",
        "SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE": str(shm.default_bytes),
        "SAGEMAKER_TRITON_SHM_GROWTH_BYTE_SIZE": str(shm.growth_bytes),
        # The script's default is verbose logging: a log line per request, on the hot path.
        "SAGEMAKER_TRITON_LOG_VERBOSE": "0",
    }


def localize(env: Mapping[str, str], model_dir: Path) -> dict[str, str]:
    """``env`` with the container's ``/opt/ml/model/`` pointing at ``model_dir`` instead."""
    local = f"{Path(model_dir).resolve()}/"
    return {key: value.replace(SAGEMAKER_MODEL_DIR, local) for key, value in env.items()}


def serve_command(
    model_dir: Path,
    env: Mapping[str, str],
    workdir: Path,
    *,
    triton_version: str = TRITON_VERSION,
) -> list[str]:
    """The ``tritonserver`` arguments that ``serve`` builds for ``env`` over ``model_dir``.

    ``env`` holds the container's variables as SageMaker would set them (``/opt/ml/model/``
    paths included; they are pointed at ``model_dir``). ``workdir`` receives the script, its
    recorder and the multi-model branch's empty placeholder repository, which the server then
    reads: keep it while the server runs. Raises ``ServeScriptError`` with the script's own
    message when it refuses to start the server.
    """
    model_dir = Path(model_dir).resolve()
    script = serve_script(triton_version)
    for line in (_SINGLE_REPO_LINE, _MULTI_REPO_LINE):
        if script.count(line) != 1:
            raise RuntimeError(f"the vendored serve script no longer holds '{line}' once")
    work = Path(workdir)
    script = script.replace(_SINGLE_REPO_LINE, f"SAGEMAKER_SINGLE_MODEL_REPO={model_dir}/")
    script = script.replace(_MULTI_REPO_LINE, f"SAGEMAKER_MULTI_MODEL_REPO={work / 'sagemaker'}")
    try:
        return recorded_argv(
            script, localize(env, model_dir), work, what="SageMaker's serve script"
        )
    except ScriptRefused as error:
        raise ServeScriptError(str(error)) from None


def quoted(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


# --- API request bodies ------------------------------------------------------------------------


def create_model(
    *,
    name: str,
    image: str,
    model_data_url: str,
    role_arn: str,
    environment: Mapping[str, str],
) -> dict[str, Any]:
    """``CreateModel``: one container, ``model.tar.gz`` unpacked into ``/opt/ml/model``."""
    return {
        "ModelName": name,
        "ExecutionRoleArn": role_arn,
        "PrimaryContainer": {
            "Image": image,
            "Mode": "SingleModel",
            "ModelDataUrl": model_data_url,
            "Environment": dict(environment),
        },
        "Tags": [{"Key": "created-by", "Value": "tritonctl"}],
    }


def endpoint_config(
    kind: str,
    *,
    name: str,
    model_name: str,
    instance_type: str = "ml.c5.xlarge",
    instance_count: int = 1,
    serverless_memory_mb: int = 6144,
    serverless_max_concurrency: int = 20,
    async_output_s3: str = "",
    async_max_concurrency: int = 4,
) -> dict[str, Any]:
    """``CreateEndpointConfig`` for a ``realtime``, ``serverless`` or ``async`` endpoint."""
    variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": model_name}
    if kind == "serverless":
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": serverless_memory_mb,
            "MaxConcurrency": serverless_max_concurrency,
        }
    elif kind in ("realtime", "async"):
        variant.update(
            InstanceType=instance_type,
            InitialInstanceCount=instance_count,
            InitialVariantWeight=1.0,
            # Loading the ONNX weights and starting the Python stubs takes longer than the
            # 60 s default on small instances.
            ContainerStartupHealthCheckTimeoutInSeconds=600,
        )
    else:
        raise ValueError(f"endpoint kind must be realtime, serverless or async, not {kind!r}")
    body: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [variant]}
    if kind == "async":
        body["AsyncInferenceConfig"] = {
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": async_max_concurrency},
            "OutputConfig": {"S3OutputPath": async_output_s3},
        }
    return body


def create_endpoint(*, name: str, config_name: str) -> dict[str, Any]:
    return {"EndpointName": name, "EndpointConfigName": config_name}
