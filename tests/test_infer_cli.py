"""``tritonctl infer`` against the real server, over gRPC and HTTP: the digits pipeline on PNG and
JPEG files, any model through ``--input`` (typed and shaped from its metadata), and the errors a
user meets: an unknown model, a wrong input name, an unreadable or non-image file, a pipeline
called with the wrong kind of model (issue 15 item 3, issue 23 item 9)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serving_support import digits_test_images
from tritonctl import invoke, paths
from tritonctl.cli import build_parser, main
from tritonctl.console import console, err_console
from tritonctl.invoke import InputError, TensorSpec, fit_shape, raw_value
from tritonctl.server import LocalTriton

PROTOCOLS = ["grpc", "http"]


def address(server: LocalTriton, protocol: str) -> list[str]:
    url = server.grpc_address if protocol == "grpc" else server.http_address
    return ["--protocol", protocol, "--url", url]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    console.width = err_console.width = 200  # no wrapping inside the messages asserted on
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def labelled_digits(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Test-split digits written as dark-on-light PNG and JPEG files (as a user would draw
    them), with their true labels."""
    folder = tmp_path_factory.mktemp("digits")
    with np.load(paths.reports_dir() / "digits" / "test_set.npz") as data:
        labels = data["labels"]
    images = digits_test_images()
    out = []
    for index in range(6):
        gray = 255 - np.rint(images[index, 0] * 255 / 16).astype(np.uint8)  # ink dark on white
        picture = Image.fromarray(gray).resize((64, 64), Image.Resampling.NEAREST)
        suffix = "png" if index % 2 == 0 else "jpg"
        path = folder / f"digit{index}.{suffix}"
        picture.save(path, quality=95)
        out.append((path, str(labels[index])))
    return out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_digits_prints_label_and_top_k(
    triton: LocalTriton,
    labelled_digits: list[tuple[Path, str]],
    protocol: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = [str(path) for path, _ in labelled_digits]
    argv = ["infer", "digits", *files, *address(triton, protocol), "--json"]
    code, out, _ = run(argv, capsys)
    assert code == 0
    result = json.loads(out)
    assert result["model"] == "digit_classifier"
    predicted = {r["file"]: r for r in result["results"]}
    correct = sum(predicted[str(p)]["label"] == label for p, label in labelled_digits)
    assert correct >= 5  # the student is ~98 % accurate on this split
    for entry in result["results"]:
        scores = [score for _, score in entry["top_k"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert entry["top_k"][0][0] == entry["label"] and 0 < sum(scores) <= 1.0001

    code, out, _ = run(
        ["infer", "digits", files[0], *address(triton, protocol), "--top-k", "2"], capsys
    )
    assert code == 0
    line = next(x for x in out.splitlines() if Path(files[0]).name in x)
    assert predicted[files[0]]["label"] in line and "top 2" in out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_any_model_through_its_inputs(
    triton: LocalTriton, protocol: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # BYTES input of shape [-1, 1] from one string
    code, out, _ = run(
        [
            "infer",
            "tokenizer",
            "--input",
            "TEXT=A cat sleeps.",
            *address(triton, protocol),
            "--json",
        ],
        capsys,
    )
    assert code == 0, out
    outputs = json.loads(out)["outputs"]
    ids = np.array(outputs["input_ids"])
    assert ids.shape[0] == 1 and ids[0, 0] == 101  # [CLS]: the real tokenizer ran

    # FP32 [-1, 1, 8, 8] from an .npy of one 8x8 image, and from JSON text
    image = digits_test_images()[0, 0]
    np.save(tmp_path / "image.npy", image)
    code, out, _ = run(
        [
            "infer",
            "digits_student",
            "-i",
            f"INPUT=@{tmp_path / 'image.npy'}",
            *address(triton, protocol),
            "--json",
        ],
        capsys,
    )
    assert code == 0, out
    from_file = np.array(json.loads(out)["outputs"]["LOGITS"])
    code, out, _ = run(
        [
            "infer",
            "digits_student",
            "--input",
            f"INPUT={json.dumps(image.tolist())}",
            *address(triton, protocol),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    np.testing.assert_allclose(np.array(json.loads(out)["outputs"]["LOGITS"]), from_file, rtol=1e-5)
    assert from_file.shape == (1, 10)

    # a BYTES input from a file: the image's bytes, preprocessed by the server
    picture = io.BytesIO()
    Image.fromarray(np.rint(image * 255 / 16).astype(np.uint8)).save(picture, format="PNG")
    (tmp_path / "seven.png").write_bytes(picture.getvalue())
    code, out, _ = run(
        [
            "infer",
            "image_preprocess",
            "--input",
            f"IMAGE=@{tmp_path / 'seven.png'}",
            *address(triton, protocol),
        ],
        capsys,
    )
    assert code == 0
    assert "PIXELS" in out and "FP32" in out and "[1, 1, 8, 8]" in out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_errors_name_the_problem(
    triton: LocalTriton, protocol: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = address(triton, protocol)
    code, _, err = run(["infer", "no_such_model", "--input", "X=1", *where], capsys)
    assert code == 2
    assert "serves no model 'no_such_model'" in err and "digit_classifier" in err

    code, _, err = run(["infer", "tokenizer", "--input", "TXT=hello", *where], capsys)
    assert code == 2
    assert "no input 'TXT'" in err and "TEXT (BYTES [-1, 1])" in err

    code, _, err = run(["infer", "digits_student", "--input", "INPUT=[1, 2, 3]", *where], capsys)
    assert code == 2 and "expects shape [-1, 1, 8, 8]" in err and "shape [3]" in err

    code, _, err = run(["infer", "digits_student", "--input", "INPUT=abc", *where], capsys)
    assert code == 2 and "FP32" in err and "'abc' is not a number" in err

    missing = tmp_path / "missing.png"
    code, _, err = run(["infer", "digits", str(missing), *where], capsys)
    assert code == 2 and f"cannot read {missing}" in err and "No such file" in err
    code, _, err = run(
        ["infer", "image_preprocess", "--input", f"IMAGE=@{missing}", *where], capsys
    )
    assert code == 2 and f"cannot read {missing}" in err

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    code, _, err = run(["infer", "digits", str(text), *where], capsys)
    assert code == 2 and f"{text}: cannot identify an image format" in err

    code, _, err = run(["infer", "tokenizer", *where], capsys)
    assert code == 2 and "--input TEXT=VALUE" in err

    # Bytes that are not UTF-8 on the command line (argv decodes them to lone surrogates): the
    # server's own message, not a UnicodeEncodeError traceback.
    invalid = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")
    code, _, err = run(["infer", "text-embedding", "A cat sleeps.", invalid, *where], capsys)
    assert code == 2 and "item 1 is not valid UTF-8" in err, err
    code, _, err = run(["infer", "tokenizer", "--input", f"TEXT={invalid}", *where], capsys)
    assert code == 2 and "item 0 is not valid UTF-8" in err, err


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pipeline_called_with_the_wrong_model_says_how_to_call_it(
    triton: LocalTriton,
    labelled_digits: list[tuple[Path, str]],
    protocol: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 23 item 9: text-embedding --model digit_classifier said "unexpected inference
    output 'EMBEDDING'"."""
    where = address(triton, protocol)
    code, _, err = run(
        ["infer", "text-embedding", "hello", "--model", "digit_classifier", *where], capsys
    )
    assert code == 2
    assert "is not a text-embedding pipeline" in err
    assert "image pipeline: tritonctl infer digits IMAGE... --model digit_classifier" in err
    assert "EMBEDDING'" not in err

    image = str(labelled_digits[0][0])
    code, _, err = run(["infer", "digits", image, "--model", "text_embedding", *where], capsys)
    assert code == 2
    assert (
        "text-embedding pipeline: tritonctl infer text-embedding SENTENCE... --model text_embedding"
        in err
    )

    code, out, _ = run(
        ["infer", "text-embedding", "A cat sleeps.", "A kitten naps.", *where, "--json"], capsys
    )
    assert code == 0 and np.array(json.loads(out)["embeddings"]).shape == (2, 384)


def test_no_server_is_named_without_waiting(capsys: pytest.CaptureFixture[str]) -> None:
    for protocol in PROTOCOLS:
        code, _, err = run(
            [
                "infer",
                "tokenizer",
                "--input",
                "TEXT=x",
                "--protocol",
                protocol,
                "--url",
                "127.0.0.1:9",
            ],
            capsys,
        )
        assert code == 1 and "cannot reach a Triton server at 127.0.0.1:9" in err


def test_the_parser_takes_pipelines_and_model_names(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["infer", "digits", "a.png", "b.jpg", "--top-k", "2", "--protocol", "http"]
    )
    assert (args.target, args.items, args.top_k, args.protocol) == (
        "digits",
        ["a.png", "b.jpg"],
        2,
        "http",
    )
    # options before the items (the README's own form puts them after)
    args = parser.parse_args(["infer", "text-embedding", "--url", "h:1", "A cat.", "A dog."])
    assert (args.items, args.url, args.model) == (["A cat.", "A dog."], "h:1", "text_embedding")
    # any other name is a model's
    args = parser.parse_args(["infer", "tokenizer", "--input", "TEXT=a b", "-i", "X=@f.npy"])
    assert (args.target, args.name, args.inputs) == ("model", "tokenizer", ["TEXT=a b", "X=@f.npy"])
    assert parser.parse_args(["infer", "model", "tokenizer", "-i", "TEXT=x"]).name == "tokenizer"
    assert main(["infer", "tokenizer", "A cat sleeps."]) == 2
    assert "give its inputs with --input NAME=VALUE" in capsys.readouterr().err


def test_values_are_typed_and_fitted_to_the_shape() -> None:
    text = TensorSpec("TEXT", "BYTES", (-1, 1))
    assert fit_shape(text, raw_value(text, "héllo"), 64).tolist() == [["héllo".encode()]]
    assert fit_shape(text, raw_value(text, '["a", "b"]'), 64).shape == (2, 1)
    ids = TensorSpec("IDS", "INT64", (-1, -1))
    assert fit_shape(ids, raw_value(ids, "1, 2 3"), 8).tolist() == [[1, 2, 3]]
    with pytest.raises(InputError, match="fractions"):
        raw_value(ids, "1.5")
    with pytest.raises(InputError, match="at most 1 per request"):
        fit_shape(ids, raw_value(ids, "[[1], [2]]"), 1)
    small = TensorSpec("X", "UINT8", (3,))
    with pytest.raises(InputError, match=r"\[0, 255\]"):
        raw_value(small, "[1, 300, 2]")


def test_a_file_too_large_to_send_is_named_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``infer digits`` reads its files before connecting; ``--input NAME=@FILE`` reads them
    through the same ``invoke.read_file`` once the model's metadata is in."""
    monkeypatch.setattr(invoke, "MAX_FILE_BYTES", 1024)
    large = tmp_path / "large.png"
    large.write_bytes(b"\x89PNG" + bytes(4096))
    where = ["--url", "127.0.0.1:9"]
    code, _, err = run(["infer", "digits", str(large), *where], capsys)
    assert code == 2 and f"cannot send {large}: it holds more than 1,024 bytes" in err, err
    if Path("/dev/zero").exists():  # endless: read only up to the limit
        code, _, err = run(["infer", "digits", "/dev/zero", *where], capsys)
        assert code == 2 and "cannot send /dev/zero" in err, err
