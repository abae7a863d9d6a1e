"""Every command the docs tell a user to type parses, and every chart value they set exists.

A new user copies ``tritonctl …`` and ``helm … --set key=value`` lines out of the docs; a flag
that was renamed, a sub-command that moved or a chart key that never existed fails them at the
terminal (or worse, on a cluster, where ``--set`` of an unknown key is refused only by the
schema). Nothing here runs a command: ``tritonctl`` lines go through the real argument parser
(``tritonctl.cli.build_parser``), chart keys through ``values.schema.json``, which refuses
unknown keys (``additionalProperties: false``), and values files written in the docs through the
same schema after merging over ``values.yaml``, as Helm does.

What counts as a command:

- in a fenced shell block (```` ```bash ````, ```` ```sh ````, ```` ```console ```` or
  unlabelled): each line, with ``\\`` continuations joined, split at ``&&``, ``||``, ``;`` and
  ``|``, whose first word (after ``VAR=value`` assignments) is ``tritonctl``,
  ``.venv/bin/tritonctl`` or ``helm``. These are parsed in full: what argparse would refuse fails
  the test.
- in inline code (`` `tritonctl …` ``) in prose and tables, and usage lines in a block (with
  ``[--flag]``), which show a usage
  (``[--once]``, ``FILE``, ``a|b``): the sub-command chain and every ``--flag`` must exist.

Flags are matched exactly: argparse would accept ``--find-cap`` as an abbreviation of
``--find-capacity``, and the docs should not teach abbreviations that a new flag can make
ambiguous.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tritonctl.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "tritonctl"
DOCS = sorted(
    {
        ROOT / "README.md",
        ROOT / "helm" / "tritonctl" / "README.md",
        ROOT / "loadtests" / "README.md",
        ROOT / "SECURITY.md",
        ROOT / "benchmarks" / "RESULTS.md",
        *ROOT.glob("RESULTS.md"),
        *(ROOT / "docs").glob("*.md"),
    }
)
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "zsh"}
TRITONCTL = {"tritonctl", ".venv/bin/tritonctl"}
#: Chart references that mean this repository's chart in a ``helm`` line.
OUR_CHART = {"helm/tritonctl", "./helm/tritonctl", "tritonctl/tritonctl"}


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    words: tuple[str, ...]
    fenced: bool  # from a shell block (parsed in full) or inline code (chain and flags only)

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {' '.join(self.words)}"


def _fenced_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of each fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^\s*(```+|~~~+)\s*([\w-]*)", lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        start, body = i + 2, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        yield lang, start, body


def _logical_lines(body: list[str], start: int) -> Iterator[tuple[int, str]]:
    """Lines with backslash continuations joined; heredoc bodies skipped (they are data)."""
    i = 0
    while i < len(body):
        number, line = start + i, body[i]
        while line.rstrip().endswith("\\") and i + 1 < len(body):
            i += 1
            line = line.rstrip()[:-1] + " " + body[i].strip()
        heredoc = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", line)
        i += 1
        if heredoc:
            while i < len(body) and body[i].strip() != heredoc.group(1):
                i += 1
            i += 1
        yield number, re.sub(r"^\s*\$\s+", "", line)  # a "$ " prompt


def _segments(line: str) -> Iterator[list[str]]:
    """The simple commands of a shell line: words between ``&&``, ``||``, ``;`` and ``|``."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not a command line (prose, output)
        return
    for token in tokens:
        if token and set(token) <= set(";&|"):
            if words:
                yield words
            words = []
        else:
            words.append(token)
    if words:
        yield words


def _program(words: list[str]) -> list[str]:
    """The command without leading ``VAR=value`` assignments."""
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words = words[1:]
    return words


def commands(paths: list[Path] = DOCS) -> list[Command]:
    found: list[Command] = []
    for path in paths:
        doc = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        fenced_lines: set[int] = set()
        for lang, start, body in _fenced_blocks(text):
            fenced_lines.update(range(start - 1, start + len(body) + 1))
            if lang not in SHELL_LANGS:
                continue
            for number, line in _logical_lines(body, start):
                usage = line.split()
                if re.search(r"\[--?\w", line) and usage and usage[0] in TRITONCTL:
                    # a usage line ([--kind serverless|async]): chain and flags only
                    found.append(Command(doc, number, tuple(usage), fenced=False))
                    continue
                for words in _segments(line):
                    words = _program(words)
                    if words and (words[0] in TRITONCTL or words[0] == "helm"):
                        found.append(Command(doc, number, tuple(words), fenced=True))
        for number, line in enumerate(text.splitlines(), 1):
            if number in fenced_lines:
                continue
            for span in re.findall(r"`([^`]+)`", line):
                span = span.replace("\\|", "|")
                words = span.split()
                if words and words[0] in TRITONCTL and len(words) > 1:
                    found.append(Command(doc, number, tuple(words), fenced=False))
    return found


# --- tritonctl ---------------------------------------------------------------------------------


