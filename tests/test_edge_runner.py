"""Edge bundles without a server: the runner's checks, refusals, imports and command line.

Every test runs a bundle through the ``runner.py`` the bundle ships (not the package's copy),
on copies in temporary folders when it changes files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.edge_support import BAD_TEXTS, DIGITS, DIGITS_LITERT, TEXT, built_bundles, report
from tests.test_digits_preprocess import BAD_INPUTS
from tritonctl.cli import main
from tritonctl.edge import SPECS
from tritonctl.edge.evaluate import load_runner


@pytest.fixture(scope="module")
def edge_bundles(model_repository: Path) -> dict[str, Path]:
    """The bundles ``tritonctl build edge`` made (the ``model_repository`` fixture builds all)."""
    return built_bundles()


def copy_bundle(edge_bundles: dict[str, Path], name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(edge_bundles[name], target)
    return target


def test_every_bundle_was_built_or_says_why(edge_bundles: dict[str, Path]) -> None:
    built = report()
    for spec in SPECS:
        assert spec.name in built["bundles"] or built["not_built"].get(spec.name), spec.name
    for name, folder in edge_bundles.items():
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["name"] == name
        assert {"runner.py", "requirements.txt", manifest["model"]["file"]} <= set(
            manifest["files"]
        )
        assert manifest["build"]["stamp"] and manifest["source"]["served_ensemble"]


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete"])
def test_a_model_that_does_not_match_its_manifest_is_refused_at_load(
    edge_bundles: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    folder = copy_bundle(edge_bundles, DIGITS, tmp_path)
    runner = load_runner(folder)
    runner.Bundle(folder)  # intact: loads
    model = folder / "model.ort"
    data = bytearray(model.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
        expected = r"model\.ort does not match manifest\.json: it has sha256 [0-9a-f]{64}"
    elif damage == "truncate":
        model.write_bytes(bytes(data[:-10]))
        expected = r"model\.ort does not match manifest\.json: it has [0-9,]+ bytes"
    else:
        model.unlink()
        expected = r"model\.ort is missing"
    with pytest.raises(runner.BundleError, match=expected):
        runner.Bundle(folder)


def test_a_changed_runner_or_preprocessing_file_is_refused_too(
    edge_bundles: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy_bundle(edge_bundles, DIGITS, tmp_path)
    runner = load_runner(folder)
    source = folder / "image_preprocess.py"
    source.write_text(source.read_text().replace("LEVELS = 16", "LEVELS = 15"))
    with pytest.raises(runner.BundleError, match=r"image_preprocess\.py does not match"):
        runner.Bundle(folder)


def test_a_manifest_that_is_missing_or_malformed_is_refused(
    edge_bundles: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy_bundle(edge_bundles, DIGITS, tmp_path)
    runner = load_runner(folder)
    manifest = folder / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(runner.BundleError, match="cannot be read as JSON"):
        runner.Bundle(folder)
    data = json.loads(text)
    data["files"]["../../etc/passwd"] = {"bytes": 1, "sha256": "0"}
    manifest.write_text(json.dumps(data))
    with pytest.raises(runner.BundleError, match="outside the bundle"):
        runner.Bundle(folder)
    manifest.unlink()
    with pytest.raises(runner.BundleError, match="not a tritonctl edge bundle"):
        runner.Bundle(folder)


@pytest.mark.parametrize("case", list(BAD_TEXTS))
def test_bad_text_is_refused_with_the_servers_message(
    edge_bundles: dict[str, Path], case: str
) -> None:
    runner = load_runner(edge_bundles[TEXT])
    bundle = runner.Bundle(edge_bundles[TEXT], threads=1)
    text, message = BAD_TEXTS[case]
    with pytest.raises(runner.InputError) as error:
        bundle.embed(["a good sentence", text][1:])
    assert str(error.value).startswith(message)
    # The position is the item's own, as the server names it.
    with pytest.raises(runner.InputError, match="TEXT item 1 "):
        bundle.embed(["a good sentence", text])


def test_no_texts_and_a_bare_string_are_refused(edge_bundles: dict[str, Path]) -> None:
    runner = load_runner(edge_bundles[TEXT])
    bundle = runner.Bundle(edge_bundles[TEXT], threads=1)
    with pytest.raises(runner.InputError, match="empty batch: TEXT holds 0 items"):
        bundle.embed([])
    with pytest.raises(runner.InputError, match="a list of strings, not one string"):
        bundle.embed("one string")


@pytest.mark.parametrize("name", [DIGITS, DIGITS_LITERT])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_images_are_refused_with_the_servers_message(
    edge_bundles: dict[str, Path], name: str, case: str
) -> None:
    if name not in edge_bundles:
        pytest.skip(f"{name} was not built: {report()['not_built'].get(name)}")
    runner = load_runner(edge_bundles[name])
    bundle = runner.Bundle(edge_bundles[name], threads=1)
    data, phrase = BAD_INPUTS[case]
    with pytest.raises(runner.InputError, match=phrase):
        bundle.classify([data])


def test_long_text_is_truncated_like_the_server_and_the_fixed_variant_refuses_it(
    edge_bundles: dict[str, Path],
) -> None:
    runner = load_runner(edge_bundles[TEXT])
    bundle = runner.Bundle(edge_bundles[TEXT], threads=1)
    long = "word " * 400
    (ids,) = bundle.tokenize([long])
    assert len(ids) == bundle.manifest["preprocessing"]["max_length"] == 256
    assert bundle.embed([long]).shape == (1, 384)
    fixed = runner.Bundle(edge_bundles[TEXT], threads=1, variant="fixed_shape")
    with pytest.raises(
        runner.InputError, match="has 256 tokens, over this fixed-shape model's 128"
    ):
        fixed.embed([long])


def test_the_runner_imports_only_numpy_its_processing_library_and_one_runtime(
    edge_bundles: dict[str, Path], tmp_path: Path
) -> None:
    """In a fresh interpreter: every third-party module loaded after a real call."""
    probe = (
        "import json, sys, runner\n"
        "b = runner.Bundle('.', threads=1)\n"
        "b(runner.samples(runner.Path('.'), b.manifest)[:2])\n"
        "std = set(sys.stdlib_module_names) | {'runner', '__main__'}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - std)))\n"
    )
    allowed = {
        "onnxruntime": {"onnxruntime"},
        "litert": {"ai_edge_litert"},
        "embed": {"tokenizers"},
        "classify": {"PIL"},
    }
    names = [
        n for n in (TEXT, DIGITS, DIGITS_LITERT, "text_encoder-litert-fp32") if n in edge_bundles
    ]
    for name in names:
        folder = copy_bundle(edge_bundles, name, tmp_path)
        manifest = json.loads((folder / "manifest.json").read_text())
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, check=True
        )
        loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
        expected = {"numpy"} | allowed[manifest["runtime"]["name"]] | allowed[manifest["task"]]
        # Modules the runtime itself pulls in (its own dependencies) are listed in the report.
        # Names Cython and setuptools' .pth hook register are not imports of the runner.
        extra = {m for m in loaded - expected if not m.startswith("_") and m != "cython_runtime"}
        runtime_deps = {
            "flatbuffers",
            "ml_dtypes",
            "google",
            "tqdm",
            "backports",
            "typing_extensions",
            "coloredlogs",
            "humanfriendly",
            "packaging",
            "sympy",
            "mpmath",
        }
        assert expected <= loaded, (name, loaded)
        assert extra <= runtime_deps, (name, sorted(extra))
        assert not loaded & {"torch", "tritonctl", "tritonclient", "onnx", "transformers"}


def test_edge_run_embeds_and_classifies_from_the_command_line(
    edge_bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["edge", "run", "--json", TEXT, "a cat sat on the mat", "a dog lay on the rug"]) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["a cat sat on the mat", "a dog lay on the rug"]
    assert all(len(line["embedding"]) == 384 for line in lines)
    digit = edge_bundles[DIGITS] / "samples" / "digit_7.png"
    assert main(["edge", "run", str(edge_bundles[DIGITS]), str(digit), "--json"]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["top_k"][0][0] == "7"


def test_edge_run_reports_bad_input_and_unknown_bundles_with_exit_code_2(
    edge_bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["edge", "run", TEXT, "  "]) == 2
    assert "TEXT item 0 is empty or whitespace only" in capsys.readouterr().err
    assert main(["edge", "run", "no-such-bundle"]) == 2
    assert "no bundle at 'no-such-bundle'" in capsys.readouterr().err


def test_edge_bench_times_a_bundle_in_fresh_processes(
    edge_bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["edge", "bench", DIGITS, "--runs", "20", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2
    for figures in results.values():
        assert figures["runs"] == 20 and 0 < figures["p50_ms"] <= figures["p95_ms"]
        assert figures["cold_start_s"] > 0
        # The bundle's own process: far below what this test process (torch loaded) holds.
        assert 0 < figures["peak_rss_mb"] < 400


def test_an_unchanged_rebuild_is_a_no_op(
    edge_bundles: dict[str, Path], model_repository: Path
) -> None:
    from tritonctl.recipes import build

    manifests = {
        name: (folder / "manifest.json").stat().st_mtime_ns for name, folder in edge_bundles.items()
    }
    again = build("edge", model_repository)
    assert again == report()
    assert {
        n: (f / "manifest.json").stat().st_mtime_ns for n, f in edge_bundles.items()
    } == manifests


def test_operator_configs_name_the_bundle_file_not_the_build_machines_paths(
    model_repository: Path, tmp_path: Path
) -> None:
    """``convert_onnx_models_to_ort`` heads ``required_operators.config`` with the absolute
    paths it converted (a temporary build folder): shipped as is, every bundle would leak the
    build machine's paths and differ byte for byte from one build to the next."""
    from tritonctl.edge.onnx_runtime import to_ort

    work = tmp_path / "build-here"
    work.mkdir()
    for style, name in (("Fixed", "model.ort"), ("Runtime", "model.fixed.ort")):
        target = to_ort(
            model_repository / "digits_student" / "1" / "model.onnx", work / name, style
        )
        config = target.with_name(target.stem + ".required_operators.config").read_text()
        assert str(tmp_path) not in config, config
        assert f"# - {name}\n" in config, config  # what it was generated from, by bundle name
        assert "ai.onnx;" in config  # the operator lines themselves are kept


