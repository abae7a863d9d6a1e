"""``tritonctl deploy --target sagemaker``: a package to a SageMaker endpoint through boto3.

The steps are the ones ``commands.sh`` prints: upload ``model.tar.gz`` to its ``ModelDataUrl``,
``CreateModel``, ``CreateEndpointConfig``, ``CreateEndpoint``, wait until ``InService``. The
bodies are checked offline first. ``endpoint_url`` points boto3 at another API server: the tests
and CI use moto's server, an emulator of the AWS APIs (it runs no container and no model).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tritonctl.cloud.package import read_manifest
from tritonctl.cloud.validate import check_sagemaker

KINDS = ("realtime", "serverless", "async")


class DeployError(RuntimeError):
    """The package is not deployable, or an AWS call failed; the message says which."""


def _body(folder: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((folder / name).read_text()))


def deploy_sagemaker(
    folder: Path,
    *,
    kind: str = "realtime",
    region: str | None = None,
    endpoint_url: str | None = None,
    wait: bool = True,
    timeout_s: int = 1800,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Deploy the SageMaker package in ``folder``; return ``DescribeEndpoint``'s answer."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("cloud") != "sagemaker":
        raise DeployError(f"{folder} is a {manifest.get('cloud')} package, not a SageMaker one")
    if kind not in KINDS:
        raise DeployError(f"endpoint kind must be one of {', '.join(KINDS)}, not {kind!r}")
    problems = check_sagemaker(folder)
    if problems:
        raise DeployError("the package does not validate:\n  " + "\n  ".join(problems))
    model = _body(folder, "create-model.json")
    config = _body(folder, f"endpoint-config-{kind}.json")
    endpoint = _body(folder, f"create-endpoint-{kind}.json")
    data_url = urlparse(model["PrimaryContainer"]["ModelDataUrl"])
    if data_url.scheme != "s3":
        raise DeployError(
            f"ModelDataUrl must be an s3:// URL to upload to, not {data_url.geturl()}"
        )
    session = boto3.session.Session(region_name=region or _region(model))
    s3 = session.client("s3", endpoint_url=endpoint_url)
    sagemaker = session.client("sagemaker", endpoint_url=endpoint_url)
    name = endpoint["EndpointName"]
    try:
        archive = folder / "model.tar.gz"
        log(
            f"uploading {archive.name} ({archive.stat().st_size / 1e6:.1f} MB) to {data_url.geturl()}"
        )
        s3.upload_file(str(archive), data_url.netloc, data_url.path.lstrip("/"))
        log(f"CreateModel {model['ModelName']}")
        sagemaker.create_model(**model)
        log(f"CreateEndpointConfig {config['EndpointConfigName']} ({kind})")
        sagemaker.create_endpoint_config(**config)
        log(f"CreateEndpoint {name}")
        sagemaker.create_endpoint(**endpoint)
        if wait:
            log(f"waiting for {name} to be InService (up to {timeout_s} s)")
            waiter = sagemaker.get_waiter("endpoint_in_service")
            delay = 30 if endpoint_url is None else 1
            waiter.wait(
                EndpointName=name,
                WaiterConfig={"Delay": delay, "MaxAttempts": max(1, timeout_s // delay)},
            )
        described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
    except (ClientError, BotoCoreError, WaiterError) as error:
        raise DeployError(f"SageMaker deploy of {name} failed: {error}") from error
    return described


def _region(model: dict[str, Any]) -> str | None:
    """The region of the image's ECR registry (``<account>.dkr.ecr.<region>.amazonaws.com``)."""
    host = model["PrimaryContainer"]["Image"].split("/", 1)[0].split(".")
    return host[3] if len(host) > 4 and host[1:3] == ["dkr", "ecr"] else None
