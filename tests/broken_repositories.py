"""A corpus of broken model repositories, made by code: one mistake each, and what `check` must say.

Each case starts from the tiny repository (``double`` ONNX, ``add_one`` Python) plus a small
ensemble ``pipeline`` (X -> double -> add_one -> Y), breaks one thing through the protobuf
config (never a string template for what is meant to be valid), and names the file, the text on
the line that must be reported, and a phrase the message must contain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tests.tiny_repository import make_tiny_repository
from tritonctl.model_config import load_config, output, save_config, tensor


def make_pipeline_repository(root: Path) -> Path:
    """The tiny repository plus ``pipeline``: an ensemble of double then add_one."""
    make_tiny_repository(root)
    ensemble = mc.ModelConfig(name="pipeline", platform="ensemble", max_batch_size=32)
    ensemble.input.append(tensor("INPUT", mc.TYPE_FP32, [4]))
    ensemble.output.append(output("OUTPUT", mc.TYPE_FP32, [4]))
    first = ensemble.ensemble_scheduling.step.add(model_name="double", model_version=-1)
    first.input_map["X"] = "INPUT"
    first.output_map["Y"] = "doubled"
    second = ensemble.ensemble_scheduling.step.add(model_name="add_one", model_version=-1)
    second.input_map["X"] = "doubled"
    second.output_map["Y"] = "OUTPUT"
    save_config(ensemble, root / "pipeline")
    (root / "pipeline" / "1").mkdir(parents=True, exist_ok=True)
    return root


def _edit(root: Path, model: str, change: Callable[[mc.ModelConfig], None]) -> None:
    config = load_config(root / model)
    change(config)
    save_config(config, root / model)


@dataclass(frozen=True)
class BrokenCase:
    name: str
    breaks: Callable[[Path], None]
    file: str  # relative to the repository
    line_text: str | None  # text on the reported line (None: no line expected)
    says: str  # a phrase of the message


def _step(config: mc.ModelConfig, index: int) -> mc.ModelEnsembling.Step:
    return config.ensemble_scheduling.step[index]


def _rename_input(c: mc.ModelConfig) -> None:
    c.input[0].name = "INPUT__0"


def _rename_output(c: mc.ModelConfig) -> None:
    c.output[0].name = "probabilities"


def _fp16_input(c: mc.ModelConfig) -> None:
    c.input[0].data_type = mc.TYPE_FP16


def _wrong_dim(c: mc.ModelConfig) -> None:
    c.input[0].dims[:] = [5]


def _wrong_rank(c: mc.ModelConfig) -> None:
    c.output[0].dims[:] = [4, 1]


def _no_batch_dim(c: mc.ModelConfig) -> None:
    c.max_batch_size = 0
    c.ClearField("dynamic_batching")


def _preferred_too_big(c: mc.ModelConfig) -> None:
    c.dynamic_batching.preferred_batch_size[:] = [8, 64]


def _unknown_step_model(c: mc.ModelConfig) -> None:
    _step(c, 1).model_name = "add_two"


def _bad_input_map_key(c: mc.ModelConfig) -> None:
    step = _step(c, 0)
    del step.input_map["X"]
    step.input_map["IMAGE"] = "INPUT"


def _unwired_tensor(c: mc.ModelConfig) -> None:
    _step(c, 1).input_map["X"] = "halved"


def _bad_output_map_key(c: mc.ModelConfig) -> None:
    step = _step(c, 1)
    del step.output_map["Y"]
    step.output_map["LOGITS"] = "OUTPUT"


def _output_not_produced(c: mc.ModelConfig) -> None:
    c.output.append(output("SCORES", mc.TYPE_FP32, [4]))


def _dtype_mismatch(c: mc.ModelConfig) -> None:
    c.input[0].data_type = mc.TYPE_INT32


def _missing_model_py(root: Path) -> None:
    (root / "add_one" / "1" / "model.py").unlink()


def _no_python_class(root: Path) -> None:
    path = root / "add_one" / "1" / "model.py"
    path.write_text(path.read_text().replace("class TritonPythonModel", "class AddOne"))


def _python_syntax_error(root: Path) -> None:
    path = root / "add_one" / "1" / "model.py"
    path.write_text(
        path.read_text().replace("def execute(self, requests):", "def execute(self requests):")
    )


def _config(model: str, change: Callable[[mc.ModelConfig], None]) -> Callable[[Path], None]:
    return lambda root: _edit(root, model, change)


CASES = [
    BrokenCase("onnx-input-name", _config("double", _rename_input), "double/config.pbtxt", '"INPUT__0"', "is not an input of the ONNX graph"),
    BrokenCase("onnx-output-name", _config("double", _rename_output), "double/config.pbtxt", '"probabilities"', "is not an output of the ONNX graph"),
    BrokenCase("onnx-dtype", _config("double", _fp16_input), "double/config.pbtxt", '"X"', "is TYPE_FP16 in the config but TYPE_FP32 in the ONNX graph"),
    BrokenCase("onnx-dims", _config("double", _wrong_dim), "double/config.pbtxt", '"X"', "dim 1 is 5 in the config but 4 in the ONNX graph"),
    BrokenCase("onnx-rank", _config("double", _wrong_rank), "double/config.pbtxt", '"Y"', "has rank 3"),
    BrokenCase("onnx-batch-dim", _config("double", _no_batch_dim), "double/config.pbtxt", '"X"', "rank 1 [4] in the config but rank 2"),
    BrokenCase("preferred-batch-size", _config("add_one", _preferred_too_big), "add_one/config.pbtxt", "preferred_batch_size", "preferred_batch_size 64 exceeds max_batch_size 32"),
    BrokenCase("ensemble-unknown-model", _config("pipeline", _unknown_step_model), "pipeline/config.pbtxt", '"add_two"', "'add_two', which is not in the repository"),
    BrokenCase("ensemble-input-map-key", _config("pipeline", _bad_input_map_key), "pipeline/config.pbtxt", '"IMAGE"', "input_map key 'IMAGE' is not an input of 'double'"),
    BrokenCase("ensemble-unwired", _config("pipeline", _unwired_tensor), "pipeline/config.pbtxt", '"halved"', "'halved' is neither an ensemble input nor an output of an earlier step"),
    BrokenCase("ensemble-output-map-key", _config("pipeline", _bad_output_map_key), "pipeline/config.pbtxt", '"LOGITS"', "output_map key 'LOGITS' is not an output of 'add_one'"),
    BrokenCase("ensemble-output-not-produced", _config("pipeline", _output_not_produced), "pipeline/config.pbtxt", '"SCORES"', "ensemble output 'SCORES' is not produced"),
    BrokenCase("ensemble-dtype", _config("pipeline", _dtype_mismatch), "pipeline/config.pbtxt", '"X"', "'INPUT' is TYPE_INT32 but input 'X' of 'double' is TYPE_FP32"),
    BrokenCase("python-missing-model-py", _missing_model_py, "add_one", None, "has no model.py"),
    BrokenCase("python-no-class", _no_python_class, "add_one/1/model.py", None, "defines no class TritonPythonModel"),
    BrokenCase("python-syntax-error", _python_syntax_error, "add_one/1/model.py", "def execute(self requests):", "does not parse"),
]  # fmt: skip