@functools.cache
def _parser() -> argparse.ArgumentParser:
    return build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _takes_value(parser: argparse.ArgumentParser, flag: str) -> bool:
    action = parser._option_string_actions.get(flag)
    return action is not None and action.nargs != 0


def check_tritonctl(words: tuple[str, ...], fenced: bool) -> str | None:
    """The problem with one ``tritonctl`` command, or None."""
    args = list(words[1:])
    parser = _parser()
    chain = [parser]
    i = 0
    while (sub := _subparsers(chain[-1])) is not None and i < len(args):
        word = args[i]
        if word.startswith("-"):
            i += 2 if _takes_value(chain[-1], word) and "=" not in word else 1
            continue
        names = dict(sub._name_parser_map)
        alternatives = word.split("|")  # a usage such as build text-embedding|digits|all
        if all(name in names for name in alternatives):
            chain.append(names[alternatives[0]])
        elif len(chain) == 1:
            return f"no sub-command {word!r} (there are: {', '.join(names)})"
        elif word in sub.choices and "model" in names:
            chain.append(names["model"])  # infer's TARGET: any other name is a served model's
        elif word.isupper():
            break  # a placeholder (COMMAND, MODEL): the chain ends here
        else:
            return f"{' '.join(words[:2])}: no sub-command {word!r} (there are: {', '.join(names)})"
        i += 1
    known = {flag for p in chain for flag in p._option_string_actions}
    for word in args:
        for flag in re.findall(r"(?:^|[\[|])(--?[A-Za-z][\w-]*)", word):
            if flag.split("=")[0] not in known:
                return f"no flag {flag!r} for '{' '.join(words[: len(chain)])}'"
    if not fenced:
        return None
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as exit_:
        if exit_.code:
            return stderr.getvalue().strip().splitlines()[-1]
    return None


