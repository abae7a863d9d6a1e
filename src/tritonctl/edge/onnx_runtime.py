"""ONNX Runtime bundles: the ORT format, its operator list, and a fixed-shape mobile variant.

- ``model.ort``: ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` with the ``Fixed``
  optimization style (the tool's advice for the CPU provider), plus the
  ``required_operators.config`` a reduced-size ONNX Runtime build is made from
  (``build.sh --minimal_build --include_ops_by_config``).
- ``model.fixed.ort``: every dynamic axis fixed (``onnxruntime.tools.make_dynamic_shape_fixed``,
  batch 1 and, for text, 128 tokens), in the ``Runtime`` style the tool advises for NNAPI and
  CoreML. NNAPI and CoreML take only fixed shapes; ONNX Runtime's own usability checker says
  which operators they cannot take, and those run on the CPU. The manifest records them.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tritonctl.recipes.common import BuildError

#: the text fixed-shape variant's sequence length: what mobile apps commonly pad to
FIXED_SEQUENCE = 128


def _tool(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise BuildError(f"{args[0]} failed: " + " | ".join(tail))


def to_ort(source: Path, target: Path, style: str) -> Path:
    """Convert ``source`` to ``target`` (``.ort``) and write ``target``'s operator config.

    The tool names its outputs after the input file and writes them beside each other; this
    works in a private folder and moves the two files the bundle keeps.
    """
    with tempfile.TemporaryDirectory(prefix="ort-", dir=target.parent) as work:
        model = Path(work) / "model.onnx"
        shutil.copyfile(source, model)
        _tool(
            "onnxruntime.tools.convert_onnx_models_to_ort",
            str(model),
            "--output_dir",
            str(Path(work) / "out"),
            "--optimization_style",
            style,
        )
        out = Path(work) / "out"
        suffix = "" if style == "Fixed" else ".with_runtime_opt"
        shutil.move(out / f"model{suffix}.ort", target)
        config = target.with_name(target.stem + ".required_operators.config")
        shutil.move(out / f"model.required_operators{suffix}.config", config)
        _name_sources(config, target.name)
    return target


def _name_sources(config: Path, model: str) -> None:
    """The tool heads the config with the absolute paths it converted (``# - /…/model.ort``),
    here a temporary build folder: name the bundle's model file instead, so a shipped bundle
    carries no build-machine path and the config's bytes do not change from build to build."""
    lines = config.read_text(encoding="utf-8").splitlines()
    sources = [line for line in lines if line.startswith("# - ")]
    kept = [line for line in lines if not line.startswith("# - ")]
    if sources:
        header = "# Generated from model/s:"
        kept.insert(kept.index(header) + 1 if header in kept else 0, f"# - {model}")
    config.write_text("\n".join(kept) + "\n", encoding="utf-8")


def fix_shapes(source: Path, target: Path, dims: dict[str, int]) -> Path:
    """``source`` with each named dynamic dimension (``dim_param``) set to a fixed value."""
    current = source
    for name, value in dims.items():
        _tool(
            "onnxruntime.tools.make_dynamic_shape_fixed",
            "--dim_param",
            name,
            "--dim_value",
            str(value),
            str(current),
            str(target),
        )
        current = target
    return target


def dynamic_dims(path: Path) -> list[str]:
    """Names of the dynamic dimensions of the model's inputs."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = [d.dim_param for i in graph.input for d in i.type.tensor_type.shape.dim if d.dim_param]
    return list(dict.fromkeys(names))


def io_spec(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs as ``{"name", "dtype", "shape"}`` (a name for each dynamic axis)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def spec(values: Any) -> list[dict[str, Any]]:
        return [
            {"name": v.name, "dtype": v.type.removeprefix("tensor(").rstrip(")"), "shape": v.shape}
            for v in values
        ]

    return spec(session.get_inputs()), spec(session.get_outputs())


def mobile_fallback(fixed: Path) -> dict[str, Any]:
    """Which operators NNAPI and CoreML would leave to the CPU, from ONNX Runtime's own checker.

    Like ``python -m onnxruntime.tools.check_onnx_model_mobile_usability``: the model is first
    optimized at the basic level (as the ORT-format conversion does), then partitioned.
    """
    import onnx
    from onnxruntime.tools.mobile_helpers import usability_checker as checker
    from onnxruntime.tools.onnx_model_utils import optimize_model

    logging.getLogger("usability_checker").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="mobile-", dir=fixed.parent) as work:
        optimized = Path(work) / "basic.onnx"
        optimize_model(fixed, optimized, use_external_initializers=True)
        model = onnx.shape_inference.infer_shapes(onnx.load(str(optimized)))
    providers = {
        "NNAPI": lambda: checker.check_nnapi_partitions(model, True),
        "CoreML (MLProgram)": lambda: checker.check_coreml_partitions(
            model, True, "coreml_supported_mlprogram_ops.md"
        ),
    }
    result = {}
    for name, check in providers.items():
        info = check()
        result[name] = {
            "nodes": info.num_nodes,
            "nodes_on_accelerator": info.num_supported_nodes,
            "partitions": info.num_partitions,
            "cpu_fallback_operators": sorted(info.unsupported_ops),
            "verdict": info.suitability().name,  # YES / MAYBE / NO: ORT's own rule of thumb
        }
    return result


def build_bundle_model(source: Path, folder: Path, *, text: bool) -> dict[str, Any]:
    """Write ``model.ort``, ``model.fixed.ort`` and their operator configs into ``folder``."""
    to_ort(source, folder / "model.ort", "Fixed")
    fixed_dims = {
        name: (FIXED_SEQUENCE if name == "sequence" else 1) for name in dynamic_dims(source)
    }
    if text and "sequence" not in fixed_dims:
        raise BuildError(f"{source}: no 'sequence' axis to fix (dynamic axes: {list(fixed_dims)})")
    with tempfile.TemporaryDirectory(prefix="fixed-", dir=folder) as work:
        fixed_onnx = fix_shapes(source, Path(work) / "fixed.onnx", fixed_dims)
        fallback = mobile_fallback(fixed_onnx)
        to_ort(fixed_onnx, folder / "model.fixed.ort", "Runtime")
    inputs, outputs = io_spec(folder / "model.ort")
    fixed_inputs, _ = io_spec(folder / "model.fixed.ort")
    variant: dict[str, Any] = {
        "file": "model.fixed.ort",
        "required_operators": "model.fixed.required_operators.config",
        "optimization_style": "Runtime",
        "fixed_dims": fixed_dims,
        "inputs": fixed_inputs,
        "mobile_execution_providers": fallback,
    }
    if text:
        variant["fixed_lengths"] = [FIXED_SEQUENCE]
    return {
        "model": {
            "file": "model.ort",
            "format": "ORT",
            "optimization_style": "Fixed",
            "required_operators": "model.required_operators.config",
            "inputs": inputs,
            "outputs": outputs,
        },
        "variants": {"fixed_shape": variant},
    }
