"""``tritonctl package``: deployable artefacts for SageMaker, Vertex AI or Azure ML.

Every package holds ``model/`` (the model and what it needs, staged from ``model_repository/``),
the cloud's request bodies or YAML, ``request.json`` (one example request), ``commands.sh`` (the
commands a user runs, in order) and ``manifest.json`` (what was packaged, the image, the
shared-memory plan). SageMaker's also holds ``model.tar.gz``.
"""

from __future__ import annotations

import gzip
import json
import shlex
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tritonctl import __version__
from tritonctl.cloud import azureml, facts, sagemaker, selection, shm, vertex
from tritonctl.repository import ModelEntry

CLOUDS = ("sagemaker", "vertex", "azureml")


@dataclass
class Options:
    """Where the package goes in the cloud. The defaults are documentation placeholders
    (AWS's example account, ``example-project``...) that pass every offline check."""

    name: str = ""  # resource name; default tritonctl-<model>
    region: str = ""
    # SageMaker
    account: str = "111122223333"
    bucket: str = "amzn-s3-demo-bucket"
    prefix: str = "tritonctl"
    role_arn: str = ""
    instance_type: str = ""
    instance_count: int = 1
    # Vertex AI
    project: str = "example-project"
    gcs_bucket: str = "example-bucket"
    artifact_repository: str = "tritonctl"
    # Azure ML
    registry: str = "exampleregistry"
    # The NGC release the serving image is built on (facts.RELEASES)
    release: str = facts.DEFAULT_RELEASE

    def resolved(self, cloud: str) -> Options:
        defaults = {
            "sagemaker": ("us-east-1", "ml.c5.xlarge"),
            "vertex": ("us-central1", "n1-standard-4"),
            "azureml": ("eastus", "Standard_F4s_v2"),
        }[cloud]
        if self.release not in facts.RELEASES:
            raise ValueError(
                f"Triton release must be one of {', '.join(facts.RELEASES)}, not {self.release!r}"
            )
        copy = Options(**self.__dict__)
        copy.region = self.region or defaults[0]
        copy.instance_type = self.instance_type or defaults[1]
        copy.role_arn = (
            self.role_arn or f"arn:aws:iam::{self.account}:role/tritonctl-sagemaker-execution"
        )
        return copy

    @property
    def placeholders(self) -> list[str]:
        base = Options()
        return [
            name
            for name in ("account", "bucket", "project", "gcs_bucket", "registry")
            if getattr(self, name) == getattr(base, name)
        ]


@dataclass
class Package:
    cloud: str
    model: str
    folder: Path
    models: list[str]
    image: str
    shm: shm.ShmPlan
    release: str = facts.DEFAULT_RELEASE
    files: list[Path] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "model": self.model,
            "models": self.models,
            "image": self.image,
            "built_from": facts.ngc_image(self.release),
            "triton_version": facts.RELEASES[self.release],
            "tritonctl_version": __version__,
            "shared_memory": {
                "limit_bytes": self.shm.limit_bytes,
                "default_bytes": self.shm.default_bytes,
                "growth_bytes": self.shm.growth_bytes,
                "load_bytes": self.shm.load_bytes,
                "peak_bytes": self.shm.peak_bytes,
                "stock_load_bytes": self.shm.stock_load_bytes,
                "python_instances": self.shm.python_instances,
            },
            "files": sorted(str(p.relative_to(self.folder)) for p in self.files),
        }


#: Per cloud: the /dev/shm the container gets and the largest request body it can be sent. Azure
#: documents neither; it is planned like SageMaker, the tightest known.
SHM_LIMITS = {
    "sagemaker": (facts.SAGEMAKER_SHM_BYTES, facts.SAGEMAKER_REALTIME_PAYLOAD),
    "vertex": (facts.VERTEX_DEFAULT_SHM_MB * facts.MIB, facts.VERTEX_PAYLOAD),
    "azureml": (facts.SAGEMAKER_SHM_BYTES, facts.SAGEMAKER_REALTIME_PAYLOAD),
}


def stage_model(
    cloud: str, repository: Path, model: str, folder: Path
) -> tuple[list[ModelEntry], shm.ShmPlan]:
    """Stage ``model`` into ``folder`` and plan its shared memory for ``cloud``."""
    entries = selection.stage(repository, model, folder)
    limit, payload = SHM_LIMITS[cloud]
    return entries, shm.plan(entries, limit_bytes=limit, payload_limit=payload)


