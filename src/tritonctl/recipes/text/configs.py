"""The text-embedding models' Triton configs, written with the protobuf schema.

Pipeline: ``TEXT`` (BYTES [1] per item) → ``tokenizer`` (Python) → ``input_ids`` /
``attention_mask`` (INT64 [bucket]) → ``text_encoder`` or ``text_encoder_int8`` (ONNX, mean
pooling and L2 normalisation in the graph) → ``embedding`` (FP32 [384]) → ``pooling`` (Python:
finite check and drift gauges) → ``EMBEDDING`` (FP32 [384]).

Encoder layout (``benchmarks/RESULTS.md`` has the measurements): two instances with one intra-op
thread each keep both cores busy under load and let batches form in each instance's queue;
``solo_intra_op_thread_count: 2`` gives a request that finds the other instance idle both cores
(the single-request latency of a 2-thread session), see ``python_backends/onnxruntime``; its
``pack_rows_by_mask`` regroups the rows of bulk requests by their own length bucket. ONNX
Runtime's intra-op threads do not spin (``session.intra_op.allow_spinning: 0``): spinning threads
took the cores the server, the other stubs and the client need (c=16 p95 544 ms against 97 ms
with a 1 × 2 layout). The Python tokenizer and pooling steps take well under a millisecond per
batch: one instance each.

Every batching step carries a queue policy (see SECURITY.md, "Overload"): a request that waited
``QUEUE_TIMEOUT_US`` in a step's queue is rejected with ``UNAVAILABLE`` (retryable: a client
tries another replica) rather than queued on. 5 s is 2.5x the SLO's p99 objective
(``loadtests/slo/text_embedding.yaml``, 2 s; measured p99 190-1400 ms): a request waiting that
long has long missed its SLO, while a 48-text burst (the CI tests') drains well inside it even
on a shared 2-core machine. ``MAX_QUEUE`` (4 full batches) only guards memory. On a dedicated
GPU node, tighten both from ``tritonctl loadtest --find-capacity``.
"""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from tritonctl.model_config import ModelConfig, output, set_parameter, set_queue_policy, tensor
from tritonctl.recipes.text.export import EMBEDDING, HIDDEN_SIZE
from tritonctl.recipes.text.tokens import BUCKETS, MAX_LENGTH

MAX_BATCH = 64
#: longer texts are refused (a 10,000-word document is ~60 KB and is truncated, not refused)
MAX_TEXT_BYTES = 256 * 1024
ONNX_INSTANCES = 2
INTRA_OP_THREADS = 1
SOLO_INTRA_OP_THREADS = 2
#: ONNX Runtime session config entries, passed through by the Python-based backend
SESSION_ENTRIES = {"session.intra_op.allow_spinning": "0"}
# Chosen by `tritonctl tune --model text_embedding --slo benchmarks/slo/text_embedding_interactive.yaml`
# (paired runs on the 2-core CPU; reports/tune/): no queue delay on the encoder. At one request
# in flight the delay was pure waiting (Triton's statistics: encoder queue 2.2 ms at c=1 with
# 2000 us); under load requests queue while both instances are busy, so batches still form.
QUEUE_DELAY_US = 0
TOKENIZER_QUEUE_DELAY_US = 0  # a second tune run on this knob alone (paired, 1.23x)
PREFERRED_BATCHES = [8, 16, 32]
QUEUE_TIMEOUT_US = 5_000_000
MAX_QUEUE = 4 * MAX_BATCH
TOKENIZER, POOLING = "tokenizer", "pooling"
ENCODERS = {"text_embedding": "text_encoder", "text_embedding_int8": "text_encoder_int8"}
TRT_ENCODER = "text_encoder_trt"
TRT_ENSEMBLE = "text_embedding_trt"
#: ONNX Runtime's CUDA MatMulInteger takes int8 x int8 only, and DynamicQuantizeLinear makes
#: uint8 activations: on a GPU the INT8 encoder would fall back to CPU kernels op by op, with
#: copies between. Pinned to the CPU, where its kernels are (GPU nodes serve FP32 or TensorRT).
CPU_ONLY_ENCODERS = ("text_encoder_int8",)


def _batching(config: ModelConfig, delay_us: int = QUEUE_DELAY_US) -> None:
    config.max_batch_size = MAX_BATCH
    config.dynamic_batching.preferred_batch_size.extend(PREFERRED_BATCHES)
    config.dynamic_batching.max_queue_delay_microseconds = delay_us
    set_queue_policy(config, timeout_us=QUEUE_TIMEOUT_US, max_queue_size=MAX_QUEUE)


def _cpu_instances(config: ModelConfig, count: int = 1) -> None:
    config.instance_group.append(
        mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=count)
    )


