"""Call any served model from the shell: its inputs from ``NAME=VALUE`` / ``NAME=@FILE`` strings,
typed and shaped from the model's own metadata (``tritonctl infer MODEL --input ...``).

    spec = signature("127.0.0.1:8001", "tokenizer")
    inputs = {"TEXT": parse_value(spec.input("TEXT"), "A cat sleeps.", spec.max_batch_size)}
    outputs = call("127.0.0.1:8001", spec, inputs)

Values:

- numeric inputs: a JSON number or nested list (``3``, ``[[1, 2], [3, 4]]``), or numbers
  separated by commas or spaces (``1,2,3``);
- ``BYTES`` inputs: the text itself is one item (UTF-8); a JSON list of strings is several;
- ``@FILE``: an ``.npy`` file is loaded as an array; for a ``BYTES`` input any other file is
  one item holding the file's bytes (an image, say); for a numeric input its text is a value.

A value is fitted to the input's shape by adding leading or trailing axes of 1 (a batch of one
where the model batches), so ``--input TEXT=hello`` fills a ``[-1, 1]`` input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonctl.client import InferenceError, Protocol, RequestError, client, infer


class InputError(ValueError):
    """An ``--input`` that does not fit the model; the message names the input and the fix."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # with the batch dimension first where the model batches
    optional: bool = False

    def describe(self) -> str:
        return f"{self.name} ({self.datatype} {list(self.shape)})"


@dataclass(frozen=True)
class Signature:
    """A served model's inputs and outputs, as its metadata and config give them."""

    model: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    platform: str = ""

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InputError(
            f"model '{self.model}' has no input '{name}'; its inputs are "
            + ", ".join(s.describe() for s in self.inputs)
        )

    def usage(self) -> str:
        """How to call this model from the command line."""
        names = [s.name for s in self.inputs]
        outputs = {s.name for s in self.outputs}
        if names == ["IMAGE"] and self.inputs[0].datatype == "BYTES":
            return f"it is an image pipeline: tritonctl infer digits IMAGE... --model {self.model}"
        if names == ["TEXT"] and "EMBEDDING" in outputs:
            return (
                "it is a text-embedding pipeline: "
                f"tritonctl infer text-embedding SENTENCE... --model {self.model}"
            )
        flags = " ".join(f"--input {s.name}=VALUE" for s in self.inputs if not s.optional)
        return f"call it with: tritonctl infer {self.model} {flags}".rstrip()


def _served_models(conn: Any, protocol: Protocol) -> list[str]:
    """Names of the models the server has loaded (the statistics API is not restricted)."""
    try:
        if protocol == "grpc":
            stats = conn.get_inference_statistics(as_json=True)
        else:
            stats = conn.get_inference_statistics()
    except Exception:  # noqa: BLE001 - only used to enrich an error message
        return []
    return sorted({s["name"] for s in stats.get("model_stats", [])})


def _unreachable(url: str, protocol: Protocol, error: BaseException) -> InferenceError:
    return InferenceError(f"cannot reach a Triton server at {url} over {protocol}: {error}")


