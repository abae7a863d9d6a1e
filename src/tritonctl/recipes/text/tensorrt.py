"""TensorRT FP16 engine for the text encoder, where TensorRT and a CUDA GPU are present.

The engine is built from the plain exported ONNX graph (ONNX Runtime's fused contrib ops are
not TensorRT ops) with one optimization profile covering batch 1..64 and sequence 1..256, and
verified against the PyTorch reference on the evaluation corpus like the ONNX variants. A plan
is tied to the TensorRT version and GPU it was built on: build it on (or for) the serving image.

On a machine without TensorRT or CUDA, ``unavailable_reason()`` says why, and the recipe skips
this variant and records that reason in its report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tritonctl.recipes.text.export import INPUTS, OUTPUT
from tritonctl.recipes.text.tokens import Batch, mean_pool

MIN_SHAPE, OPT_SHAPE, MAX_SHAPE = (1, 1), (32, 64), (64, 256)
WORKSPACE_BYTES = 2 << 30


def unavailable_reason() -> str | None:
    """``None`` if an engine can be built here, else why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as error:
        return f"the tensorrt package is not installed ({error.msg}); pip install '.[tensorrt]'"
    try:
        import torch
    except ImportError:
        return "torch (used for CUDA buffers) is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is available"
    return None


def build_engine(onnx_path: Path, plan_path: Path) -> Path:
    """Parse ``onnx_path`` and write a serialized FP16 engine to ``plan_path``."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name in INPUTS:
        profile.set_shape(name, MIN_SHAPE, OPT_SHAPE, MAX_SHAPE)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    return plan_path


class EngineRunner:
    """Runs a plan on the GPU with torch CUDA tensors as I/O buffers."""

    def __init__(self, plan_path: Path) -> None:
        import tensorrt as trt
        import torch

        self.torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(plan_path.read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def run(self, batch: Batch) -> np.ndarray:
        torch = self.torch
        feeds = {name: torch.from_numpy(batch.feed[name]).cuda() for name in INPUTS}
        for name, tensor in feeds.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        shape = tuple(self.context.get_tensor_shape(OUTPUT))
        out = torch.empty(shape, dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(OUTPUT, out.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        self.stream.synchronize()
        return np.asarray(out.cpu().numpy())


def evaluate(
    plan_path: Path, batches: Sequence[Batch], count: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Embeddings of the corpus and speed figures (batch-1 latency, batch-32 throughput)."""
    runner = EngineRunner(plan_path)
    out = np.zeros((count, 384), dtype=np.float32)
    for batch in batches:
        out[batch.indices] = mean_pool(runner.run(batch), batch.attention_mask)
    full = [b for b in batches if len(b.indices) == 32] or list(batches)
    runner.run(full[0])
    start, items = time.perf_counter(), 0
    for batch in full * 5:
        runner.run(batch)
        items += len(batch.indices)
    throughput = items / (time.perf_counter() - start)
    single = Batch([0], batches[0].input_ids[:1], batches[0].attention_mask[:1])
    times = []
    for _ in range(50):
        start = time.perf_counter()
        runner.run(single)
        times.append(time.perf_counter() - start)
    speed = {"latency_ms_b1": float(np.median(times) * 1000), "throughput_b32_wall": throughput}
    return out, speed