def tokenizer_config() -> ModelConfig:
    config = ModelConfig(name=TOKENIZER, backend="python")
    # A short delay: the tokenizer is cheap, and joining requests here feeds the encoder's batcher.
    _batching(config, delay_us=TOKENIZER_QUEUE_DELAY_US)
    config.input.append(tensor("TEXT", mc.TYPE_STRING, [1]))
    config.output.append(output("input_ids", mc.TYPE_INT64, [-1]))
    config.output.append(output("attention_mask", mc.TYPE_INT64, [-1]))
    _cpu_instances(config)
    set_parameter(config, "length_buckets", ",".join(str(b) for b in BUCKETS))
    set_parameter(config, "max_length", str(MAX_LENGTH))
    set_parameter(config, "max_text_bytes", str(MAX_TEXT_BYTES))
    return config


def encoder_config(name: str, platform: str = "onnxruntime_onnx") -> ModelConfig:
    """An encoder; ``instance_group.kind`` is left unset so Triton picks the GPU where there is
    one, except for ``CPU_ONLY_ENCODERS`` (``KIND_CPU``) and TensorRT (``KIND_GPU``)."""
    config = ModelConfig(name=name, platform=platform)
    _batching(config)
    config.input.append(tensor("input_ids", mc.TYPE_INT64, [-1]))
    config.input.append(tensor("attention_mask", mc.TYPE_INT64, [-1]))
    config.output.append(output(EMBEDDING, mc.TYPE_FP32, [HIDDEN_SIZE]))
    if platform == "tensorrt_plan":
        config.default_model_filename = "model.plan"
        config.instance_group.append(
            mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=1)
        )
    else:
        kind = mc.ModelInstanceGroup.KIND_CPU if name in CPU_ONLY_ENCODERS else None
        config.instance_group.append(mc.ModelInstanceGroup(kind=kind, count=ONNX_INSTANCES))
        set_parameter(config, "intra_op_thread_count", str(INTRA_OP_THREADS))
        set_parameter(config, "inter_op_thread_count", "1")
        set_parameter(config, "solo_intra_op_thread_count", str(SOLO_INTRA_OP_THREADS))
        for key, value in SESSION_ENTRIES.items():
            set_parameter(config, key, value)
        # Rows of a many-text request are padded to its longest text's bucket; the CPU backend
        # cuts each row back to its own bucket and runs one batch per bucket.
        set_parameter(config, "pack_rows_by_mask", "attention_mask:" + ",".join(map(str, BUCKETS)))
    # Warm up the two most common buckets so first requests do not pay for allocation. Zeros
    # for both inputs: an all-masked sequence costs the same compute and stays finite.
    for length in BUCKETS[:2]:
        warmup = config.model_warmup.add(name=f"batch8_seq{length}", batch_size=8)
        for input_name in ("input_ids", "attention_mask"):
            spec = warmup.inputs[input_name]
            spec.data_type = mc.TYPE_INT64
            spec.dims.append(length)
            spec.zero_data = True
    return config


def pooling_config() -> ModelConfig:
    config = ModelConfig(name=POOLING, backend="python")
    _batching(config, delay_us=0)
    config.input.append(tensor("embedding", mc.TYPE_FP32, [HIDDEN_SIZE]))
    config.output.append(output("EMBEDDING", mc.TYPE_FP32, [HIDDEN_SIZE]))
    _cpu_instances(config)
    return config


def ensemble_config(name: str, encoder: str) -> ModelConfig:
    """``TEXT`` → tokenizer → ``encoder`` → pooling, with the response cache on."""
    config = ModelConfig(name=name, platform="ensemble", max_batch_size=MAX_BATCH)
    config.input.append(tensor("TEXT", mc.TYPE_STRING, [1]))
    config.output.append(output("EMBEDDING", mc.TYPE_FP32, [HIDDEN_SIZE]))
    config.response_cache.enable = True
    steps = config.ensemble_scheduling.step
    tok = steps.add(model_name=TOKENIZER, model_version=-1)
    tok.input_map["TEXT"] = "TEXT"
    tok.output_map["input_ids"] = "_input_ids"
    tok.output_map["attention_mask"] = "_attention_mask"
    enc = steps.add(model_name=encoder, model_version=-1)
    enc.input_map["input_ids"] = "_input_ids"
    enc.input_map["attention_mask"] = "_attention_mask"
    enc.output_map[EMBEDDING] = "_embedding"
    pool = steps.add(model_name=POOLING, model_version=-1)
    pool.input_map["embedding"] = "_embedding"
    pool.output_map["EMBEDDING"] = "EMBEDDING"
    return config


def all_configs(with_tensorrt: bool) -> list[ModelConfig]:
    configs = [tokenizer_config(), pooling_config()]
    configs += [encoder_config(encoder) for encoder in ENCODERS.values()]
    configs += [ensemble_config(name, encoder) for name, encoder in ENCODERS.items()]
    if with_tensorrt:
        configs.append(encoder_config(TRT_ENCODER, platform="tensorrt_plan"))
        configs.append(ensemble_config(TRT_ENSEMBLE, TRT_ENCODER))
    return configs
