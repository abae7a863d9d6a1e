"""`tritonctl check` on a corpus of broken repositories: each mistake is found, with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.broken_repositories import CASES, BrokenCase, make_pipeline_repository
from tritonctl.check import check_repository
from tritonctl.cli import main


def test_the_unbroken_pipeline_has_no_problems(tmp_path: Path) -> None:
    assert check_repository(make_pipeline_repository(tmp_path / "repo")) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_mistake_is_reported_with_file_and_line(tmp_path: Path, case: BrokenCase) -> None:
    root = make_pipeline_repository(tmp_path / "repo")
    case.breaks(root)
    problems = check_repository(root)
    matching = [p for p in problems if case.says in p.message]
    assert matching, f"expected '{case.says}' in {[str(p) for p in problems]}"
    problem = matching[0]
    assert problem.path == root / case.file
    if case.line_text is None:
        return
    assert problem.line is not None, str(problem)
    line = problem.path.read_text().splitlines()[problem.line - 1]
    assert case.line_text in line, f"{problem}: line {problem.line} is {line!r}"


def test_cli_prints_file_colon_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_pipeline_repository(tmp_path / "repo")
    [case] = [c for c in CASES if c.name == "ensemble-unknown-model"]
    case.breaks(root)
    assert main(["check", "--model-repository", str(root)]) == 1
    [problem] = [p for p in check_repository(root) if case.says in p.message]
    assert f"{root / case.file}:{problem.line}" in capsys.readouterr().out.replace("\n", "")


def test_python_model_code_may_live_in_python_backends(tmp_path: Path) -> None:
    root = make_pipeline_repository(tmp_path / "repo")
    code = (root / "add_one" / "1" / "model.py").read_text()
    (root / "add_one" / "1" / "model.py").unlink()
    sources = tmp_path / "python_backends"
    (sources / "add_one").mkdir(parents=True)
    (sources / "add_one" / "model.py").write_text(code)
    assert check_repository(root, python_sources=sources) == []


def test_corrupt_onnx_file_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    root = make_pipeline_repository(tmp_path / "repo")
    (root / "double" / "1" / "model.onnx").write_bytes(b"not a protobuf at all \xff\x00")
    [problem] = check_repository(root)
    assert problem.path == root / "double" / "1" / "model.onnx"
    assert "not a readable ONNX model" in problem.message
