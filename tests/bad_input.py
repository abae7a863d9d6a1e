"""The bad-input matrix: a table of hostile requests, generated from each served model's config.

Each ``Case`` says what is sent to which model over which protocol, the status expected (HTTP
code or gRPC code) and a pattern the error message must match, so that the error names the
problem. ``tests/test_bad_input_matrix.py`` runs the table against real servers.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from tritonctl.model_config import load_config
from tritonctl.server import LocalTriton
from tritonctl.watchdog import is_dead

BAD = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
NOT_FOUND = {"http": "404", "grpc": "StatusCode.NOT_FOUND"}
#: Triton 2.51 answers a body that is not JSON with 500 (the message names the parse error).
MALFORMED_JSON_STATUS = "500"
#: Inputs of disagreeing lengths reach the model itself (Triton only checks each against its dims):
#: ONNX Runtime refuses them, or, where the backend packs rows by length, the backend first.
WRONG_LENGTHS = r"ONNX Runtime failed.*(shape|dimension|broadcast|index)|inputs must have one shape"
#: Bodies above ~4 MiB crash Triton 2.51's HTTP server (tests/test_faults.py); stay below.
LARGE_BODY = (4 << 20) - (256 << 10)

DTYPE_NAMES = {
    mc.TYPE_FP32: "FP32", mc.TYPE_FP16: "FP16", mc.TYPE_FP64: "FP64", mc.TYPE_INT64: "INT64",
    mc.TYPE_INT32: "INT32", mc.TYPE_INT8: "INT8", mc.TYPE_UINT8: "UINT8", mc.TYPE_BOOL: "BOOL",
    mc.TYPE_STRING: "BYTES",
}  # fmt: skip
NUMPY = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64,
         "INT32": np.int32, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_, "BYTES": np.object_}  # fmt: skip


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class Model:
    name: str
    max_batch_size: int
    inputs: tuple[Tensor, ...]
    platform: str

    @property
    def required(self) -> tuple[Tensor, ...]:
        return tuple(t for t in self.inputs if not t.optional)


def served_models(repository: Path) -> list[Model]:
    found = []
    for config_path in sorted(repository.glob("*/config.pbtxt")):
        config = load_config(config_path)
        inputs = tuple(
            Tensor(t.name, DTYPE_NAMES.get(t.data_type, "?"), tuple(t.dims), t.optional)
            for t in config.input
        )
        found.append(
            Model(
                config_path.parent.name,
                config.max_batch_size,
                inputs,
                config.platform or config.backend,
            )
        )
    return found


# Valid payloads ---------------------------------------------------------------------------------
def png_bytes(size: int = 8, value: int = 128, note: str = "") -> bytes:
    """A diagonal line; a ``note`` (a PNG text chunk) makes the bytes new, not the pixels."""
    from PIL import Image, PngImagePlugin

    image = Image.new("L", (size, size), color=0)
    for i in range(size):
        image.putpixel((i, i), value)
    info = PngImagePlugin.PngInfo()
    if note:
        info.add_text("note", note)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@functools.lru_cache(maxsize=4)
def blank_rgba_png(width: int = 4096, height: int = 4096) -> bytes:
    """A transparent RGBA PNG: ~75 KB on the wire for 4096×4096, 64 MiB once decoded."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def decompression_bomb() -> bytes:
    """A valid PNG header declaring 30000×30000 grey pixels over a tiny zlib stream (~1 KB)."""
    width = height = 30000

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def valid_value(tensor: Tensor, batch: int | None) -> np.ndarray:
    dims = [8 if d < 0 else d for d in tensor.dims]
    shape = ([batch] if batch is not None else []) + dims
    if tensor.datatype == "BYTES":
        item = png_bytes() if "IMAGE" in tensor.name.upper() else b"a small test sentence"
        return np.full(shape, item, dtype=np.object_)
    rng = np.random.default_rng(0)
    if tensor.datatype.startswith("FP"):
        return rng.standard_normal(shape).astype(NUMPY[tensor.datatype])
    return np.ones(shape, dtype=NUMPY[tensor.datatype])


def valid_inputs(model: Model, batch: int = 1) -> list[tuple[str, str, np.ndarray]]:
    b = batch if model.max_batch_size > 0 else None
    return [(t.name, t.datatype, valid_value(t, b)) for t in model.required]


def fresh(inputs: list[tuple[str, str, np.ndarray]], n: int) -> list[tuple[str, str, np.ndarray]]:
    """``inputs`` with bytes no server has seen, and the same answer: the response cache of the
    cached pipelines cannot answer them, so the model itself must. A text gets ``n`` trailing
    spaces (the tokenizer drops them: same tokens), an image a PNG text chunk (same pixels);
    numbers are left as they are (no model taking them has a response cache)."""
    out = []
    for name, datatype, array in inputs:
        if datatype == "BYTES":
            image = "IMAGE" in name.upper()
            item = png_bytes(note=f"case {n}") if image else bytes(array.flat[0]) + b" " * n
            array = np.full(array.shape, item, dtype=np.object_)
        out.append((name, datatype, array))
    return out


