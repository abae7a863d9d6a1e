"""A Python-based Triton backend named ``onnxruntime`` that runs ONNX models with the onnxruntime package.

It lets an unchanged ``platform: "onnxruntime_onnx"`` model (``config.pbtxt`` + ``1/model.onnx``)
serve on a CPU-only machine from the nvidia-pytriton server, which ships no native ONNX Runtime
backend. In the NGC container the native backend serves the same files.

All requests of one ``execute`` call that share their non-batch shapes run as one batch.
A float input holding NaN or Inf is refused (INVALID_ARG) for that request only; the native
backend passes such values through. Thread settings use the native backend's parameter names (``intra_op_thread_count``,
``inter_op_thread_count``), so a tuned config means the same in both places.
"""

import json
import os
from collections import defaultdict

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _param(config, key, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return value if value not in (None, "") else default


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        filename = self.config.get("default_model_filename") or "model.onnx"
        path = os.path.join(version_dir, filename)
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(f"ONNX file not found: {path}")

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_param(self.config, "intra_op_thread_count", 1))
        options.inter_op_num_threads = int(_param(self.config, "inter_op_thread_count", 1))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        self.batching = int(self.config.get("max_batch_size", 0)) > 0
        # NaN/Inf in a float input is bad input (it poisons every output it touches): refuse it
        # per request unless the config sets `allow_non_finite: "true"`.
        self.reject_non_finite = _param(self.config, "allow_non_finite", "false") != "true"
        self.inputs = [i["name"] for i in self.config["input"]]
        self.outputs = [o["name"] for o in self.config["output"]]
        self.output_dtypes = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"])
            for o in self.config["output"]
        }
        onnx_types = {i.name: i.type for i in self.session.get_inputs()}
        self.input_dtypes = {name: _ORT_TO_NUMPY.get(onnx_types.get(name)) for name in self.inputs}
        missing = [name for name in self.inputs if name not in onnx_types]
        if missing:
            raise pb_utils.TritonModelException(
                f"config inputs {missing} are not inputs of the ONNX graph {sorted(onnx_types)}"
            )

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = defaultdict(list)  # non-batch shapes -> [(request index, {name: array})]
        for index, request in enumerate(requests):
            try:
                arrays = self._inputs(request)
            except ValueError as error:
                responses[index] = _error(str(error))
                continue
            key = tuple(
                arrays[n].shape[1:] if self.batching else arrays[n].shape for n in self.inputs
            )
            groups[key].append((index, arrays))

        for members in groups.values():
            if self.batching and len(members) > 1:
                feed = {n: np.concatenate([a[n] for _, a in members]) for n in self.inputs}
            else:
                feed = None
            try:
                if feed is None:
                    for index, arrays in members:
                        responses[index] = self._respond(self._run(arrays))
                    continue
                outputs = self._run(feed)
            except Exception as error:  # noqa: BLE001 - isolate the request that broke the batch
                if len(members) == 1:
                    responses[members[0][0]] = _error(f"ONNX Runtime failed: {error}")
                    continue
                for index, arrays in members:
                    try:
                        responses[index] = self._respond(self._run(arrays))
                    except Exception as single:  # noqa: BLE001
                        responses[index] = _error(f"ONNX Runtime failed: {single}")
                continue
            offsets = np.cumsum([a[self.inputs[0]].shape[0] for _, a in members])[:-1]
            splits = {name: np.split(value, offsets) for name, value in outputs.items()}
            for position, (index, _) in enumerate(members):
                responses[index] = self._respond({n: s[position] for n, s in splits.items()})
        return responses

    def _inputs(self, request):
        arrays = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input '{name}'")
            array = tensor.as_numpy()
            if self.reject_non_finite and array.dtype.kind == "f" and not np.isfinite(array).all():
                raise ValueError(f"input '{name}' holds NaN or Inf values")
            expected = self.input_dtypes.get(name)
            if expected is not None and array.dtype != expected:
                array = array.astype(expected)
            arrays[name] = array
        return arrays

    def _run(self, feed):
        values = self.session.run(self.outputs, feed)
        return dict(zip(self.outputs, values, strict=True))

    def _respond(self, outputs):
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=self.output_dtypes[name]))
            for name, value in outputs.items()
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self):
        self.session = None


def _error(message):
    return pb_utils.InferenceResponse(
        output_tensors=[], error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    )


_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
