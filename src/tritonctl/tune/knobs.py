"""The tuner's knobs and how each one edits a ``ModelConfig`` (protobuf, never text).

Knob names are ``<model>.<setting>``; settings:

* ``max_queue_delay_us``: ``dynamic_batching.max_queue_delay_microseconds``;
* ``preferred_batch_size``: ``dynamic_batching.preferred_batch_size`` (0 clears it);
* ``max_batch_size``: the model's ``max_batch_size``;
* ``instances``: ``instance_group[0].count``;
* ``intra_op_threads``: the ``intra_op_thread_count`` parameter (ONNX Runtime models);
* ``solo_threads``: ``solo_intra_op_thread_count`` (0 clears it): the threads a lone request
  gets when no other instance is busy (the Python-based ``onnxruntime`` backend);
* ``spinning``: ONNX Runtime's ``session.intra_op.allow_spinning`` (``"0"`` or ``"1"``);
* ``length_buckets``: the tokenizer's padding buckets (a comma-separated string).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tritonctl.model_config import ModelConfig, set_parameter
from tritonctl.tune.search import Candidate, Knob

SETTINGS = (
    "max_queue_delay_us",
    "preferred_batch_size",
    "max_batch_size",
    "instances",
    "intra_op_threads",
    "solo_threads",
    "spinning",
    "length_buckets",
)

#: setting -> the config parameter it reads and writes (string values)
PARAMETERS = {
    "solo_threads": "solo_intra_op_thread_count",
    "spinning": "session.intra_op.allow_spinning",
    "length_buckets": "length_buckets",
}
#: the tokenizer's bucket sets the search tries: today's, and multiples of 8 up to 64
BUCKET_SETS = ("16,32,64,128,256", "8,16,24,32,40,48,56,64,128,256")


def is_onnx(config: ModelConfig) -> bool:
    return config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime"


def is_python(config: ModelConfig) -> bool:
    return config.backend == "python"


def read(config: ModelConfig, setting: str) -> Any:
    """A setting's current value in ``config`` (what the search starts from)."""
    if setting == "max_queue_delay_us":
        return int(config.dynamic_batching.max_queue_delay_microseconds)
    if setting == "preferred_batch_size":
        sizes = list(config.dynamic_batching.preferred_batch_size)
        return int(sizes[0]) if sizes else 0
    if setting == "max_batch_size":
        return int(config.max_batch_size)
    if setting == "instances":
        return int(config.instance_group[0].count or 1) if config.instance_group else 1
    if setting == "intra_op_threads":
        value = (
            config.parameters["intra_op_thread_count"].string_value
            if ("intra_op_thread_count" in config.parameters)
            else ""
        )
        return int(value) if value.strip() else 0
    if setting in PARAMETERS:
        key = PARAMETERS[setting]
        value = config.parameters[key].string_value if key in config.parameters else ""
        if setting == "solo_threads":
            return int(value) if value.strip() else 0
        return value or ("1" if setting == "spinning" else "")
    raise KeyError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")


def write(config: ModelConfig, setting: str, value: Any) -> None:
    """Set one setting in ``config``."""
    if setting == "max_queue_delay_us":
        config.dynamic_batching.max_queue_delay_microseconds = int(value)
    elif setting == "preferred_batch_size":
        del config.dynamic_batching.preferred_batch_size[:]
        if int(value) > 0:
            config.dynamic_batching.preferred_batch_size.append(int(value))
    elif setting == "max_batch_size":
        config.max_batch_size = int(value)
    elif setting == "instances":
        if not config.instance_group:
            group = config.instance_group.add()
            if is_python(config):
                group.kind = group.KIND_CPU
        config.instance_group[0].count = int(value)
    elif setting == "intra_op_threads":
        if int(value) > 0:
            set_parameter(config, "intra_op_thread_count", str(int(value)))
        elif "intra_op_thread_count" in config.parameters:
            del config.parameters["intra_op_thread_count"]
    elif setting in PARAMETERS:
        key = PARAMETERS[setting]
        if setting == "solo_threads" and int(value) <= 0:
            if key in config.parameters:
                del config.parameters[key]
        else:
            set_parameter(config, key, str(value))
    else:
        raise KeyError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")


