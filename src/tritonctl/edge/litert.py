"""LiteRT (TFLite) models: PyTorch → ``.tflite`` with ``litert-torch``, INT8 with ``ai-edge-quantizer``.

No TensorFlow is involved. The digits models are rebuilt in PyTorch from the **served** ONNX
files' weights (the exporter keeps the PyTorch parameter names), so the ``.tflite`` file is
the very model Triton serves, and checked against it. MiniLM is converted with masked mean
pooling and L2 normalisation inside the graph, at fixed sequence lengths (one signature each,
sharing the weights): dynamic shapes for transformers are an open problem of the converter,
and a fixed length is what mobile accelerators take anyway. TFLite has no INT64 inputs: the
token ids and mask become INT32.

Quantization recipes (``ai_edge_quantizer.recipe``): ``dynamic_wi8_afp32`` (INT8 weights,
float activations) and ``static_wi8_ai8`` (INT8 weights and activations; calibrated on the
training split, so inputs and outputs are INT8 with a scale and zero point that the runner
applies).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: MiniLM's fixed sequence lengths; the last is the served tokenizer's truncation length
TEXT_LENGTHS = (32, 64, 128, 256)
#: precision name -> ai_edge_quantizer recipe function (None: float, unquantized)
RECIPES = {"fp32": None, "dynamic_int8": "dynamic_wi8_afp32", "static_int8": "static_wi8_ai8"}


def unavailable_reason() -> str | None:
    """Why LiteRT bundles cannot be built here, or None."""
    # torchao (imported by litert_torch) warns about each CUDA kernel library it cannot load.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        import ai_edge_litert  # noqa: F401
        import ai_edge_quantizer  # noqa: F401
        import litert_torch  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed (pip install 'tritonctl[edge]')"
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The converter prints a progress tree per stage; the build shows its own progress."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def digits_module(onnx_path: Path) -> Any:
    """The PyTorch ``DigitsCNN`` holding the weights of a served digits ONNX file."""
    import onnx
    import torch
    from onnx import numpy_helper

    from tritonctl.recipes.digits.train import DigitsCNN, Width

    graph = onnx.load(str(onnx_path)).graph
    state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    width = Width(
        state["conv1.weight"].shape[0], state["conv2.weight"].shape[0], state["fc1.weight"].shape[0]
    )
    model = DigitsCNN(width)
    model.load_state_dict(state)
    return model.eval()


def text_module(weights: Path) -> Any:
    """MiniLM with the served pooling inside: int32 ids and mask → unit-length embedding."""
    import torch

    from tritonctl.recipes.text.export import load_model

    encoder = load_model(weights)

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            ids, mask = input_ids.long(), attention_mask.long()
            hidden = self.encoder(
                input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
            ).last_hidden_state
            weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * weights).sum(1) / torch.clamp(weights.sum(1), min=1e-9)
            return pooled / torch.clamp(pooled.norm(dim=1, keepdim=True), min=1e-12)

    return Embedder().eval()


def convert_digits(model: Any, target: Path) -> Path:
    import litert_torch
    import torch

    with _quiet():
        litert_torch.convert(model, (torch.zeros(1, 1, 8, 8),)).export(str(target))
    return target


def convert_text(model: Any, target: Path, lengths: tuple[int, ...] = TEXT_LENGTHS) -> Path:
    """One ``.tflite`` with a signature ``len_<n>`` per length (the weights stored once)."""
    import litert_torch
    import torch

    converter: Any = None
    for n in lengths:
        args = (torch.zeros(1, n, dtype=torch.int32), torch.ones(1, n, dtype=torch.int32))
        converter = (
            litert_torch.signature(f"len_{n}", model, args)
            if converter is None
            else converter.signature(f"len_{n}", model, args)
        )
    with _quiet():
        converter.convert().export(str(target))
    return target


def quantize(
    float_model: Path, target: Path, precision: str, calibration: np.ndarray | None
) -> Path:
    """``float_model`` quantized with the ``precision`` recipe (static needs ``calibration``)."""
    from ai_edge_quantizer import quantizer, recipe

    name = RECIPES[precision]
    if name is None:
        raise ValueError(f"{precision} is not a quantized precision")
    q = quantizer.Quantizer(str(float_model))
    q.load_quantization_recipe(getattr(recipe, name)())
    with _quiet(), open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        if precision == "static_int8":
            if calibration is None:
                raise ValueError("static INT8 needs calibration images")
            samples = [{"args_0": x[None]} for x in calibration.astype(np.float32)]
            result = q.quantize(q.calibrate({"serving_default": samples}))
        else:
            result = q.quantize()
        result.export_model(str(target), overwrite=True)
    return target


def io_spec(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Inputs, outputs (of the first signature) and the signature names of a ``.tflite`` file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    names = list(interpreter.get_signature_list())
    runner = interpreter.get_signature_runner(names[0])

    def spec(details: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "dtype": np.dtype(d["dtype"]).name,
                "shape": [int(s) for s in d["shape"]],
                **(
                    {"quantization": [float(d["quantization"][0]), int(d["quantization"][1])]}
                    if d["quantization"][0]
                    else {}
                ),
            }
            for name, d in details.items()
        ]

    return spec(runner.get_input_details()), spec(runner.get_output_details()), names
