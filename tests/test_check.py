"""`tritonctl check` on good and broken repositories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.tiny_repository import make_tiny_repository
from tritonctl.check import check_repository
from tritonctl.cli import main


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_tiny_repository(tmp_path / "repo")


def test_good_repository_has_no_problems(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_repository(repo) == []
    assert main(["check", "--model-repository", str(repo)]) == 0
    assert "no problems" in capsys.readouterr().out


def test_parse_error_names_file_and_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = repo / "double" / "config.pbtxt"
    lines = config.read_text().splitlines()
    lines.insert(3, "dynamic_batchng { }")
    config.write_text("\n".join(lines))
    [problem] = check_repository(repo)
    assert problem.path == config and problem.line == 4
    assert "dynamic_batchng" in problem.message
    assert main(["check", "--model-repository", str(repo)]) == 1
    assert f"{config}:4" in capsys.readouterr().out


def test_missing_version_folder_and_model_file(repo: Path) -> None:
    shutil.rmtree(repo / "add_one" / "1")
    (repo / "double" / "1" / "model.onnx").unlink()
    messages = sorted(str(p) for p in check_repository(repo))
    assert len(messages) == 2
    assert "add_one: no version folder" in messages[0]
    assert messages[1].endswith("missing model file for onnxruntime_onnx model 'double'")


def test_missing_config_and_name_mismatch(repo: Path) -> None:
    (repo / "stray").mkdir()
    config = repo / "double" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "double"', 'name: "dbl"'))
    messages = [str(p) for p in check_repository(repo)]
    assert any("stray: no config.pbtxt" in m for m in messages)
    assert any("name 'dbl' differs from its folder 'double'" in m for m in messages)


def test_missing_repository(tmp_path: Path) -> None:
    [problem] = check_repository(tmp_path / "nope")
    assert "does not exist" in problem.message