def split(name: str) -> tuple[str, str]:
    model, _, setting = name.rpartition(".")
    if not model or setting not in SETTINGS:
        raise KeyError(f"knob {name!r} is not <model>.<{'|'.join(SETTINGS)}>")
    return model, setting


def apply(
    configs: Mapping[str, ModelConfig], candidate: Candidate, base: Candidate | None = None
) -> dict[str, ModelConfig]:
    """Copies of ``configs`` with the candidate's knob values written in.

    With ``base`` (the values read from ``configs``), only knobs whose value differs are
    written: a setting the knob reads only in part (a list of preferred batch sizes, of which
    the knob sees the first) is kept exactly as it was unless the search changed it.
    """
    out: dict[str, ModelConfig] = {}
    for name, config in configs.items():
        copy = ModelConfig()
        copy.CopyFrom(config)
        out[name] = copy
    for knob, value in candidate.items():
        if base is not None and base.get(knob) == value:
            continue
        model, setting = split(knob)
        write(out[model], setting, value)
    # A preferred batch size above the max batch size is invalid: clamp it.
    for config in out.values():
        sizes = list(config.dynamic_batching.preferred_batch_size)
        if sizes and config.max_batch_size and sizes[0] > config.max_batch_size:
            write(config, "preferred_batch_size", 0)
    return out


def current(configs: Mapping[str, ModelConfig], knobs: list[Knob]) -> Candidate:
    """The starting candidate: each knob's value in the configs as they are."""
    candidate: Candidate = {}
    for knob in knobs:
        model, setting = split(knob.name)
        candidate[knob.name] = read(configs[model], setting)
    return candidate


def default_knobs(configs: Mapping[str, ModelConfig], ensemble_batch: int = 0) -> list[Knob]:
    """The search space for the composing models of one pipeline, ONNX models first.

    Batch limits never go below ``ensemble_batch``: an ensemble's ``max_batch_size`` may not
    exceed its steps'.
    """
    knobs: list[Knob] = []
    onnx = [n for n, c in configs.items() if is_onnx(c)]
    python = [n for n, c in configs.items() if is_python(c)]
    for name in onnx:
        config = configs[name]
        if config.max_batch_size > 0 and config.HasField("dynamic_batching"):
            knobs.append(Knob(f"{name}.max_queue_delay_us", (0, 1000, 2000, 5000), "queue delay"))
            knobs.append(Knob(f"{name}.preferred_batch_size", (0, 8, 16, 32), "preferred"))
            sizes = tuple(s for s in (16, 32, 64) if s >= ensemble_batch)
            knobs.append(Knob(f"{name}.max_batch_size", sizes or (ensemble_batch,), "max batch"))
        knobs.append(Knob(f"{name}.instances", (1, 2), "ONNX instances"))
        knobs.append(Knob(f"{name}.intra_op_threads", (1, 2), "ORT intra-op threads"))
        knobs.append(Knob(f"{name}.solo_threads", (0, 2), "threads for a lone request"))
        knobs.append(Knob(f"{name}.spinning", ("0", "1"), "ORT spinning threads"))
    for name in python:
        if configs[name].max_batch_size > 0 and configs[name].HasField("dynamic_batching"):
            knobs.append(Knob(f"{name}.max_queue_delay_us", (0, 500, 2000), "queue delay"))
        knobs.append(Knob(f"{name}.instances", (1, 2), "Python instances"))
        if "length_buckets" in configs[name].parameters:
            knobs.append(Knob(f"{name}.length_buckets", BUCKET_SETS, "padding buckets"))
    return knobs