def resource_name(model: str, options: Options) -> str:
    return options.name or azureml.resource_name(model)


def image_uri(cloud: str, options: Options) -> str:
    tag = f"{facts.IMAGE_NAME}:{facts.image_tag(options.release)}"
    if cloud == "sagemaker":
        return f"{options.account}.dkr.ecr.{options.region}.amazonaws.com/{tag}"
    if cloud == "vertex":
        return (
            f"{options.region}-docker.pkg.dev/{options.project}/{options.artifact_repository}/{tag}"
        )
    return f"{options.registry}.azurecr.io/{tag}"


def write_model_tar(model_dir: Path, target: Path, *, level: int = 1) -> Path:
    """``model.tar.gz`` with the model folders at its top, reproducible byte for byte
    (sorted entries, zero times, root owner), as SageMaker unpacks it into /opt/ml/model.

    Gzip level 1: float weights hardly compress, and level 9 takes several times as long.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(target, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=level) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in selection.staged_files(model_dir):
            if not selection.shipped(path.relative_to(model_dir)):
                continue  # e.g. __pycache__ left by serving the folder locally
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(model_dir)))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return target


def example_request(entries: list[ModelEntry], model: str) -> dict[str, Any] | None:
    """One KServe v2 JSON request for the two shipped pipelines' inputs (text, or a digit as a
    plain-text PGM image, which JSON can carry); ``None`` for other inputs."""
    entry = next(e for e in entries if e.name == model)
    inputs = []
    for tensor in entry.config.input:
        if tensor.name == "TEXT":
            data = ["Triton serves this sentence from a managed endpoint."]
        elif tensor.name == "IMAGE":
            data = [_digit_pgm()]
        else:
            return None
        inputs.append({"name": tensor.name, "shape": [1, 1], "datatype": "BYTES", "data": data})
    return {"inputs": inputs}


def _digit_pgm() -> str:
    """A hand-drawn 0 as a plain PGM (P2): 8x8, values 0-16 like scikit-learn's digits."""
    rows = [
        "0 0 5 13 9 1 0 0",
        "0 0 13 15 10 15 5 0",
        "0 3 15 2 0 11 8 0",
        "0 4 12 0 0 8 8 0",
        "0 5 8 0 0 9 8 0",
        "0 4 11 0 1 12 7 0",
        "0 2 14 5 10 12 0 0",
        "0 0 6 13 10 0 0 0",
    ]
    return "P2\n8 8\n16\n" + "\n".join(rows) + "\n"


def _write_json(folder: Path, name: str, data: Any, files: list[Path]) -> Path:
    path = folder / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    files.append(path)
    return path


def _write_yaml(folder: Path, name: str, data: Any, files: list[Path]) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    files.append(path)
    return path


def _image_commands(cloud: str, image: str, options: Options) -> list[str]:
    local = f"{facts.IMAGE_NAME}:{facts.image_tag(options.release)}"
    build = [
        "# The serving image: the NGC image plus the Python backends' packages (Dockerfile at the",
        "# repository root; run from there, after `tritonctl build all`).",
    ]
    if options.release == facts.DEFAULT_RELEASE:
        build.append(f"docker build -t {local} .")
    else:
        build += [
            f"# NGC {options.release} (Triton {facts.RELEASES[options.release]}): pin it by digest",
            f"# (docker buildx imagetools inspect {facts.ngc_image(options.release)})",
            f"docker build --build-arg TRITON_IMAGE={facts.ngc_image(options.release)} -t {local} .",
        ]
    registry = image.split("/", 1)[0]
    if cloud == "sagemaker":
        login = [
            f"aws ecr create-repository --repository-name {facts.IMAGE_NAME} --region {options.region}",
            f"aws ecr get-login-password --region {options.region} | docker login --username AWS --password-stdin {registry}",
        ]
    elif cloud == "vertex":
        login = [
            f"gcloud artifacts repositories create {options.artifact_repository} --repository-format=docker --location={options.region} --project={options.project}",
            f"gcloud auth configure-docker {registry}",
        ]
    else:
        login = [f"az acr login --name {options.registry}"]
    return [*build, *login, f"docker tag {local} {image}", f"docker push {image}"]


