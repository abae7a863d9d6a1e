"""Offline checks of a package with each cloud's own SDK: no credentials, no network.

- SageMaker: botocore's ``sagemaker`` service model. Its parameter validator checks required
  members, types and unknown keys; ``check_shape`` adds what the model declares but the
  validator skips: string lengths and list/map sizes (``min``/``max``), numeric maxima,
  ``pattern`` and ``enum``.
- Vertex AI: ``google-cloud-aiplatform``'s ``Model`` / ``ModelContainerSpec`` proto types parse
  the JSON (unknown fields and wrong types fail), plus the routes, port and arguments Triton
  needs.
- Azure ML: ``azure-ai-ml``'s ``load_model`` / ``load_online_endpoint`` /
  ``load_online_deployment`` (its marshmallow schemas), plus the endpoint naming rule.

Each check returns a list of problems, each naming the file and the field.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from tritonctl.cloud.package import read_manifest

#: Package file -> the SageMaker operation whose input it is.
SAGEMAKER_BODIES = {
    "create-model.json": "CreateModel",
    "endpoint-config-realtime.json": "CreateEndpointConfig",
    "endpoint-config-serverless.json": "CreateEndpointConfig",
    "endpoint-config-async.json": "CreateEndpointConfig",
    "create-endpoint-realtime.json": "CreateEndpoint",
    "create-endpoint-serverless.json": "CreateEndpoint",
    "create-endpoint-async.json": "CreateEndpoint",
}


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> Any:
    """AWS patterns use Java's ``\\p{L}`` classes, which ``re`` lacks; ``regex`` has them."""
    import regex

    return regex.compile(pattern)


def check_shape(value: Any, shape: Any, path: str) -> Iterator[str]:
    """What a botocore ``shape``'s metadata forbids in ``value`` (lengths, sizes, patterns,
    enums), recursively. Types and required members are the parameter validator's job."""
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure" and isinstance(value, Mapping):
        for name, member in shape.members.items():
            if name in value:
                yield from check_shape(value[name], member, f"{path}.{name}")
        return
    if kind == "list" and isinstance(value, list):
        yield from _bounds(len(value), meta, path, "entries")
        for index, item in enumerate(value):
            yield from check_shape(item, shape.member, f"{path}[{index}]")
        return
    if kind == "map" and isinstance(value, Mapping):
        yield from _bounds(len(value), meta, path, "entries")
        for key, item in value.items():
            yield from check_shape(key, shape.key, f"{path} key {key!r}")
            yield from check_shape(item, shape.value, f"{path}[{key!r}]")
        return
    if kind == "string" and isinstance(value, str):
        yield from _bounds(len(value), meta, path, "characters")
        if shape.enum and value not in shape.enum:
            shown = ", ".join(shape.enum[:8]) + (", ..." if len(shape.enum) > 8 else "")
            yield f"{path}: {value!r} is not one of {shape.name}'s values ({shown})"
        pattern = meta.get("pattern")
        if pattern and not _pattern(pattern).fullmatch(value):
            yield f"{path}: {value!r} does not match {shape.name}'s pattern {pattern}"
        return
    # Numbers: botocore's validator checks the minimum itself, not the maximum.
    numeric = kind in ("integer", "long", "float", "double") and isinstance(value, int | float)
    if numeric and "max" in meta and value > meta["max"]:
        yield f"{path}: {value} is above {shape.name}'s maximum {meta['max']}"


def _bounds(size: int, meta: Mapping[str, Any], path: str, unit: str) -> Iterator[str]:
    if "min" in meta and size < meta["min"]:
        yield f"{path}: {size} {unit}, fewer than the minimum {meta['min']}"
    if "max" in meta and size > meta["max"]:
        yield f"{path}: {size} {unit}, more than the maximum {meta['max']}"


@lru_cache(maxsize=1)
def _sagemaker_service() -> Any:
    """botocore's ``sagemaker`` service model (a large JSON file: loaded once)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def sagemaker_operation(name: str) -> Any:
    return _sagemaker_service().operation_model(name)


def check_sagemaker_body(body: Mapping[str, Any], operation: str, where: str = "") -> list[str]:
    """Problems botocore's validator and the shape model find in one request body."""
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    shape = sagemaker_operation(operation).input_shape
    problems: list[str] = []
    try:
        validate_parameters(dict(body), shape)
    except ParamValidationError as error:
        report = str(error.kwargs.get("report", error))
        problems += [line.strip() for line in report.splitlines() if line.strip()][1:] or [report]
    problems += list(check_shape(body, shape, operation))
    prefix = f"{where}: " if where else ""
    return [prefix + p for p in problems]