def signature(url: str, model: str, protocol: Protocol = "grpc") -> Signature:
    """The model's inputs and outputs from the server; ``RequestError`` naming the served
    models if there is no such model."""
    from tritonclient.utils import InferenceServerException

    conn = client(url, protocol)
    try:
        try:
            as_json = {"as_json": True} if protocol == "grpc" else {}
            metadata = conn.get_model_metadata(model, **as_json)
            config = conn.get_model_config(model, **as_json)
        except InferenceServerException as error:
            served = _served_models(conn, protocol)
            if served or "unknown model" in str(error.message()).lower():
                listed = ", ".join(served) if served else "none"
                raise RequestError(
                    f"the server at {url} serves no model '{model}'; it serves: {listed}"
                ) from None
            raise _unreachable(url, protocol, error) from None
        except OSError as error:
            raise _unreachable(url, protocol, error) from None
    finally:
        conn.close()
    config = config.get("config", config)
    optional = {i["name"] for i in config.get("input", []) if i.get("optional")}

    def specs(entries: Sequence[Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(
                e["name"], e["datatype"], tuple(int(d) for d in e["shape"]), e["name"] in optional
            )
            for e in entries
        )

    return Signature(
        model=model,
        inputs=specs(metadata.get("inputs", [])),
        outputs=specs(metadata.get("outputs", [])),
        max_batch_size=int(config.get("max_batch_size", 0)),
        platform=str(metadata.get("platform", "")),
    )


# --- values ---------------------------------------------------------------------------------


#: The most a file given on the command line may hold: read whole into one request, a device
#: such as /dev/zero (or a mistyped multi-GB path) would otherwise fill the memory.
MAX_FILE_BYTES = 256 * 1024 * 1024


def read_file(path: str | Path) -> bytes:
    """A file's bytes; ``InputError`` naming the file if it cannot be read or holds more than
    ``MAX_FILE_BYTES``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise InputError(f"cannot read {path}: it is a folder") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"cannot send {path}: it holds more than {MAX_FILE_BYTES:,} bytes")
    return data


def _numbers(text: str, spec: TensorSpec) -> Any:
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    parts = [p for p in re.split(r"[,\s]+", text) if p]
    try:
        return [_number(p) for p in parts]
    except ValueError:
        raise InputError(
            f"input '{spec.name}' is {spec.datatype}: {text[:60]!r} is not a number, a list of "
            "numbers (1,2,3) or a JSON array"
        ) from None


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def raw_value(spec: TensorSpec, value: str) -> np.ndarray:
    """``VALUE`` or ``@FILE`` as an array of the input's type (shape not yet fitted)."""
    from tritonclient.utils import triton_to_np_dtype

    if value.startswith("@"):
        path = Path(value[1:])
        if path.suffix == ".npy":
            data = read_file(path)
            try:
                import io

                array = np.load(io.BytesIO(data), allow_pickle=False)
            except ValueError as error:
                raise InputError(f"{path} is not a readable .npy array: {error}") from None
            return _convert(spec, array, str(path))
        if spec.datatype == "BYTES":
            return np.array([read_file(path)], dtype=np.object_)
        value = read_file(path).decode("utf-8", errors="replace")
    if spec.datatype == "BYTES":
        items: Any = value
        if value.lstrip().startswith("["):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
                items = parsed
        if isinstance(items, str):
            items = [items]
        return np.array([argv_bytes(x) for x in items], dtype=np.object_)
    dtype = triton_to_np_dtype(spec.datatype)
    if dtype is None:
        raise InputError(f"input '{spec.name}' has a type ({spec.datatype}) the CLI cannot send")
    return _convert(spec, np.asarray(_numbers(value, spec)), value)


def _convert(spec: TensorSpec, array: np.ndarray, source: str) -> np.ndarray:
    from tritonclient.utils import triton_to_np_dtype

    if spec.datatype == "BYTES":
        return np.array([_as_bytes(x) for x in array.reshape(-1)], dtype=np.object_).reshape(
            array.shape
        )
    dtype = np.dtype(triton_to_np_dtype(spec.datatype))
    if array.dtype.kind in "OUS":
        raise InputError(f"input '{spec.name}' is {spec.datatype}: {source[:60]!r} holds text")
    if dtype.kind in "iub" and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise InputError(f"input '{spec.name}' is {spec.datatype}: {source[:60]!r} has fractions")
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise InputError(
                f"input '{spec.name}' is {spec.datatype}: values must be in "
                f"[{info.min}, {info.max}]"
            )
    return array.astype(dtype)


def _as_bytes(item: Any) -> bytes:
    return item if isinstance(item, bytes) else argv_bytes(str(item))


def argv_bytes(text: str) -> bytes:
    """A command-line argument's own bytes: Python decodes argv with ``surrogateescape``, so
    bytes that are not UTF-8 arrive as lone surrogates, which ``encode("utf-8")`` cannot encode.
    They are sent as they were typed, and the server names the invalid item."""
    return text.encode("utf-8", "surrogateescape")


def fit_shape(spec: TensorSpec, array: np.ndarray, max_batch_size: int) -> np.ndarray:
    """``array`` reshaped to the input's shape by adding axes of 1 before or after it."""
    target = spec.shape

    def fits(shape: tuple[int, ...]) -> bool:  # as long as target: built so below
        return all(t in (-1, s) for s, t in zip(shape, target, strict=True))

    shape = array.shape
    # Leading axes first: a value is one item (a batch of one) unless only trailing axes fit,
    # as for a list of texts given to a [-1, 1] input.
    for lead in reversed(range(len(target) - len(shape) + 1)):
        candidate = (1,) * lead + shape + (1,) * (len(target) - len(shape) - lead)
        if fits(candidate):
            fitted = array.reshape(candidate)
            if max_batch_size and fitted.shape[0] > max_batch_size:
                raise InputError(
                    f"input '{spec.name}' holds a batch of {fitted.shape[0]}; "
                    f"the model takes at most {max_batch_size} per request"
                )
            return fitted
    batch = " (the first dimension is the batch)" if max_batch_size else ""
    raise InputError(
        f"input '{spec.name}' expects shape {list(target)}{batch}, -1 meaning any size; the "
        f"value has shape {list(shape)}"
    )


def parse_inputs(spec: Signature, assignments: Sequence[str]) -> dict[str, np.ndarray]:
    """``["NAME=VALUE", "NAME=@FILE", ...]`` → ``{name: array}`` typed and shaped for ``spec``;
    ``InputError`` for an unknown, repeated or missing input, or a value that does not fit."""
    values: dict[str, np.ndarray] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name:
            raise InputError(f"--input {assignment!r}: expected NAME=VALUE or NAME=@FILE")
        tensor = spec.input(name)
        if name in values:
            raise InputError(f"input '{name}' is given twice")
        values[name] = fit_shape(tensor, raw_value(tensor, value), spec.max_batch_size)
    missing = [s for s in spec.inputs if s.name not in values and not s.optional]
    if missing:
        raise InputError(
            f"model '{spec.model}' needs input {', '.join(s.describe() for s in missing)}: "
            + spec.usage()
        )
    batches = {v.shape[0] for v in values.values()} if spec.max_batch_size else set()
    if len(batches) > 1:
        raise InputError(f"the inputs' batch sizes differ: {sorted(batches)}")
    return values


def call(
    url: str, spec: Signature, values: Mapping[str, np.ndarray], protocol: Protocol = "grpc"
) -> dict[str, np.ndarray]:
    """One request with ``values``; every output of the model, by name."""
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    tensors = []
    for name, array in values.items():
        tensor = module.InferInput(name, list(array.shape), spec.input(name).datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    try:
        return infer(url, spec.model, tensors, [o.name for o in spec.outputs], protocol)
    except OSError as error:
        raise _unreachable(url, protocol, error) from None


def jsonable(array: np.ndarray) -> Any:
    """An output as JSON values: text for BYTES, null for NaN/Inf (JSON has neither)."""
    if array.dtype == np.object_:
        return [jsonable(x) for x in array] if array.ndim else _text(array.item())
    values = array.astype(np.float64) if array.dtype.kind == "f" else array
    listed = values.tolist()
    return _nulls(listed) if array.dtype.kind == "f" else listed


def _text(item: Any) -> str:
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            return item.hex()
    return str(item)


def _nulls(value: Any) -> Any:
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value if np.isfinite(value) else None


# --- the digits pipeline --------------------------------------------------------------------


def read_images(files: Sequence[str | Path]) -> list[bytes]:
    """Each file's bytes, checked with the server's own decoder (``image_preprocess``) so that
    a file that is not an image is named here rather than refused as a whole request."""
    from tritonctl.drift import backend_module

    decoder = backend_module("image_preprocess")
    images = []
    for file in files:
        data = read_file(file)
        try:
            decoder.decode(data)
        except decoder.ImageError as error:
            raise InputError(f"{file}: {error}") from None
        images.append(data)
    return images


def classify_images(
    images: Sequence[bytes], url: str, protocol: Protocol = "grpc", model: str = "digit_classifier"
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (str ``[N, k]``, most probable first) and their probabilities (``[N, k]``) from an
    image pipeline such as ``digit_classifier``; ``RequestError`` naming the right command if
    ``model`` is not one."""
    spec = signature(url, model, protocol)
    outputs = {o.name for o in spec.outputs}
    if [i.name for i in spec.inputs] != ["IMAGE"] or not {"LABELS", "SCORES"} <= outputs:
        raise RequestError(
            f"model '{model}' is not an image classifier (inputs "
            + ", ".join(i.describe() for i in spec.inputs)
            + f"): {spec.usage()}"
        )
    batch = np.array(list(images), dtype=np.object_).reshape(-1, 1)
    out = call(url, spec, {"IMAGE": batch}, protocol)
    labels = np.vectorize(_text, otypes=[object])(out["LABELS"]).astype(str)
    return labels, np.asarray(out["SCORES"], dtype=np.float64)
