"""A Python-based Triton backend named ``onnxruntime`` that runs ONNX models with the onnxruntime package.

It lets an unchanged ``platform: "onnxruntime_onnx"`` model (``config.pbtxt`` + ``1/model.onnx``)
serve on a CPU-only machine from the nvidia-pytriton server, which ships no native ONNX Runtime
backend. In the NGC container the native backend serves the same files.

All requests of one ``execute`` call that share their non-batch shapes run as one batch.
A float input holding NaN or Inf is refused (INVALID_ARG) for that request only; the native
backend passes such values through. Like the native backend, a config whose inputs or outputs
are missing from the graph or declare another data type fails at load, naming each one: the
model never casts.

Session settings are config parameters. Where the native backend has a name, it is used, so a
tuned config means the same in both places: ``intra_op_thread_count``, ``inter_op_thread_count``,
``execution_mode`` (0 sequential, 1 parallel), ``enable_mem_arena``, ``enable_mem_pattern``.
A parameter named after an ONNX Runtime session config key (``session.…``, e.g.
``session.intra_op.allow_spinning: "0"``) is passed to the session as it is: spinning intra-op
threads burn the cores that the server, the other stubs and the client need on a small CPU.

``solo_intra_op_thread_count`` (this backend's own, ignored by the native one): each instance
also opens a session with that many threads and uses it while no other instance of the model
is executing, so a lone request gets every core, and under load each instance keeps to
``intra_op_thread_count`` threads and batches form. Instances mark what they run in a small
shared file (one slot per instance, ``<tmp>/tritonctl_ort_<server pid>_<model>``, removed at
unload, and at the next start if the server was killed first); a race in which two instances
both see the other idle costs a moment of extra threads.
"""

import contextlib
import json
import mmap
import os
import tempfile
from collections import defaultdict

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

#: parameters with the native backend's names: name -> (SessionOptions attribute, type)
_NATIVE_OPTIONS = {
    "intra_op_thread_count": ("intra_op_num_threads", int),
    "inter_op_thread_count": ("inter_op_num_threads", int),
    "enable_mem_arena": ("enable_cpu_mem_arena", lambda v: v.lower() in ("1", "true")),
    "enable_mem_pattern": ("enable_mem_pattern", lambda v: v.lower() in ("1", "true")),
}


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

        threads = int(_param(self.config, "intra_op_thread_count", 1))
        self.session = _session(path, self.config, threads)
        solo = int(_param(self.config, "solo_intra_op_thread_count", 0))
        self.solo = _session(path, self.config, solo) if solo > threads else None
        self.busy = None
        if self.solo is not None:
            instances, slot = _instance_slot(self.config, args["model_instance_name"])
            self.busy = _BusyFlags(self.config["name"], instances, slot)

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
        problems = _mismatches("input", self.config["input"], self.session.get_inputs())
        problems += _mismatches("output", self.config["output"], self.session.get_outputs())
        if problems:
            # The native backend refuses such a config at load too; casting instead would turn
            # 2**31 + 5 sent as INT64 into -2147483643 for an int32 graph, silently.
            raise pb_utils.TritonModelException(
                f"config.pbtxt does not match the ONNX graph {path} (a model file older than "
                "its config? rebuild it): " + "; ".join(problems)
            )
        self.pack = _packing(self.config, self.batching)

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = defaultdict(list)  # non-batch shapes -> [(request index, {name: array})]
        valid = []
        for index, request in enumerate(requests):
            try:
                arrays = self._inputs(request)
            except ValueError as error:
                responses[index] = _error(str(error))
                continue
            valid.append((index, arrays))
        if self.pack is not None:
            return self._execute_packed(valid, responses)
        for index, arrays in valid:
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

    def _execute_packed(self, valid, responses):
        """Every row of every request, regrouped by the bucket of its own length (trailing
        padding cut off), one run per bucket; rows go back to their requests afterwards."""
        mask_name, buckets = self.pack
        rows = defaultdict(list)  # width -> [(request index, row)]
        outputs = {}
        packable = []
        for index, arrays in valid:
            shapes = {name: array.shape for name, array in arrays.items()}
            if len(set(shapes.values())) > 1:
                responses[index] = _error(f"inputs must have one shape, got {shapes}")
            else:
                packable.append((index, arrays))
        valid = packable
        for index, arrays in valid:
            mask = arrays[mask_name]
            width = mask.shape[1]
            # length = position of the last unmasked token + 1: never cuts a real token
            length = np.where(mask.any(axis=1), width - np.argmax(mask[:, ::-1] != 0, axis=1), 0)
            at = np.searchsorted(buckets, length)
            fits = np.where(at < len(buckets), buckets[np.minimum(at, len(buckets) - 1)], width)
            for row, cut in enumerate(np.minimum(fits, width)):
                rows[int(cut)].append((index, row))
            outputs[index] = {}
        arrays_of = dict(valid)
        failed = set()
        for width, members in rows.items():
            feed = {
                name: np.stack([arrays_of[i][name][r, :width] for i, r in members])
                for name in self.inputs
            }
            try:
                result = self._run(feed)
            except Exception:  # noqa: BLE001 - retried request by request below
                failed.update(i for i, _ in members)
                continue
            for position, (index, row) in enumerate(members):
                for name, value in result.items():
                    outputs[index].setdefault(name, {})[row] = value[position]
        for index, arrays in valid:
            if index in failed:
                try:
                    responses[index] = self._respond(self._run(arrays))
                except Exception as error:  # noqa: BLE001 - this request's own failure
                    responses[index] = _error(f"ONNX Runtime failed: {error}")
                continue
            count = arrays[mask_name].shape[0]
            responses[index] = self._respond(
                {
                    name: np.stack([by_row[r] for r in range(count)])
                    for name, by_row in outputs[index].items()
                }
            )
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
            arrays[name] = array  # its dtype is the graph's: Triton checked it against the config
        return arrays

    def _run(self, feed):
        session = self.session
        if self.busy is not None:
            session = self.solo if self.busy.start() else self.session
        try:
            values = session.run(self.outputs, feed)
        finally:
            if self.busy is not None:
                self.busy.done()
        return dict(zip(self.outputs, values, strict=True))

    def _respond(self, outputs):
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=self.output_dtypes[name]))
            for name, value in outputs.items()
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self):
        self.session = self.solo = None
        if self.busy is not None:
            self.busy.close()
            self.busy = None


