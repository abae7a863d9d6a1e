"""A tiny model repository made by code, for testing the server machinery without the real models."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc

from tritonctl.model_config import output, save_config, set_parameter, tensor

ADD_ONE_PY = """\
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.delay = float(config["parameters"].get("delay_s", {}).get("string_value", "0"))
        # Requests inside execute right now: with Triton's pending count, what was accepted.
        self.family = pb_utils.MetricFamily(  # must outlive its metric
            name="tiny_add_one_executing",
            description="requests add_one is executing",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.executing = self.family.Metric(labels={"instance": args["model_instance_name"]})

    def execute(self, requests):
        self.executing.set(len(requests))
        arrays = [pb_utils.get_input_tensor_by_name(r, "X").as_numpy() for r in requests]
        sizes = np.cumsum([len(a) for a in arrays])[:-1]
        if self.delay:
            time.sleep(self.delay)
        results = np.split(np.concatenate(arrays) + 1, sizes)
        self.executing.set(0)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", y)]) for y in results]
"""

FAILING_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        raise pb_utils.TritonModelException("weights are corrupt: refusing to load")

    def execute(self, requests):
        return []
"""


def _double_onnx(path: Path) -> None:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["X", "two"], ["Y"])], "double", [x], [y], [two]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _io(config: mc.ModelConfig) -> None:
    config.input.append(tensor("X", mc.TYPE_FP32, [4]))
    config.output.append(output("Y", mc.TYPE_FP32, [4]))


def make_tiny_repository(root: Path, *, delay_s: float = 0.0, queue_delay_us: int = 20000) -> Path:
    """``double`` (ONNX, Y = 2X) and ``add_one`` (Python, Y = X + 1), both dynamically batched."""
    double = mc.ModelConfig(name="double", platform="onnxruntime_onnx", max_batch_size=32)
    _io(double)
    double.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    save_config(double, root / "double")
    _double_onnx(root / "double" / "1" / "model.onnx")

    add_one = mc.ModelConfig(name="add_one", backend="python", max_batch_size=32)
    _io(add_one)
    add_one.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    add_one.instance_group.append(
        mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    )
    set_parameter(add_one, "delay_s", str(delay_s))
    save_config(add_one, root / "add_one")
    (root / "add_one" / "1").mkdir(parents=True, exist_ok=True)
    (root / "add_one" / "1" / "model.py").write_text(ADD_ONE_PY)
    return root


def add_failing_model(root: Path) -> None:
    config = mc.ModelConfig(name="broken_init", backend="python", max_batch_size=0)
    _io(config)
    save_config(config, root / "broken_init")
    (root / "broken_init" / "1").mkdir(parents=True, exist_ok=True)
    (root / "broken_init" / "1" / "model.py").write_text(FAILING_PY)
