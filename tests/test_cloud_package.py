"""``tritonctl package``: what goes into each cloud's package, the SageMaker ``serve`` script's
own behaviour on it, the shared-memory plan, and the offline checks with each cloud's SDK
(including that a broken field is caught)."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tritonctl.cloud import azureml, facts, sagemaker, selection, shm, validate, vertex
from tritonctl.cloud.package import Options, package, tar_members

pytest.importorskip(
    "botocore", reason="the cloud SDKs are in the `cloud` extra: pip install -e '.[cloud]'"
)

TEXT_MODELS = ["pooling", "text_embedding", "text_encoder", "tokenizer"]
DIGIT_MODELS = [
    "classify_postprocess",
    "digit_classifier",
    "digits_pruned_channels",
    "image_preprocess",
]
#: sha256 of docker/sagemaker/serve in triton-inference-server/server at v2.51.0 and v2.60.0.
UPSTREAM_SERVE_SHA256 = {
    "2.51.0": "7bb168eac6c48d1011d4a3ee78e3030dacce37811f9918c16b10e3e6c9ac6324",
    "2.60.0": "2033aa35062aa7a16c00f5c034c920f8d625bb05dc0ae7349f6f928d54e775e8",
}


@pytest.fixture(scope="module")
def packages(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for cloud in ("sagemaker", "vertex", "azureml"):
        folder = tmp_path_factory.mktemp(cloud)
        package(cloud, model_repository, "digit_classifier", folder)
        out[cloud] = folder
    return out


@pytest.mark.parametrize(
    ("model", "expected"), [("text_embedding", TEXT_MODELS), ("digit_classifier", DIGIT_MODELS)]
)
def test_closure_is_the_ensemble_and_its_steps(
    model_repository: Path, model: str, expected: list[str]
) -> None:
    assert [e.name for e in selection.closure(model_repository, model)] == expected


def test_unknown_model_names_the_ensembles(model_repository: Path) -> None:
    with pytest.raises(selection.SelectionError, match="text_embedding"):
        selection.closure(model_repository, "no_such_model")


def test_staging_checks_the_selected_models_only(model_repository: Path, tmp_path: Path) -> None:
    """A selected model with a problem stops the package, named; a broken model the ensemble
    does not use does not."""
    repository = tmp_path / "repository"
    for name in [*DIGIT_MODELS, "digits_student"]:
        shutil.copytree(model_repository / name, repository / name)
    (repository / "digits_student" / "1" / "model.onnx").unlink()
    selection.stage(repository, "digit_classifier", tmp_path / "ok", python_sources=tmp_path)
    (repository / "digits_pruned_channels" / "1" / "model.onnx").unlink()
    with pytest.raises(selection.SelectionError, match="digits_pruned_channels") as caught:
        selection.stage(repository, "digit_classifier", tmp_path / "no", python_sources=tmp_path)
    assert "digits_student" not in str(caught.value)


def test_sagemaker_archive_holds_only_the_ensembles_models_at_its_top(
    packages: dict[str, Path],
) -> None:
    names = tar_members(packages["sagemaker"] / "model.tar.gz")
    assert sorted({n.split("/", 1)[0] for n in names}) == DIGIT_MODELS
    assert "config.pbtxt" not in names
    assert "digit_classifier/1" in names  # the ensemble's version folder, which git cannot keep
    assert "digits_pruned_channels/1/model.onnx" in names
    assert "image_preprocess/1/model.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".bak")]


def test_model_archive_is_reproducible(model_repository: Path, tmp_path: Path) -> None:
    first = package("sagemaker", model_repository, "digit_classifier", tmp_path / "a")
    second = package("sagemaker", model_repository, "digit_classifier", tmp_path / "b")
    digest = [
        hashlib.sha256((p.folder / "model.tar.gz").read_bytes()).hexdigest()
        for p in (first, second)
    ]
    assert digest[0] == digest[1]


@pytest.mark.parametrize("version", sorted(UPSTREAM_SERVE_SHA256))
def test_vendored_serve_script_is_upstreams_unchanged(version: str) -> None:
    text = sagemaker.serve_script(version)
    assert (
        "tritonserver --allow-sagemaker=true --allow-http=false --model-control-mode=explicit"
        in text
    )
    assert hashlib.sha256(text.encode()).hexdigest() == UPSTREAM_SERVE_SHA256[version]


def test_the_chart_releases_serve_script_also_gets_model_control_off(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    """The cloud runs 25.08's script (Triton 2.60.0) by default: same flags from the package."""
    folder = packages["sagemaker"]
    env = json.loads((folder / "environment.json").read_text())
    old = sagemaker.serve_command(folder / "model", env, tmp_path / "a", triton_version="2.51.0")
    new = sagemaker.serve_command(folder / "model", env, tmp_path / "b", triton_version="2.60.0")
    strip = lambda args: [a.replace(str(tmp_path / "b"), str(tmp_path / "a")) for a in args]  # noqa: E731
    assert strip(new) == old
    assert [a for a in new if a.startswith("--model-control-mode=")][
        -1
    ] == "--model-control-mode=none"


