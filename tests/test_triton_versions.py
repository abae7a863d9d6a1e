"""Version coupling: the repository and the chart's flags work on both Triton releases the project
supports (SECURITY.md): 2.51.0 (NGC 24.10, the PyPI wheel `tritonctl serve` runs, and the chart's
triton.release "24.10") and 2.60.0 (NGC 25.08, the chart's default).

2.51.0 runs here: its --help is compared with the vendored option list, and the whole repository
loads on it (the `triton` fixture; test_helm_triton_args.py runs the chart's flags). 2.60.0 cannot
run here (no container runtime, and PyPI ships no 2.60 server), so the chart's flags are checked
against its option list and the repository's configs against its model_config.proto, both taken
from the upstream sources at the release tags (tests/fixtures/triton/README.md).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tests import helm_support as hs
from tests.test_docker import entrypoint_argv
from tritonctl.server import LocalTriton, server_distribution

FIXTURES = Path(__file__).parent / "fixtures" / "triton"
RELEASES = {"24.10": "2.51.0", "25.08": "2.60.0"}


def options(version: str) -> set[str]:
    text = (FIXTURES / f"tritonserver-{version}-options.txt").read_text()
    return {line for line in text.splitlines() if line and not line.startswith("#")}


def local_help() -> str:
    dist = server_distribution()
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(str(p) for p in dist.library_dirs)}
    result = subprocess.run(
        [str(dist.binary), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


def test_the_option_lists_are_read_as_the_binary_reads_them() -> None:
    """The 2.51.0 list, extracted from the source like the 2.60.0 one, is exactly what the 2.51.0
    binary from the wheel accepts; 2.60.0 only adds options."""
    assert set(re.findall(r"^\s+--([a-z][a-z0-9-]+)", local_help(), re.M)) == options("2.51.0")
    assert options("2.51.0") < options("2.60.0")
    assert options("2.60.0") - options("2.51.0") == {
        "grpc-infer-thread-count",
        "grpc-max-response-pool-size",
        "http-max-input-size",
    }


def test_the_restricted_api_categories_are_the_same_on_both() -> None:
    """Triton 2.51.0 and 2.60.0 (src/restricted_features.h) restrict the same categories; the
    chart allows all but health."""
    categories = (FIXTURES / "restricted-categories.txt").read_text().split()
    help_text = local_help()
    for category in categories:
        assert category in help_text
    schema = hs.CHART / "values.schema.json"
    import json

    allowed = json.loads(schema.read_text())["properties"]["restrictedApis"]["properties"]["apis"]
    assert set(allowed["items"]["enum"]) == set(categories) - {"health"}


def _flag_names(args: list[str]) -> set[str]:
    return {a[2:].split("=", 1)[0] for a in args if a.startswith("--")}


@pytest.mark.parametrize("release", list(RELEASES))
@pytest.mark.parametrize(
    "combination", ["defaults", "gpu", "source-native-s3", "mode-none-no-restrictions"]
)
def test_the_charts_flags_exist_in_the_release(release: str, combination: str) -> None:
    values = {**hs.COMBINATIONS[combination], "triton": {"release": release}}
    deployment = hs.find(hs.objects(values), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    flags = _flag_names(container["args"])
    assert flags and flags <= options(RELEASES[release]), flags - options(RELEASES[release])


def test_the_images_default_command_exists_in_both_releases(tmp_path: Path) -> None:
    flags = _flag_names(entrypoint_argv(tmp_path, {"ADMIN_KEY": "k" * 40}))
    assert flags <= options("2.51.0") and flags <= options("2.60.0")


# model_config.proto of the 25.08 release -------------------------------------------------------

_TOKEN = re.compile(r"//[^\n]*|/\*.*?\*/|\"[^\"]*\"|[A-Za-z_][\w.]*|\d+|[{}<>=;,\[\]()]", re.S)


def proto_fields(text: str) -> dict[str, dict[str, tuple[int, str]]]:
    """Message full name (``inference.ModelConfig.X``) -> field name -> (number, type), from
    .proto source: messages, nested messages, oneofs, map<> and repeated fields."""
    tokens = [t for t in _TOKEN.findall(text) if not t.startswith(("//", "/*"))]
    package, stack, fields = "", [], {}  # type: ignore[var-annotated]
    scopes: list[str] = []  # "message", "enum", "oneof", "other" per open brace
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "package":
            package, i = tokens[i + 1], i + 3
            continue
        if token in ("message", "enum", "oneof") and tokens[i + 2] == "{":
            if token == "message":
                stack.append(tokens[i + 1])
                fields[".".join([package, *stack])] = {}
            scopes.append(token)
            i += 3
            continue
        if token == "{":
            scopes.append("other")
        elif token == "}":
            if scopes.pop() == "message":
                stack.pop()
        elif scopes and scopes[-1] in ("message", "oneof") and token not in (";",):
            # [repeated] type name = number [options] ;   or   map < k , v > name = number ;
            j = i
            if tokens[j] == "map":
                kind = "map<" + tokens[j + 2] + "," + tokens[j + 4] + ">"
                j += 6
            else:
                if tokens[j] in ("repeated", "optional"):
                    j += 1
                kind = tokens[j]
                j += 1
            if j + 2 < len(tokens) and tokens[j + 1] == "=" and tokens[j + 2].isdigit():
                fields[".".join([package, *stack])][tokens[j]] = (int(tokens[j + 2]), kind)
                while tokens[j] != ";":
                    j += 1
                i = j + 1
                continue
        i += 1
    return fields


def used_fields(message: Any, prefix: str = "") -> list[tuple[str, str, int]]:
    """(message full name, field name, number) for every field set in ``message``, recursively."""
    found = []
    for descriptor, value in message.ListFields():
        found.append((descriptor.containing_type.full_name, descriptor.name, descriptor.number))
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            entries = (
                value.values()
                if descriptor.message_type.fields_by_name["value"].message_type
                else []
            )
            for entry in entries:
                found += used_fields(entry)
        elif descriptor.label == descriptor.LABEL_REPEATED:
            for item in value:
                found += used_fields(item)
        else:
            found += used_fields(value)
    return found


def test_the_proto_reading_is_sound() -> None:
    fields = proto_fields((FIXTURES / "model_config-r25.08.proto").read_text())
    config = fields["inference.ModelConfig"]
    assert config["name"] == (1, "string") and config["model_metrics"] == (26, "ModelMetrics")
    assert fields["inference.ModelInput"]["dims"] == (4, "int64")
    assert fields["inference.ModelConfig"]["parameters"][1] == "map<string,ModelParameter>"
    # Every field the client's (newer) descriptor knows for ModelConfig, 25.08 knows by number.
    for field in model_config_pb2.ModelConfig.DESCRIPTOR.fields:
        if field.name in config:
            assert config[field.name][0] == field.number


def test_every_config_in_the_repository_parses_under_25_08(model_repository: Path) -> None:
    """Every field that the repository's config.pbtxt files set exists, with the same number, in
    25.08's model_config.proto (a superset of 24.10's: triton-inference-server/common r24.10 ->
    r25.08 only adds ModelMetrics)."""
    fields = proto_fields((FIXTURES / "model_config-r25.08.proto").read_text())
    configs = sorted(model_repository.glob("*/config.pbtxt"))
    assert len(configs) >= 10
    for path in configs:
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        for message, name, number in used_fields(config):
            known = fields.get(message, {})
            assert name in known, f"{path.parent.name}: {message}.{name} is not in 25.08"
            assert known[name][0] == number, f"{path.parent.name}: {message}.{name} renumbered"


def test_the_whole_repository_loads_on_the_local_2_51_server(triton: LocalTriton) -> None:
    """The other half of "the configs load on both": every model READY on 2.51.0."""
    states = {m.name: m.state for m in triton.model_states()}
    expected = sorted(p.parent.name for p in triton.model_repository.glob("*/config.pbtxt"))
    assert {name: states.get(name) for name in expected} == dict.fromkeys(expected, "READY")