def package_sagemaker(
    repository: Path, model: str, out: Path, options: Options, *, archive: bool = True
) -> Package:
    options = options.resolved("sagemaker")
    entries, plan = stage_model("sagemaker", repository, model, out / "model")
    image = image_uri("sagemaker", options)
    name = resource_name(model, options)
    files: list[Path] = [write_model_tar(out / "model", out / "model.tar.gz")] if archive else []
    env = sagemaker.container_environment(model, plan)
    data_url = f"s3://{options.bucket}/{options.prefix}/{name}/model.tar.gz"
    _write_json(out, "environment.json", env, files)
    _write_json(
        out,
        "create-model.json",
        sagemaker.create_model(
            name=name,
            image=image,
            model_data_url=data_url,
            role_arn=options.role_arn,
            environment=env,
        ),
        files,
    )
    async_output = f"s3://{options.bucket}/{options.prefix}/{name}/async-output/"
    for kind in ("realtime", "serverless", "async"):
        config_name = f"{name}-{kind}"
        _write_json(
            out,
            f"endpoint-config-{kind}.json",
            sagemaker.endpoint_config(
                kind,
                name=config_name,
                model_name=name,
                instance_type=options.instance_type,
                instance_count=options.instance_count,
                async_output_s3=async_output,
            ),
            files,
        )
        _write_json(
            out,
            f"create-endpoint-{kind}.json",
            sagemaker.create_endpoint(name=config_name, config_name=config_name),
            files,
        )
    request = example_request(entries, model)
    if request is not None:
        _write_json(out, "request.json", request, files)
    region = f"--region {options.region}"
    endpoint = f"{name}-realtime"
    commands = [
        *_image_commands("sagemaker", image, options),
        "# The model archive",
        f"aws s3 cp model.tar.gz {data_url} {region}",
        "# The real-time endpoint (endpoint-config-serverless.json / -async.json are the other two)",
        f"aws sagemaker create-model --cli-input-json file://create-model.json {region}",
        f"aws sagemaker create-endpoint-config --cli-input-json file://endpoint-config-realtime.json {region}",
        f"aws sagemaker create-endpoint --cli-input-json file://create-endpoint-realtime.json {region}",
        f"aws sagemaker wait endpoint-in-service --endpoint-name {endpoint} {region}",
        "# One request (KServe v2 JSON)",
        f"aws sagemaker-runtime invoke-endpoint --endpoint-name {endpoint} --content-type application/json --body fileb://request.json {region} response.json",
    ]
    return _finish("sagemaker", model, out, entries, image, plan, files, commands, options)


def package_vertex(repository: Path, model: str, out: Path, options: Options) -> Package:
    options = options.resolved("vertex")
    entries, plan = stage_model("vertex", repository, model, out / "model")
    image = image_uri("vertex", options)
    name = resource_name(model, options)
    spec = vertex.container_spec(model, image, plan)
    artifact_uri = f"gs://{options.gcs_bucket}/{options.prefix}/{name}"
    files: list[Path] = []
    _write_json(out, "container-spec.json", spec, files)
    _write_json(
        out,
        "model.json",
        vertex.model_resource(model, artifact_uri, spec, display_name=name),
        files,
    )
    request = example_request(entries, model)
    if request is not None:
        _write_json(out, "request.json", request, files)
    where = f"--region={options.region} --project={options.project}"
    args = "^|^" + "|".join(spec["args"])
    api = f"https://{options.region}-aiplatform.googleapis.com/v1/projects/{options.project}/locations/{options.region}"
    commands = [
        *_image_commands("vertex", image, options),
        "# The artifact folder (Vertex copies it and passes its copy as AIP_STORAGE_URI)",
        f"gcloud storage cp -r 'model/*' {artifact_uri}/",
        "# The model: gcloud splits list flags on commas, so ^|^ makes '|' the separator",
        " ".join(
            [
                f"gcloud ai models upload {where} --display-name={name}",
                f"--artifact-uri={artifact_uri}",
                f"--container-image-uri={image}",
                "--container-command=tritonserver",
                f"--container-args={shlex.quote(args)}",
                f"--container-ports={spec['ports'][0]['containerPort']}",
                f"--container-predict-route={spec['predictRoute']}",
                f"--container-health-route={spec['healthRoute']}",
                f"--container-shared-memory-size-mb={spec['sharedMemorySizeMb']}",
            ]
        ),
        f"gcloud ai endpoints create {where} --display-name={name}",
        "# MODEL_ID and ENDPOINT_ID are printed by the two commands above",
        f"gcloud ai endpoints deploy-model ENDPOINT_ID {where} --model=MODEL_ID --display-name={name} --machine-type={options.instance_type} --min-replica-count={options.instance_count} --max-replica-count={max(2, options.instance_count)}",
        "# One request: rawPredict passes the KServe v2 body through unchanged",
        f'curl -X POST -H "Authorization: Bearer $(gcloud auth print-access-token)" -H "Content-Type: application/json" {api}/endpoints/ENDPOINT_ID:rawPredict -d @request.json',
    ]
    return _finish("vertex", model, out, entries, image, plan, files, commands, options)