def live_pids(server: LocalTriton) -> set[int]:
    """The server's processes that are alive: a killed stub stays a zombie in its group."""
    return {pid for pid in server.group_pids() if not is_dead(pid)}


# Sending ----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    status: str  # "ok", an HTTP code, a gRPC StatusCode, or "dropped"
    message: str = ""
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def send(
    address: str,
    protocol: str,
    model: str,
    inputs: list[tuple[str, str, np.ndarray]],
    version: str = "",
) -> Outcome:
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(address)
    try:
        tensors = []
        for name, datatype, array in inputs:
            tensor = module.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        result = client.infer(model, tensors, model_version=version)
        response = result.get_response()
        if isinstance(response, dict):
            names = [o["name"] for o in response.get("outputs", [])]
        else:
            names = [o.name for o in response.outputs]
        return Outcome("ok", outputs={n: result.as_numpy(n) for n in names})
    except InferenceServerException as error:
        return Outcome(str(error.status()), str(error.message()))
    finally:
        client.close()


def send_raw(
    http_address: str, model: str, body: bytes, headers: dict[str, str] | None = None
) -> Outcome:
    request = urllib.request.Request(
        f"http://{http_address}/v2/models/{model}/infer", data=body, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Outcome("ok", response.read().decode(errors="replace"))
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        with contextlib.suppress(ValueError):
            text = str(json.loads(text).get("error", text))
        return Outcome(str(error.code), text)
    except (urllib.error.URLError, ConnectionError) as error:
        return Outcome("dropped", str(error))


# The table --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    model: str
    protocol: str
    kind: str
    expect: str  # status
    says: str  # regex the message must match (case-insensitive)
    request: Callable[[str, str], Outcome] = field(
        compare=False, repr=False
    )  # (http, grpc) -> Outcome

    @property
    def id(self) -> str:
        return f"{self.model}:{self.protocol}:{self.kind}"

    def check(self, outcome: Outcome) -> None:
        assert outcome.status == self.expect, f"{self.id}: got {outcome.status} {outcome.message!r}"
        assert re.search(self.says, outcome.message, re.IGNORECASE), (
            f"{self.id}: message {outcome.message!r} does not match /{self.says}/"
        )


def _tensor_case(
    model: Model,
    protocol: str,
    kind: str,
    says: str,
    inputs: list,
    *,
    version: str = "",
    expect: dict[str, str] = BAD,
    target: str | None = None,
) -> Case:
    def request(http: str, grpc: str) -> Outcome:
        return send(
            http if protocol == "http" else grpc, protocol, target or model.name, inputs, version
        )

    return Case(model.name, protocol, kind, expect[protocol], says, request)


def cases_for(
    model: Model, protocol: str, *, nan_exempt: frozenset[str] = frozenset()
) -> list[Case]:
    valid = valid_inputs(model)
    first = model.required[0]
    rest = valid[1:]
    batch = model.max_batch_size > 0
    out: list[Case] = []

    def case(kind: str, says: str, inputs: list, **kw: object) -> None:
        out.append(_tensor_case(model, protocol, kind, says, inputs, **kw))  # type: ignore[arg-type]

    wrong = (
        ("FP32", np.zeros(valid[0][2].shape, np.float32))
        if first.datatype == "BYTES"
        else ("BYTES", np.full(valid[0][2].shape, b"1", dtype=np.object_))
    )
    case(
        "wrong-dtype",
        rf"data-type is '{wrong[0]}'.*expects '{first.datatype}'",
        [(first.name, wrong[0], wrong[1]), *rest],
    )
    deeper = valid[0][2].reshape((*valid[0][2].shape, 1))
    case(
        "wrong-rank",
        rf"unexpected shape for input '{first.name}'",
        [(first.name, first.datatype, deeper), *rest],
    )
    fixed = [i for i, d in enumerate(first.dims) if d > 0]
    if fixed:
        shape = list(valid[0][2].shape)
        shape[fixed[0] + (1 if batch else 0)] += 1
        case(
            "wrong-shape",
            rf"unexpected shape for input '{first.name}'",
            [
                (
                    first.name,
                    first.datatype,
                    valid_value(
                        Tensor(first.name, first.datatype, tuple(shape[1:] if batch else shape)),
                        1 if batch else None,
                    ),
                ),
                *rest,
            ],
        )
    elif len(model.required) > 1 and any(d < 0 for d in model.required[1].dims):
        # Only variable dims (the text encoders): inputs whose lengths disagree.
        second = model.required[1]
        dims = list(second.dims)
        dims[dims.index(-1)] = 9  # valid_value gives the other inputs 8
        longer = valid_value(
            Tensor(second.name, second.datatype, tuple(dims)), 1 if batch else None
        )
        case(
            "wrong-shape",
            WRONG_LENGTHS,
            [valid[0], (second.name, second.datatype, longer), *valid[2:]],
        )
    if batch:
        over = valid_inputs(model, model.max_batch_size + 1)
        case("batch-over-max", rf"batch-size must be <= {model.max_batch_size}", over)
        zero = valid_inputs(model, 0)
        case("zero-batch", r"byte size mismatch|batch.size|expected .* got 0|empty", zero)
    case("missing-input", r"expected \d+ inputs but got \d+ inputs", rest)
    extra = ("UNEXPECTED_EXTRA", "FP32", np.zeros((1, 1) if batch else (1,), np.float32))
    case(
        "extra-input",
        r"expected \d+ inputs but got \d+ inputs.*UNEXPECTED_EXTRA|unexpected inference input 'UNEXPECTED_EXTRA'",
        [*valid, extra],
    )
    case("unknown-version", r"version 999 is not found", valid, version="999", expect=NOT_FOUND)
    for tensor in model.required:
        if tensor.datatype.startswith("FP") and model.name not in nan_exempt:
            for label, value in (("nan", np.nan), ("inf", np.inf)):
                poisoned = [(n, d, a.copy()) for n, d, a in valid]
                array = next(a for n, _, a in poisoned if n == tensor.name)
                array.flat[0] = value
                case(f"{label}-in-{tensor.name}", rf"'{tensor.name}'.*(nan|inf|finite)", poisoned)
        if tensor.datatype == "BYTES":
            out.extend(_bytes_cases(model, protocol, tensor, valid))
    if model.platform == "python" and [t.name for t in model.required] == ["embedding"]:
        out.extend(_embedding_cases(model, protocol, valid))
    if protocol == "http":
        out.extend(_raw_http_cases(model, valid))
    return out


def _with(valid: list, name: str, item: bytes) -> list:
    return [
        (n, d, np.full(a.shape, item, dtype=np.object_) if n == name else a) for n, d, a in valid
    ]


def _bytes_cases(model: Model, protocol: str, tensor: Tensor, valid: list) -> list[Case]:
    if "IMAGE" in tensor.name.upper():
        png = png_bytes()
        items = {
            "non-image-bytes": (b"%PDF-1.4 this is not an image", r"image|decode|identify|format"),
            "truncated-png": (png[: len(png) // 2], r"image|decode|truncated|broken"),
            "decompression-bomb": (
                decompression_bomb(),
                r"pixels|too (large|big)|bomb|exceeds|limit",
            ),
            "empty-bytes": (b"", r"empty|image|decode"),
            # 75 KB on the wire, 64 MiB decoded: refused from the header, in milliseconds.
            "blank-4096x4096-rgba": (blank_rgba_png(), r"16,777,216 pixels, over the limit"),
        }
    else:
        items = {
            "empty-string": (b"", r"empty"),
            "1mb-string": (b"word " * (1 << 18), r"too long|exceeds|length|bytes|characters"),
            "invalid-utf8": (b"caf\xc3\x28 \xff\xfe", r"utf-?8"),
        }
        # Not whitespace to str.strip(), yet the normaliser drops them: [CLS] [SEP] alone.
        for kind, text in NO_CONTENT_TEXTS.items():
            items[kind] = (text.encode(), r"no content")
    return [
        _tensor_case(model, protocol, kind, says, _with(valid, tensor.name, item))
        for kind, (item, says) in items.items()
    ]


#: Texts with no content token (kind -> text): the tokenizer must refuse them.
NO_CONTENT_TEXTS = {
    "zero-width-only": "\u200b\u200b\ufeff",
    "control-only": "\x00\x01\x7f",
    "soft-hyphen-only": "\u00ad",
    "lone-combining-accent": "\u0301",
}


def _embedding_cases(model: Model, protocol: str, valid: list) -> list[Case]:
    """Pooling's input is the encoder's pooled row: all zeros means no token was pooled."""
    zeros = [(n, d, np.zeros_like(a) if n == "embedding" else a) for n, d, a in valid]
    return [_tensor_case(model, protocol, "all-zero-embedding", r"all zeros: no token", zeros)]


def _raw_http_cases(model: Model, valid: list) -> list[Case]:
    name = model.name

    def malformed(http: str, _grpc: str) -> Outcome:
        return send_raw(http, name, b'{"inputs": [{"name": "X", "shape": [1,')

    def large(http: str, _grpc: str) -> Outcome:
        tensors = []
        for tensor_name, datatype, array in valid:
            tensor = httpclient.InferInput(tensor_name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        body, header_size = httpclient.InferenceServerClient.generate_request_body(tensors)
        body += b"\0" * (LARGE_BODY - len(body))
        headers = {"Inference-Header-Content-Length": str(header_size)}
        return send_raw(http, name, body, headers)

    return [
        Case(
            name,
            "http",
            "malformed-json",
            MALFORMED_JSON_STATUS,
            r"failed to parse the request JSON",
            malformed,
        ),
        Case(name, "http", "large-body-3.75MiB", "400", r"unexpected additional input data", large),
    ]


def unknown_model_case(protocol: str) -> Case:
    model = Model("no_such_model", 0, (Tensor("X", "FP32", (4,)),), "")
    return _tensor_case(
        model,
        protocol,
        "unknown-model",
        r"unknown model: 'no_such_model'",
        valid_inputs(model),
        expect=NOT_FOUND,
    )
