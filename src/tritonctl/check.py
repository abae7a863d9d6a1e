"""Static checks of a model repository, before a server ever sees it.

Each problem names the file (and line, where the config has one) so it can be fixed directly.
Checked: every config parses and is named after its folder; every version holds its model file;
an ONNX model's inputs and outputs (names, dtypes, dims) match its graph; an ensemble's steps
name existing models, map real tensors and are wired end to end with compatible dtypes;
``preferred_batch_size`` stays within ``max_batch_size``; a Python model's ``model.py`` exists
and defines ``TritonPythonModel``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonctl.model_config import ConfigError, ModelConfig, load_config

#: File each kind of model needs in its version folder when no ``default_model_filename`` is set.
DEFAULT_MODEL_FILES = {
    "onnxruntime_onnx": "model.onnx",
    "onnxruntime": "model.onnx",
    "tensorrt_plan": "model.plan",
    "tensorrt": "model.plan",
    "pytorch_libtorch": "model.pt",
    "python": "model.py",
}


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


def _line_of(path: Path, needle: str) -> int | None:
    try:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if needle in line:
                return number
    except OSError:
        return None
    return None


def _line_of_name(path: Path, name: str, *, after: str | None = None) -> int | None:
    """The line quoting ``name`` (first after a line containing ``after``, when given)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    start = 0
    if after is not None:
        start = next((i for i, line in enumerate(lines) if after in line), 0)
    for number, line in enumerate(lines[start:], start=start + 1):
        if f'"{name}"' in line:
            return number
    return _line_of(path, name)


def check_model(
    model_dir: Path,
    configs: dict[str, ModelConfig] | None = None,
    python_sources: Path | None = None,
) -> list[Problem]:
    """Problems of one model; ``configs`` (every model's config) enables the ensemble checks."""
    config_path = model_dir / "config.pbtxt"
    try:
        config = load_config(config_path)
    except ConfigError as error:
        return [Problem(config_path, str(error).split(": ", 1)[-1], error.line)]
    problems: list[Problem] = []
    if config.name and config.name != model_dir.name:
        problems.append(
            Problem(
                config_path,
                f"name '{config.name}' differs from its folder '{model_dir.name}'",
                _line_of(config_path, "name:"),
            )
        )
    problems += _check_batching(config, config_path)
    if config.platform == "ensemble":
        if configs is not None:
            problems += _check_ensemble(config, config_path, configs)
        return problems
    problems += _check_versions(model_dir, config, config_path)
    if config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime":
        problems += _check_onnx(model_dir, config, config_path)
    if config.backend == "python":
        problems += _check_python(model_dir, config_path, python_sources)
    return problems


def _check_batching(config: ModelConfig, config_path: Path) -> list[Problem]:
    if not config.HasField("dynamic_batching"):
        return []
    return [
        Problem(
            config_path,
            f"preferred_batch_size {size} exceeds max_batch_size {config.max_batch_size}",
            _line_of(config_path, "preferred_batch_size"),
        )
        for size in config.dynamic_batching.preferred_batch_size
        if size > config.max_batch_size
    ]


#: ONNX ``TensorProto`` element type -> Triton ``DataType``.
ONNX_TO_TRITON = {
    1: mc.TYPE_FP32,
    2: mc.TYPE_UINT8,
    3: mc.TYPE_INT8,
    4: mc.TYPE_UINT16,
    5: mc.TYPE_INT16,
    6: mc.TYPE_INT32,
    7: mc.TYPE_INT64,
    8: mc.TYPE_STRING,
    9: mc.TYPE_BOOL,
    10: mc.TYPE_FP16,
    11: mc.TYPE_FP64,
    12: mc.TYPE_UINT32,
    13: mc.TYPE_UINT64,
    16: mc.TYPE_BF16,
}


def _type_name(dtype: int) -> str:
    return str(mc.DataType.Name(dtype)) if dtype in mc.DataType.values() else str(dtype)