def check_sagemaker(folder: Path) -> list[str]:
    problems: list[str] = []
    for name, operation in SAGEMAKER_BODIES.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: missing")
            continue
        problems += check_sagemaker_body(json.loads(path.read_text()), operation, name)
    return problems


def check_vertex(folder: Path) -> list[str]:
    from google.protobuf.json_format import ParseError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # grpcio version notices, not our problem
        from google.cloud.aiplatform_v1.types import Model

    path = folder / "model.json"
    if not path.exists():
        return ["model.json: missing"]
    text = path.read_text()
    try:
        model = Model.from_json(text)
    except ParseError as error:
        return [f"model.json: {error}"]
    spec = model.container_spec
    problems = []
    if not model.display_name:
        problems.append("model.json: displayName is required")
    if not model.artifact_uri.startswith("gs://"):
        problems.append(
            f"model.json: artifactUri must be a gs:// folder, not {model.artifact_uri!r}"
        )
    if not spec.image_uri:
        problems.append("model.json: containerSpec.imageUri is required")
    for field_name in ("predict_route", "health_route"):
        route = getattr(spec, field_name)
        if not route.startswith("/"):
            problems.append(
                f"model.json: containerSpec.{field_name} must start with '/', not {route!r}"
            )
    if len(spec.ports) != 1 or not 1 <= spec.ports[0].container_port <= 65535:
        problems.append("model.json: containerSpec.ports must hold one port in 1-65535")
    if len(read_manifest(folder).get("models", [])) > 1 and not any(
        a.startswith("--vertex-ai-default-model=") for a in spec.args
    ):
        problems.append(
            "model.json: the repository holds several models, so containerSpec.args needs "
            "--vertex-ai-default-model (Triton refuses to start without it)"
        )
    if not any(a == "--model-control-mode=none" for a in spec.args):
        problems.append(
            "model.json: containerSpec.args must keep --model-control-mode=none: the Vertex "
            "redirect header reaches the load/unload routes otherwise"
        )
    if spec.shared_memory_size_mb <= 0:
        problems.append("model.json: containerSpec.sharedMemorySizeMb must be positive")
    spec_file = folder / "container-spec.json"
    if spec_file.exists() and json.loads(spec_file.read_text()) != json.loads(text).get(
        "containerSpec"
    ):
        problems.append("container-spec.json: differs from model.json's containerSpec")
    return problems


_AZURE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]")


def check_azureml(folder: Path) -> list[str]:
    from azure.ai.ml import load_model, load_online_deployment, load_online_endpoint
    from azure.ai.ml.exceptions import ValidationException
    from marshmallow import ValidationError

    problems: list[str] = []
    loaders = {
        "model.yml": load_model,
        "endpoint.yml": load_online_endpoint,
        "deployment.yml": load_online_deployment,
    }
    loaded: dict[str, Any] = {}
    for name, loader in loaders.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: missing")
            continue
        try:
            loaded[name] = loader(source=path)
        except (ValidationError, ValidationException, ValueError) as error:
            problems.append(f"{name}: {error}")
    endpoint = loaded.get("endpoint.yml")
    if endpoint is not None and not _AZURE_NAME.fullmatch(endpoint.name or ""):
        problems.append(
            f"endpoint.yml: name {endpoint.name!r} must be 3-32 characters: a letter, then "
            "letters, digits or '-', not ending in '-'"
        )
    model = loaded.get("model.yml")
    if model is not None and model.type != "triton_model":
        problems.append(f"model.yml: type must be triton_model, not {model.type!r}")
    deployment = loaded.get("deployment.yml")
    if (
        deployment is not None
        and endpoint is not None
        and deployment.endpoint_name != endpoint.name
    ):
        problems.append(
            f"deployment.yml: endpoint_name {deployment.endpoint_name!r} is not endpoint.yml's "
            f"name {endpoint.name!r}"
        )
    return problems


def check(folder: Path) -> list[str]:
    """Every problem in the package ``folder`` (its manifest says which cloud)."""
    folder = Path(folder)
    cloud = read_manifest(folder)["cloud"]
    checks = {"sagemaker": check_sagemaker, "vertex": check_vertex, "azureml": check_azureml}
    return checks[cloud](folder)