def _packing(config, batching):
    """``pack_rows_by_mask: "<mask input>:<bucket>,<bucket>,..."`` → (mask input, buckets), or None.

    Only for a model whose inputs are ``[batch, sequence]`` and whose outputs have no
    sequence axis (a pooled embedding): cutting a row's trailing padding then changes nothing
    but the work. The native backend ignores the parameter and runs the rows as they come.
    """
    value = _param(config, "pack_rows_by_mask")
    if value is None:
        return None
    mask, _, sizes = value.partition(":")
    names = [i["name"] for i in config["input"]]
    problems = []
    if not batching:
        problems.append("the model does not batch (max_batch_size 0)")
    if mask not in names:
        problems.append(f"'{mask}' is not an input ({names})")
    if any(list(i.get("dims", [])) != [-1] for i in config["input"]):
        problems.append("every input must have dims [-1] (a sequence axis)")
    if any(-1 in list(o.get("dims", [])) for o in config["output"]):
        problems.append("an output has a sequence axis")
    try:
        buckets = np.array(sorted(int(b) for b in sizes.split(",") if b.strip()))
    except ValueError:
        buckets = np.array([])
    if not len(buckets) or buckets[0] < 1:
        problems.append(f"no bucket sizes in {sizes!r}")
    if problems:
        raise pb_utils.TritonModelException(f"pack_rows_by_mask={value!r}: " + "; ".join(problems))
    return mask, buckets


def _session(path, config, intra_op_threads):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    for key, (attribute, convert) in _NATIVE_OPTIONS.items():
        value = _param(config, key)
        if value is not None:
            setattr(options, attribute, convert(value))
    options.intra_op_num_threads = intra_op_threads
    mode = _param(config, "execution_mode", "0")
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if mode == "1" else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    for key, value in config.get("parameters", {}).items():
        if key.startswith("session."):
            options.add_session_config_entry(key, value.get("string_value", ""))
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _instance_slot(config, instance_name):
    """(instances, this one's index): instance names are ``<group name>_<index in group>``."""
    names = [
        f"{group.get('name') or config['name']}_{i}"
        for group in config.get("instance_group", [])
        for i in range(int(group.get("count", 1)))
    ]
    if instance_name in names:
        return len(names), names.index(instance_name)
    return max(len(names), 1) + 1, max(len(names), 1)  # unknown naming: a slot of its own


def _remove_stale(prefix):
    """Files of servers that are gone: a server killed before unloading never ran finalize."""
    folder = tempfile.gettempdir()
    for name in os.listdir(folder):
        pid = name[len(prefix) :].split("_", 1)[0] if name.startswith(prefix) else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


class _BusyFlags:
    """One byte per instance of a model, shared by its stubs: 1 while that instance executes."""

    PREFIX = "tritonctl_ort_"

    def __init__(self, model, instances, slot):
        _remove_stale(self.PREFIX)
        self.path = os.path.join(tempfile.gettempdir(), f"{self.PREFIX}{os.getppid()}_{model}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < instances:
                os.ftruncate(fd, instances)
            self.map = mmap.mmap(fd, instances)
        finally:
            os.close(fd)
        self.flags = np.frombuffer(self.map, dtype=np.uint8, count=instances)
        self.slot = slot

    def start(self):
        """Mark this instance busy; True when no other instance is."""
        self.flags[self.slot] = 1
        return int(self.flags.sum()) == 1

    def done(self):
        self.flags[self.slot] = 0

    def close(self):
        self.done()
        del self.flags
        self.map.close()
        with contextlib.suppress(FileNotFoundError):  # another instance was first
            os.unlink(self.path)


def _error(message):
    return pb_utils.InferenceResponse(
        output_tensors=[], error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    )


def _mismatches(kind, configured, graph):
    """Each config tensor the graph lacks, or declares with another element type."""
    types = {t.name: t.type for t in graph}
    problems = []
    for tensor in configured:
        name, data_type = tensor["name"], tensor["data_type"]
        if name not in types:
            problems.append(f"{kind} '{name}' is not an {kind} of the graph {sorted(types)}")
        elif _TRITON_TO_ORT.get(data_type) != types[name]:
            problems.append(
                f"{kind} '{name}' is {data_type} in the config but {types[name]} in the graph"
            )
    return problems


_TRITON_TO_ORT = {
    "TYPE_BOOL": "tensor(bool)",
    "TYPE_UINT8": "tensor(uint8)",
    "TYPE_UINT16": "tensor(uint16)",
    "TYPE_UINT32": "tensor(uint32)",
    "TYPE_UINT64": "tensor(uint64)",
    "TYPE_INT8": "tensor(int8)",
    "TYPE_INT16": "tensor(int16)",
    "TYPE_INT32": "tensor(int32)",
    "TYPE_INT64": "tensor(int64)",
    "TYPE_FP16": "tensor(float16)",
    "TYPE_FP32": "tensor(float)",
    "TYPE_FP64": "tensor(double)",
    "TYPE_STRING": "tensor(string)",
    "TYPE_BF16": "tensor(bfloat16)",
}