def _onnx_signature(
    path: Path,
) -> tuple[dict[str, tuple[int, list[int]]], dict[str, tuple[int, list[int]]]]:
    """``({input: (triton dtype, dims)}, {output: ...})``; a dynamic dim is -1."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}

    def describe(values: object) -> dict[str, tuple[int, list[int]]]:
        found = {}
        for value in values:  # type: ignore[attr-defined]
            tensor_type = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
            found[value.name] = (ONNX_TO_TRITON.get(tensor_type.elem_type, -1), dims)
        return found

    inputs = {k: v for k, v in describe(graph.input).items() if k not in initializers}
    return inputs, describe(graph.output)


def _check_onnx(model_dir: Path, config: ModelConfig, config_path: Path) -> list[Problem]:
    filename = config.default_model_filename or "model.onnx"
    files = sorted(
        (v / filename for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    files = [f for f in files if f.exists()]
    if not files:
        return []  # reported by _check_versions
    try:
        graph_inputs, graph_outputs = _onnx_signature(files[-1])
    except ImportError:
        return []  # the `convert` extra is not installed: nothing to compare against
    except Exception as error:  # noqa: BLE001 - a corrupt file is a finding, not a crash
        return [Problem(files[-1], f"not a readable ONNX model: {error}")]
    problems: list[Problem] = []
    batch = config.max_batch_size > 0
    for kind, declared, graph in (
        ("input", config.input, graph_inputs),
        ("output", config.output, graph_outputs),
    ):
        for tensor in declared:
            line = _line_of_name(config_path, tensor.name)
            if tensor.name not in graph:
                problems.append(
                    Problem(
                        config_path,
                        f"{kind} '{tensor.name}' is not an {kind} of the ONNX graph "
                        f"{files[-1].parent.name}/{filename} (it has {sorted(graph)})",
                        line,
                    )
                )
                continue
            dtype, dims = graph[tensor.name]
            if dtype != tensor.data_type:
                problems.append(
                    Problem(
                        config_path,
                        f"{kind} '{tensor.name}' is {_type_name(tensor.data_type)} in the config "
                        f"but {_type_name(dtype)} in the ONNX graph",
                        line,
                    )
                )
            problems += _compare_dims(
                kind, tensor, dims, batch, config_path, line, has_reshape=tensor.HasField("reshape")
            )
        if kind == "input":
            names = {t.name for t in declared}
            problems += [
                Problem(
                    config_path,
                    f"ONNX graph input '{name}' is missing from the config's inputs",
                    _line_of(config_path, "input"),
                )
                for name in sorted(set(graph) - names)
            ]
    return problems


def _compare_dims(
    kind: str,
    tensor: mc.ModelInput | mc.ModelOutput,
    graph_dims: list[int],
    batch: bool,
    config_path: Path,
    line: int | None,
    *,
    has_reshape: bool,
) -> list[Problem]:
    if has_reshape or not graph_dims:
        return []  # a reshape changes what the graph sees; a rank-less graph tensor says nothing
    expected = ([-1] if batch else []) + list(tensor.dims)
    shown = (
        f"[{', '.join('batch' if batch and i == 0 else str(d) for i, d in enumerate(expected))}]"
    )
    if len(expected) != len(graph_dims):
        hint = " (max_batch_size > 0 adds a batch dimension)" if batch else ""
        return [
            Problem(
                config_path,
                f"{kind} '{tensor.name}' has rank {len(expected)} {shown}{hint} in the config but "
                f"rank {len(graph_dims)} {graph_dims} in the ONNX graph",
                line,
            )
        ]
    mismatched = [
        (i, want, have)
        for i, (want, have) in enumerate(zip(expected, graph_dims, strict=True))
        if want != -1 and have != -1 and want != have
    ]
    if batch and graph_dims[0] != -1:
        mismatched.insert(0, (0, -1, graph_dims[0]))
    return [
        Problem(
            config_path,
            f"{kind} '{tensor.name}' dim {i} is {'batch' if want == -1 else want} in the config but "
            f"{have} in the ONNX graph{' (the batch dim must be dynamic)' if want == -1 else ''}",
            line,
        )
        for i, want, have in mismatched
    ]


def _check_ensemble(
    config: ModelConfig, config_path: Path, configs: dict[str, ModelConfig]
) -> list[Problem]:
    problems: list[Problem] = []
    # ensemble tensor -> dtype, from the ensemble's inputs and each step's outputs as they appear
    available = {t.name: t.data_type for t in config.input}
    consumed: set[str] = set()
    produced: dict[str, int] = {}
    for number, step in enumerate(config.ensemble_scheduling.step, start=1):
        step_line = _line_of_name(config_path, step.model_name)
        model = configs.get(step.model_name)
        if model is None:
            problems.append(
                Problem(
                    config_path,
                    f"step {number} uses model '{step.model_name}', which is not in the repository",
                    step_line,
                )
            )
            continue
        model_inputs = {t.name: t.data_type for t in model.input}
        model_outputs = {t.name: t.data_type for t in model.output}
        for key, tensor in step.input_map.items():
            line = _line_of_name(config_path, key, after=f'"{step.model_name}"')
            consumed.add(tensor)
            if key not in model_inputs:
                problems.append(
                    Problem(
                        config_path,
                        f"step {number} ({step.model_name}): input_map key '{key}' is not an input "
                        f"of '{step.model_name}' (its inputs: {sorted(model_inputs)})",
                        line,
                    )
                )
                continue
            if tensor not in available:
                problems.append(
                    Problem(
                        config_path,
                        f"step {number} ({step.model_name}): '{tensor}' is neither an ensemble "
                        "input nor an output of an earlier step",
                        _line_of_name(config_path, tensor, after=f'"{step.model_name}"'),
                    )
                )
            elif available[tensor] != model_inputs[key]:
                problems.append(
                    Problem(
                        config_path,
                        f"step {number} ({step.model_name}): '{tensor}' is "
                        f"{_type_name(available[tensor])} but input '{key}' of "
                        f"'{step.model_name}' is {_type_name(model_inputs[key])}",
                        line,
                    )
                )
        missing = sorted(set(model_inputs) - set(step.input_map))
        optional = {t.name for t in model.input if t.optional}
        for name in (m for m in missing if m not in optional):
            problems.append(
                Problem(
                    config_path,
                    f"step {number} ({step.model_name}): input '{name}' of '{step.model_name}' "
                    "is not mapped",
                    step_line,
                )
            )
        for key, tensor in step.output_map.items():
            if key not in model_outputs:
                problems.append(
                    Problem(
                        config_path,
                        f"step {number} ({step.model_name}): output_map key '{key}' is not an "
                        f"output of '{step.model_name}' (its outputs: {sorted(model_outputs)})",
                        _line_of_name(config_path, key, after=f'"{step.model_name}"'),
                    )
                )
                continue
            available[tensor] = produced[tensor] = model_outputs[key]
    for tensor in config.output:
        line = _line_of_name(config_path, tensor.name)
        if tensor.name not in produced:
            problems.append(
                Problem(
                    config_path,
                    f"ensemble output '{tensor.name}' is not produced by any step's output_map",
                    line,
                )
            )
        elif produced[tensor.name] != tensor.data_type:
            problems.append(
                Problem(
                    config_path,
                    f"ensemble output '{tensor.name}' is {_type_name(tensor.data_type)} but the "
                    f"step producing it gives {_type_name(produced[tensor.name])}",
                    line,
                )
            )
    for tensor in config.input:
        if tensor.name not in consumed:
            problems.append(
                Problem(
                    config_path,
                    f"ensemble input '{tensor.name}' is not used by any step's input_map",
                    _line_of_name(config_path, tensor.name),
                )
            )
    return problems


def _check_python(model_dir: Path, config_path: Path, sources: Path | None) -> list[Problem]:
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        return []  # reported by _check_versions
    candidates = [v / "model.py" for v in sorted(versions)]
    if sources is not None:
        candidates.append(sources / model_dir.name / "model.py")
    existing = [p for p in candidates if p.exists()]
    if not existing:
        where = " or ".join(str(p) for p in candidates) or str(model_dir / "1" / "model.py")
        return [Problem(model_dir, f"Python model '{model_dir.name}' has no model.py ({where})")]
    problems = []
    for path in existing:
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except SyntaxError as error:
            problems.append(Problem(path, f"does not parse: {error.msg}", error.lineno))
            continue
        if not any(
            isinstance(node, ast.ClassDef) and node.name == "TritonPythonModel"
            for node in tree.body
        ):
            problems.append(Problem(path, "defines no class TritonPythonModel"))
    return problems


def _check_versions(model_dir: Path, config: ModelConfig, config_path: Path) -> list[Problem]:
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        return [Problem(model_dir, "no version folder (e.g. 1/): run `tritonctl build` first")]
    kind = config.platform or config.backend
    filename = config.default_model_filename or DEFAULT_MODEL_FILES.get(kind)
    if not filename or kind == "python":
        return []  # a Python model's code may come from python_backends/: _check_python
    return [
        Problem(version / filename, f"missing model file for {kind} model '{model_dir.name}'")
        for version in sorted(versions)
        if not (version / filename).exists()
    ]


def check_repository(repository: Path, python_sources: Path | None = None) -> list[Problem]:
    """All problems found in ``repository``; an empty list means it is ready to serve.

    ``python_sources`` is where Python models' code may live instead of their version folders
    (default: the project's ``python_backends/``, when the repository is the project's).
    """
    repository = Path(repository)
    if not repository.is_dir():
        return [Problem(repository, "model repository folder does not exist")]
    if python_sources is None:
        python_sources = _default_python_sources(repository)
    model_dirs = sorted(
        p for p in repository.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    configs: dict[str, ModelConfig] = {}
    for model_dir in model_dirs:
        try:
            configs[model_dir.name] = load_config(model_dir / "config.pbtxt")
        except (ConfigError, OSError):
            continue
    problems: list[Problem] = []
    for model_dir in model_dirs:
        if not (model_dir / "config.pbtxt").exists():
            problems.append(Problem(model_dir, "no config.pbtxt"))
            continue
        problems += check_model(model_dir, configs, python_sources)
    if not model_dirs:
        problems.append(Problem(repository, "model repository holds no model"))
    return problems


def _default_python_sources(repository: Path) -> Path | None:
    """``python_backends/`` next to the repository, if there is one."""
    candidate = repository.resolve().parent / "python_backends"
    return candidate if candidate.is_dir() else None