def package_azureml(repository: Path, model: str, out: Path, options: Options) -> Package:
    options = options.resolved("azureml")
    entries, plan = stage_model("azureml", repository, model, out / "model")
    image = image_uri("azureml", options)
    files: list[Path] = []
    _write_yaml(out, "model.yml", azureml.model_yaml(model), files)
    _write_yaml(out, "endpoint.yml", azureml.endpoint_yaml(model), files)
    _write_yaml(
        out,
        "deployment.yml",
        azureml.deployment_yaml(
            model,
            image,
            [e.name for e in entries],
            instance_type=options.instance_type,
            instance_count=options.instance_count,
        ),
        files,
    )
    request = example_request(entries, model)
    if request is not None:
        _write_json(out, "request.json", request, files)
    endpoint = azureml.resource_name(model)
    ws = "--resource-group RESOURCE_GROUP --workspace-name WORKSPACE"
    commands = [
        *_image_commands("azureml", image, options),
        "# The model, the endpoint, the deployment (the image's own command serves /models)",
        f"az ml model create --file model.yml {ws}",
        f"az ml online-endpoint create --file endpoint.yml {ws}",
        f"az ml online-deployment create --file deployment.yml --all-traffic {ws}",
        "# One request: the scoring route is Triton's own HTTP API",
        f"KEY=$(az ml online-endpoint get-credentials --name {endpoint} {ws} --query primaryKey -o tsv)",
        f"URI=$(az ml online-endpoint show --name {endpoint} {ws} --query scoring_uri -o tsv)",
        f'curl -X POST -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" "${{URI%/*}}/v2/models/{model}/infer" -d @request.json',
    ]
    return _finish("azureml", model, out, entries, image, plan, files, commands, options)


def _finish(
    cloud: str,
    model: str,
    out: Path,
    entries: list[ModelEntry],
    image: str,
    plan: shm.ShmPlan,
    files: list[Path],
    commands: list[str],
    options: Options,
) -> Package:
    package = Package(
        cloud, model, out, [e.name for e in entries], image, plan, options.release, files, commands
    )
    script = out / "commands.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f"# Written by `tritonctl package {cloud} --model {model}`: run from this folder.\n"
        "set -euo pipefail\n" + "\n".join(commands) + "\n"
    )
    script.chmod(0o755)
    package.files.append(script)
    manifest = out / "manifest.json"
    package.files.append(manifest)
    manifest.write_text(json.dumps(package.manifest(), indent=2) + "\n")
    return package


def package(
    cloud: str,
    repository: Path,
    model: str,
    out: Path,
    options: Options | None = None,
    *,
    archive: bool = True,
) -> Package:
    """Write the ``cloud`` package of ``model`` into ``out`` (created; replaced files).

    ``archive=False`` leaves out SageMaker's ``model.tar.gz`` (compressing the text model's
    weights takes seconds): for serving the ``model`` folder locally, not for deploying.
    """
    if cloud not in CLOUDS:
        raise ValueError(f"cloud must be one of {', '.join(CLOUDS)}, not {cloud!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = options or Options()
    repository = Path(repository)
    if cloud == "sagemaker":
        return package_sagemaker(repository, model, out, options, archive=archive)
    if cloud == "vertex":
        return package_vertex(repository, model, out, options)
    return package_azureml(repository, model, out, options)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{folder} holds no manifest.json: not a `tritonctl package` folder"
        )
    return dict(json.loads(path.read_text()))


def tar_members(path: Path) -> list[str]:
    """The names inside ``model.tar.gz`` (for checks and tests)."""
    with tarfile.open(path, "r:gz") as tar:
        return tar.getnames()


__all__ = ["CLOUDS", "Options", "Package", "package", "read_manifest", "tar_members"]