def test_invalid_utf8_on_the_command_line_names_the_byte_that_was_sent(
    edge_bundles: dict[str, Path],
) -> None:
    """A shell hands ``ok \\xff\\xfe`` to Python as a surrogate-escaped str; the server gets the
    raw bytes and names byte 0xff. Re-encoding the str with ``surrogatepass`` named 0xed, a byte
    the user never sent. Both command lines must give the server's message."""
    expected = BAD_TEXTS["invalid utf-8"][1]
    argv = b"ok \xff\xfe"
    runner_cli = subprocess.run(
        [sys.executable, "runner.py", "embed", argv],
        cwd=edge_bundles[TEXT], capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    tritonctl_cli = subprocess.run(
        [sys.executable, "-m", "tritonctl", "edge", "run", TEXT, argv],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    for done in (runner_cli, tritonctl_cli):
        error = b" ".join(done.stderr.split()).decode()
        assert done.returncode == 2 and expected in error, error


@pytest.mark.parametrize("runs", ["0", "-3"])
def test_bench_refuses_a_run_count_below_one_with_a_usage_error(
    edge_bundles: dict[str, Path], capsys: pytest.CaptureFixture[str], runs: str
) -> None:
    """Zero runs used to reach np.percentile([]) and die with an IndexError traceback."""
    done = subprocess.run(
        [sys.executable, "runner.py", "bench", "--runs", runs],
        cwd=edge_bundles[DIGITS], capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "at least 1" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(SystemExit) as exited:
        main(["edge", "bench", DIGITS, "--runs", runs])
    assert exited.value.code == 2 and "at least 1" in capsys.readouterr().err
