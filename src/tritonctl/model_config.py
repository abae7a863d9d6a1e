"""Read and write ``config.pbtxt`` with Triton's own protobuf schema.

Never build a config as a string: use ``ModelConfig`` from ``tritonclient.grpc.model_config_pb2``
and ``save_config``, which prints it with ``google.protobuf.text_format``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

ModelConfig = mc.ModelConfig

#: numpy dtype name -> Triton ``DataType``
NUMPY_TO_TRITON = {
    "float32": mc.TYPE_FP32,
    "float16": mc.TYPE_FP16,
    "float64": mc.TYPE_FP64,
    "int64": mc.TYPE_INT64,
    "int32": mc.TYPE_INT32,
    "int8": mc.TYPE_INT8,
    "uint8": mc.TYPE_UINT8,
    "bool": mc.TYPE_BOOL,
    "object": mc.TYPE_STRING,
    "bytes": mc.TYPE_STRING,
}


class ConfigError(ValueError):
    """A ``config.pbtxt`` that does not parse; the message names the file and line."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path, self.line = path, line
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


def parse_config(text: str, path: Path | str = "<config.pbtxt>") -> mc.ModelConfig:
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        line = error.GetLine() if hasattr(error, "GetLine") else None
        column = error.GetColumn() if hasattr(error, "GetColumn") else None
        message = str(error)
        # ParseError's text starts with "line:column : "; keep just the reason.
        if ":" in message and message.split(":", 1)[0].strip().isdigit():
            message = message.split(" : ", 1)[-1]
        if column:
            message = f"column {column}: {message}"
        raise ConfigError(Path(path), line, message) from None
    return config


def load_config(path: str | Path) -> mc.ModelConfig:
    """Parse a ``config.pbtxt`` (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.pbtxt"
    return parse_config(path.read_text(), path)


def config_text(config: mc.ModelConfig) -> str:
    return str(text_format.MessageToString(config, use_short_repeated_primitives=True))


def save_config(config: mc.ModelConfig, path: str | Path, *, backup: bool = False) -> Path:
    """Write ``config`` to ``path`` (a file or a model folder); optionally keep ``config.pbtxt.bak``."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".pbtxt":
        path = path / "config.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if backup and path.exists():
        shutil.copy2(path, path.with_name(path.name + ".bak"))
    path.write_text(config_text(config))
    return path


def tensor(name: str, dtype: int, dims: list[int]) -> mc.ModelInput:
    """Shorthand for a ``ModelInput`` (also usable as output via ``output()``)."""
    return mc.ModelInput(name=name, data_type=dtype, dims=dims)


def output(name: str, dtype: int, dims: list[int]) -> mc.ModelOutput:
    return mc.ModelOutput(name=name, data_type=dtype, dims=dims)


def set_parameter(config: mc.ModelConfig, key: str, value: str) -> None:
    config.parameters[key].string_value = value


def set_queue_policy(config: mc.ModelConfig, *, timeout_us: int, max_queue_size: int) -> None:
    """Bound the dynamic batcher's queue: reject a request that waited ``timeout_us`` or found
    ``max_queue_size`` requests ahead of it (gRPC ``UNAVAILABLE``, retryable elsewhere) instead of
    queuing it forever; clients may ask for a shorter timeout. See SECURITY.md, "Overload"."""
    policy = config.dynamic_batching.default_queue_policy
    policy.timeout_action = mc.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = timeout_us
    policy.allow_timeout_override = True
    policy.max_queue_size = max_queue_size