def test_serve_script_gets_model_control_off_from_the_packaged_environment(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    folder = packages["sagemaker"]
    env = json.loads((folder / "environment.json").read_text())
    args = sagemaker.serve_command(
        folder / "model", {**env, "SAGEMAKER_BIND_TO_PORT": "9090"}, tmp_path
    )
    assert args[:3] == [
        "--allow-sagemaker=true",
        "--allow-http=false",
        "--model-control-mode=explicit",
    ]
    modes = [a for a in args if a.startswith("--model-control-mode=")]
    assert modes[-1] == "--model-control-mode=none"  # Triton keeps the last one
    assert not [a for a in args if a.startswith("--load-model")]
    assert f"--model-repository={(folder / 'model').resolve()}/" in args
    assert "--sagemaker-port=9090" in args
    assert "--backend-config=python,shm-default-byte-size=1048576" in args


def test_stock_serve_script_uses_explicit_mode_and_16_mib_regions(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    args = sagemaker.serve_command(
        packages["sagemaker"] / "model",
        {"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "digit_classifier"},
        tmp_path,
    )
    assert "--load-model=digit_classifier" in args
    assert [a for a in args if a.startswith("--model-control-mode=")] == [
        "--model-control-mode=explicit"
    ]
    assert "--backend-config=python,shm-default-byte-size=16777216" in args


def test_serve_script_refusals_come_through(packages: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(sagemaker.ServeScriptError, match="More than 1 model directory"):
        sagemaker.serve_command(packages["sagemaker"] / "model", {}, tmp_path / "a")
    flat = tmp_path / "flat"
    shutil.copytree(packages["sagemaker"] / "model" / "digit_classifier", flat)
    with pytest.raises(sagemaker.ServeScriptError, match="Incorrect directory structure"):
        sagemaker.serve_command(flat, {}, tmp_path / "b")


def test_shm_plan_counts_python_instances_and_fails_when_they_cannot_fit(
    model_repository: Path,
) -> None:
    entries = selection.closure(model_repository, "text_embedding")
    plan = shm.plan(
        entries,
        limit_bytes=facts.SAGEMAKER_SHM_BYTES,
        payload_limit=facts.SAGEMAKER_REALTIME_PAYLOAD,
    )
    assert (
        plan.python_instances == 2
    )  # tokenizer and pooling; the encoder is native ORT in the image
    assert plan.load_bytes == 2 * facts.MIB
    assert plan.stock_load_bytes == 32 * facts.MIB
    # pooling's largest batch: 64 rows of the encoder's pooled 384 floats in, 384 floats out
    pooling = next(n for n in plan.needs if n.model == "pooling")
    assert pooling.peak_bytes == 64 * (384 * 4 + 384 * 4)
    # the tokenizer: one request body of text in, 64 rows x 256 token ids and mask out
    tokenizer = next(n for n in plan.needs if n.model == "tokenizer")
    assert tokenizer.peak_bytes == facts.SAGEMAKER_REALTIME_PAYLOAD + 64 * 2 * 256 * 8
    assert plan.peak_bytes <= facts.SAGEMAKER_SHM_BYTES
    with pytest.raises(shm.ShmError, match="lower max_batch_size"):
        shm.plan(entries, limit_bytes=4 * facts.MIB, payload_limit=facts.SAGEMAKER_REALTIME_PAYLOAD)


def test_instance_counts_follow_tritons_cpu_defaults(model_repository: Path) -> None:
    """Triton gives an ONNX Runtime model with no instance count 2 CPU instances (seen: two
    stand-in stubs for the group-less digits model), a Python model 1; the local stand-in's
    share of /dev/shm counts both."""
    entries = {e.name: e for e in selection.closure(model_repository, "digit_classifier")}
    assert not entries["digits_pruned_channels"].config.instance_group
    assert shm.instance_count(entries["digits_pruned_channels"]) == 2
    assert shm.instance_count(entries["image_preprocess"]) == 1
    plan = shm.plan(
        list(entries.values()),
        limit_bytes=facts.SAGEMAKER_SHM_BYTES,
        payload_limit=facts.SAGEMAKER_REALTIME_PAYLOAD,
    )
    assert plan.python_instances == 2
    assert plan.local_extra_bytes == 2 * facts.MIB  # two stand-in regions at their 1 MiB start


def test_vertex_args_expand_like_kubernetes() -> None:
    args = ["--model-repository=$(AIP_STORAGE_URI)", "$$(AIP_STORAGE_URI)", "$(UNSET)", "$5"]
    assert vertex.expand(args, {"AIP_STORAGE_URI": "gs://b/p"}) == [
        "--model-repository=gs://b/p",
        "$(AIP_STORAGE_URI)",
        "$(UNSET)",
        "$5",
    ]


def test_azure_runs_the_images_own_command_locked_with_a_key_drawn_at_start(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    """The serving image's command (docker/entrypoint.sh) with the deployment's variables, run
    with a recording tritonserver: the package's models, /models, and the admin APIs locked
    behind a key that differs at every start."""
    from tritonctl import paths
    from tritonctl.cloud.recorder import recorded_argv

    deployment = yaml.safe_load((packages["azureml"] / "deployment.yml").read_text())
    env = deployment["environment_variables"]
    script = (paths.project_root() / azureml.ENTRYPOINT).read_text()
    keys = []
    for run in range(2):
        args = recorded_argv(script, env, tmp_path / f"run{run}")
        locked = [a for a in args if a.startswith("--http-restricted-api=")]
        assert locked == [
            "--http-restricted-api=model-repository,shared-memory,trace,logging:admin-key="
            + (tmp_path / f"run{run}" / "tritonctl-admin-key").read_text().strip()
        ]
        keys.append(locked[0].rsplit("=", 1)[1])
        assert f"--model-repository={facts.AZUREML_MODEL_DIR}" in args
        loaded = [a.split("=", 1)[1] for a in args if a.startswith("--load-model=")]
        assert sorted(loaded) == DIGIT_MODELS and loaded[-1] == "digit_classifier"
    assert all(len(k) >= 32 for k in keys) and keys[0] != keys[1]


# --- offline validation with each cloud's own SDK ------------------------------------------------


@pytest.mark.parametrize("cloud", ["sagemaker", "vertex", "azureml"])
def test_packages_validate_with_the_clouds_sdk(packages: dict[str, Path], cloud: str) -> None:
    assert validate.check(packages[cloud]) == []


SAGEMAKER_BREAKS = [
    ("create-model.json", lambda b: b.update(ModelName="m" * 64), "more than the maximum 63"),
    (
        "create-model.json",
        lambda b: b["PrimaryContainer"].update(ModelDataUrl="gs://bucket/model.tar.gz"),
        "does not match Url's pattern",
    ),
    (
        "create-model.json",
        lambda b: b["PrimaryContainer"]["Environment"].update({f"K{i}": "v" for i in range(100)}),
        "more than the maximum 100",
    ),
    (
        "create-model.json",
        lambda b: b["PrimaryContainer"]["Environment"].update({"1BAD": "v"}),
        "EnvironmentKey's pattern",
    ),
    (
        "create-model.json",
        lambda b: b.update(Colour="blue"),
        'Unknown parameter in input: "Colour"',
    ),
    (
        "create-model.json",
        lambda b: b.pop("ModelName"),
        'Missing required parameter in input: "ModelName"',
    ),
    (
        "create-model.json",
        lambda b: b["PrimaryContainer"].update(Mode="Solo"),
        "not one of ContainerMode's values",
    ),
    (
        "endpoint-config-serverless.json",
        lambda b: b["ProductionVariants"][0]["ServerlessConfig"].update(MemorySizeInMB=8192),
        "maximum 6144",
    ),
    (
        "endpoint-config-serverless.json",
        lambda b: b["ProductionVariants"][0]["ServerlessConfig"].update(MemorySizeInMB=512),
        "valid min value: 1024",
    ),
    (
        "endpoint-config-realtime.json",
        lambda b: b["ProductionVariants"][0].update(InstanceType="ml.c5.huge"),
        "not one of ProductionVariantInstanceType's values",
    ),
    (
        "endpoint-config-realtime.json",
        lambda b: b["ProductionVariants"][0].update(InitialInstanceCount="two"),
        "Invalid type",
    ),
    (
        "create-endpoint-realtime.json",
        lambda b: b.update(EndpointName="bad_name"),
        "EndpointName's pattern",
    ),
]


@pytest.mark.parametrize(
    ("file", "breaks", "message"), SAGEMAKER_BREAKS, ids=[m for _, _, m in SAGEMAKER_BREAKS]
)
def test_a_broken_sagemaker_field_is_caught(
    packages: dict[str, Path], tmp_path: Path, file: str, breaks, message: str
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "pkg"
    shutil.copytree(
        packages["sagemaker"], folder, ignore=shutil.ignore_patterns("model", "model.tar.gz")
    )
    body = json.loads((folder / file).read_text())
    breaks(body)
    (folder / file).write_text(json.dumps(body))
    problems = validate.check(folder)
    assert any(message in p and file in p for p in problems), problems


VERTEX_BREAKS = [
    (lambda m: m["containerSpec"].update(ports=[{"containerPort": "eighty"}]), "containerPort"),
    (lambda m: m["containerSpec"].update(sharedMemSize=64), 'no field named "sharedMemSize"'),
    (lambda m: m.update(artifactUri="s3://bucket/model"), "gs:// folder"),
    (lambda m: m["containerSpec"].update(predictRoute="predict"), "must start with '/'"),
    (
        lambda m: m["containerSpec"].update(
            args=[a for a in m["containerSpec"]["args"] if "default-model" not in a]
        ),
        "--vertex-ai-default-model",
    ),
    (
        lambda m: m["containerSpec"].update(
            args=[a for a in m["containerSpec"]["args"] if "control-mode" not in a]
        ),
        "--model-control-mode=none",
    ),
]


@pytest.mark.parametrize(("breaks", "message"), VERTEX_BREAKS, ids=[m for _, m in VERTEX_BREAKS])
def test_a_broken_vertex_field_is_caught(
    packages: dict[str, Path], tmp_path: Path, breaks, message: str
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "pkg"
    shutil.copytree(packages["vertex"], folder, ignore=shutil.ignore_patterns("model"))
    model = json.loads((folder / "model.json").read_text())
    breaks(model)
    (folder / "model.json").write_text(json.dumps(model))
    (folder / "container-spec.json").write_text(json.dumps(model["containerSpec"]))
    problems = validate.check(folder)
    assert any(message in p for p in problems), problems


AZURE_BREAKS = [
    ("deployment.yml", lambda d: d.pop("instance_type"), "instance_type"),
    ("deployment.yml", lambda d: d.update(instance_count="two"), "Not a valid integer"),
    ("model.yml", lambda d: d.update(type="triton"), "triton_model"),
    ("endpoint.yml", lambda d: d.update(name="1-starts-with-a-digit"), "name"),
    (
        "deployment.yml",
        lambda d: d["environment"]["inference_config"].pop("scoring_route"),
        "scoring_route",
    ),
]


@pytest.mark.parametrize(
    ("file", "breaks", "message"), AZURE_BREAKS, ids=[f"{f}:{m}" for f, _, m in AZURE_BREAKS]
)
def test_a_broken_azureml_field_is_caught(
    packages: dict[str, Path], tmp_path: Path, file: str, breaks, message: str
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "pkg"
    shutil.copytree(packages["azureml"], folder)
    data = yaml.safe_load((folder / file).read_text())
    breaks(data)
    (folder / file).write_text(yaml.safe_dump(data))
    problems = validate.check(folder)
    assert any(file in p and message in p for p in problems), problems


def test_sagemaker_bodies_use_the_packaged_image_environment_and_archive(
    packages: dict[str, Path],
) -> None:
    folder = packages["sagemaker"]
    model = json.loads((folder / "create-model.json").read_text())
    container = model["PrimaryContainer"]
    assert (
        container["Image"]
        == f"111122223333.dkr.ecr.us-east-1.amazonaws.com/{facts.IMAGE_NAME}:{facts.image_tag()}"
    )
    assert facts.image_tag().startswith("25.08-")  # the NGC release the chart deploys
    assert container["Environment"] == json.loads((folder / "environment.json").read_text())
    assert container["ModelDataUrl"].endswith("/model.tar.gz")
    kinds = {
        k: json.loads((folder / f"endpoint-config-{k}.json").read_text())
        for k in ("realtime", "serverless", "async")
    }
    assert "ServerlessConfig" in kinds["serverless"]["ProductionVariants"][0]
    assert kinds["async"]["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"].startswith(
        "s3://"
    )
    assert "InstanceType" in kinds["realtime"]["ProductionVariants"][0]


def test_commands_reference_the_files_they_use(packages: dict[str, Path]) -> None:
    for cloud, folder in packages.items():
        script = (folder / "commands.sh").read_text()
        assert (
            subprocess.run(["bash", "-n", str(folder / "commands.sh")], check=False).returncode == 0
        )
        for reference in [
            w.split("://", 1)[1]
            for w in script.split()
            if w.startswith("file://") or w.startswith("fileb://")
        ]:
            assert (folder / reference).exists(), (cloud, reference)
        assert "docker push" in script


def test_vertex_spec_carries_the_shm_plan_and_routes(packages: dict[str, Path]) -> None:
    spec = json.loads((packages["vertex"] / "container-spec.json").read_text())
    assert spec["command"] == ["tritonserver"]
    assert "--model-repository=$(AIP_STORAGE_URI)" in spec["args"]
    assert "--vertex-ai-default-model=digit_classifier" in spec["args"]
    assert int(spec["sharedMemorySizeMb"]) >= facts.VERTEX_DEFAULT_SHM_MB
    assert spec["ports"] == [{"containerPort": 8080}]


def test_azure_yaml_names_agree(packages: dict[str, Path]) -> None:
    folder = packages["azureml"]
    model = yaml.safe_load((folder / "model.yml").read_text())
    endpoint = yaml.safe_load((folder / "endpoint.yml").read_text())
    deployment = yaml.safe_load((folder / "deployment.yml").read_text())
    assert model["type"] == "triton_model" and model["path"] == "./model"
    assert (
        deployment["endpoint_name"] == endpoint["name"] == azureml.resource_name("digit_classifier")
    )
    assert deployment["model_mount_path"] == facts.AZUREML_MODEL_DIR
    assert (
        deployment["environment_variables"]["TRITON_LOAD_MODELS"].split()[-1] == "digit_classifier"
    )
    assert deployment["environment"]["inference_config"]["readiness_route"] == {
        "port": 8000,
        "path": "/v2/health/ready",
    }


def test_release_option_builds_on_that_ngc_image(model_repository: Path, tmp_path: Path) -> None:
    built = package(
        "vertex", model_repository, "digit_classifier", tmp_path, Options(release="24.10")
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["triton_version"] == "2.51.0" and manifest["built_from"].endswith(":24.10-py3")
    assert built.image.endswith(f":{facts.image_tag('24.10')}")
    script = (tmp_path / "commands.sh").read_text()
    assert "--build-arg TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3" in script
    with pytest.raises(ValueError, match="Triton release must be one of"):
        package("vertex", model_repository, "digit_classifier", tmp_path, Options(release="23.01"))


def test_options_fill_the_bodies(model_repository: Path, tmp_path: Path) -> None:
    options = Options(account="123456789012", region="eu-west-1", bucket="my-models", name="embed")
    built = package("sagemaker", model_repository, "digit_classifier", tmp_path, options)
    model = json.loads((tmp_path / "create-model.json").read_text())
    assert model["ModelName"] == "embed"
    assert (
        model["PrimaryContainer"]["ModelDataUrl"] == "s3://my-models/tritonctl/embed/model.tar.gz"
    )
    assert built.image.startswith("123456789012.dkr.ecr.eu-west-1.amazonaws.com/")
    assert validate.check(tmp_path) == []
    assert "account" not in options.placeholders and "bucket" not in options.placeholders
    assert copy.copy(Options()).placeholders == [
        "account",
        "bucket",
        "project",
        "gcs_bucket",
        "registry",
    ]