# --- helm and the chart's values ---------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def _schema_has(schema: dict[str, Any], key: str) -> bool:
    """Whether ``a.b[0].c`` (Helm's --set path syntax) names a place the schema allows."""
    node = schema
    for part in re.findall(r"(?:\\\.|[^.\[\]])+|\[\d+\]", key):
        if part.startswith("["):
            if node.get("type") != "array" and "items" not in node:
                return False
            node = node.get("items", {})
            continue
        part = part.replace("\\.", ".")
        properties = node.get("properties", {})
        if part in properties:
            node = properties[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            # only a free-form object (annotations, labels, resources) takes any key
            return node.get("additionalProperties") is not False and not properties
    return True


def _set_keys(words: tuple[str, ...]) -> list[str]:
    keys = []
    for i, word in enumerate(words):
        for option in ("--set", "--set-string", "--set-json", "--set-file"):
            if word == option and i + 1 < len(words):
                value = words[i + 1]
            elif word.startswith(option + "="):
                value = word[len(option) + 1 :]
            else:
                continue
            # k1=v1,k2=v2 (a comma inside a value is escaped as \,)
            for pair in re.split(r"(?<!\\),", value):
                keys.append(pair.split("=", 1)[0])
    return keys


def check_helm(words: tuple[str, ...], schema: dict[str, Any]) -> str | None:
    """The problem with the chart values a ``helm`` or ``tritonctl deploy`` line sets, or None."""
    ours = words[0] in TRITONCTL or any(word in OUR_CHART for word in words)
    if not ours:
        return None  # another chart (kube-prometheus-stack, KEDA, the adapter)
    for key in _set_keys(words):
        if not _schema_has(schema, key):
            return f"the chart has no value {key!r} (values.schema.json)"
    for i, word in enumerate(words[:-1]):
        if word in ("-f", "--values"):
            name = words[i + 1]
            if "/" in name and not (ROOT / name).exists():
                return f"values file {name} does not exist in the repository"
    return None


def _merged(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for key, value in override.items():
            out[key] = _merged(out.get(key), value)
        return out
    return copy.deepcopy(override)


def values_files() -> list[tuple[str, int, str]]:
    """Values files the docs write: heredocs into ``*values*.yaml`` in shell blocks."""
    found = []
    for path in DOCS:
        doc = str(path.relative_to(ROOT))
        for lang, start, body in _fenced_blocks(path.read_text(encoding="utf-8")):
            if lang not in SHELL_LANGS:
                continue
            for i, line in enumerate(body):
                heredoc = re.search(r">\s*(\S*values\S*\.ya?ml)\s*<<-?\s*'?\"?(\w+)", line)
                if heredoc:
                    end = body.index(heredoc.group(2), i + 1)
                    found.append((doc, start + i, "\n".join(body[i + 1 : end])))
    return found


# --- the tests ---------------------------------------------------------------------------------

ALL = commands()


def test_the_docs_have_commands_to_check() -> None:
    """Guards the extraction itself: if it found nothing, every other test would pass vacuously."""
    tritonctl = [c for c in ALL if c.words[0] in TRITONCTL and c.fenced]
    helm = [c for c in ALL if c.words[0] == "helm" and any(w in OUR_CHART for w in c.words)]
    assert len(tritonctl) >= 10, [str(c) for c in tritonctl]
    assert len(helm) >= 2, [str(c) for c in helm]
    assert values_files(), "no values file written in the docs"


@pytest.mark.parametrize(
    "command", [c for c in ALL if c.words[0] in TRITONCTL], ids=lambda c: f"{c.doc}:{c.line}"
)
def test_tritonctl_command_parses(command: Command, schema: dict[str, Any]) -> None:
    problem = check_tritonctl(command.words, command.fenced)
    if problem is None and command.words[1:2] == ("deploy",):
        problem = check_helm(command.words, schema)
    assert problem is None, f"{command}\n  -> {problem}"


@pytest.mark.parametrize(
    "command", [c for c in ALL if c.words[0] == "helm"], ids=lambda c: f"{c.doc}:{c.line}"
)
def test_helm_command_sets_only_chart_values(command: Command, schema: dict[str, Any]) -> None:
    problem = check_helm(command.words, schema)
    assert problem is None, f"{command}\n  -> {problem}"


@pytest.mark.parametrize("doc,line,text", values_files(), ids=lambda v: str(v))
def test_values_files_in_the_docs_match_the_schema(
    doc: str, line: int, text: str, schema: dict[str, Any]
) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    values = _merged(defaults, yaml.safe_load(text) or {})
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=str)
    assert not errors, f"{doc}:{line}: " + "; ".join(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


@pytest.mark.parametrize(
    "bad",
    [
        "tritonctl loadtest --local --find-capacty",  # a misspelt flag
        "tritonctl loadtest --local --find-cap",  # an abbreviation argparse would take
        "tritonctl plan --from-loadtest --replicas-per-gpu 2",  # a made-up flag
        "tritonctl deploy-all --release triton",  # a made-up sub-command
        "tritonctl build text-embedding|onnx",  # a recipe that does not exist
        "tritonctl serve --cache-size",  # parses only without its value (fenced: full parse)
    ],
)
def test_a_made_up_command_is_caught(bad: str) -> None:
    assert check_tritonctl(tuple(shlex.split(bad)), fenced=True) is not None


@pytest.mark.parametrize(
    "bad",
    [
        "helm upgrade --install triton helm/tritonctl --set image.repo=x",
        "helm install t helm/tritonctl --set autoscaling.enabled=true,autoscaling.maxReplica=4",
        "helm install t helm/tritonctl --set imagePullSecrets[0].name=r --set gpu.count2=1",
        "helm install t helm/tritonctl -f helm/no-such-values.yaml",
    ],
)
def test_a_made_up_chart_value_is_caught(bad: str, schema: dict[str, Any]) -> None:
    assert check_helm(tuple(shlex.split(bad)), schema) is not None


def test_deploy_sets_are_checked_against_the_chart(schema: dict[str, Any]) -> None:
    words = tuple(shlex.split("tritonctl deploy --set gpu.enabled=true --set gpu.enable=true"))
    assert check_tritonctl(words, fenced=True) is None  # argparse takes any --set
    assert "gpu.enable" in str(check_helm(words, schema))


def test_each_doc_with_commands_says_how_to_get_them() -> None:
    """``make`` installs into .venv/: a bare ``tritonctl`` fails in a new shell unless the doc
    says to activate it (or writes .venv/bin/tritonctl everywhere)."""
    bare = {c.doc for c in ALL if c.words[0] == "tritonctl"}
    missing = [
        doc for doc in sorted(bare) if "source .venv/bin/activate" not in (ROOT / doc).read_text()
    ]
    assert not missing, (
        f"these docs use a bare tritonctl but never say to activate .venv: {missing}"
    )


def test_real_chart_values_pass(schema: dict[str, Any]) -> None:
    good = (
        "helm install t helm/tritonctl --set imagePullSecrets[0].name=regcred "
        "--set podAnnotations.team=ml --set autoscaling.enabled=true,replicaCount=1"
    )
    assert check_helm(tuple(shlex.split(good)), schema) is None


def named_tests(text: str) -> set[tuple[str, str]]:
    """``tests/test_x.py::name`` references, and ``::other`` continuations on the same line."""
    found = set()
    for line in text.splitlines():
        current = None
        for file, test in re.findall(r"(?:tests/(test_\w+\.py))?::(\w+)", line):
            current = file or current
            if current:
                found.add((current, test))
    return found


def test_every_test_a_doc_names_exists() -> None:
    """A claim names the test that would fail if it were false: that test must exist."""
    missing = []
    for doc in DOCS:
        for file, test in sorted(named_tests(doc.read_text())):
            path = ROOT / "tests" / file
            source = path.read_text() if path.exists() else ""
            if not re.search(rf"^(?:    )?(?:async )?def {test}\(", source, re.MULTILINE):
                missing.append(f"{doc.relative_to(ROOT)}: tests/{file}::{test}")
    assert not missing, "the docs name tests that do not exist:\n" + "\n".join(missing)


def test_a_misnamed_test_is_caught() -> None:
    assert named_tests("see tests/test_x.py::test_a, ::test_b") == {
        ("test_x.py", "test_a"),
        ("test_x.py", "test_b"),
    }
