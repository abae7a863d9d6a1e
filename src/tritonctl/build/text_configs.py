"""The text-embedding models' Triton configs, written with the protobuf schema.

Pipeline: ``TEXT`` (BYTES [1] per item) → ``tokenizer`` (Python) → ``input_ids`` /
``attention_mask`` (INT64 [bucket]) → ``text_encoder`` or ``text_encoder_int8`` (ONNX) →
``last_hidden_state`` (FP32 [bucket, 384]) → ``pooling`` (Python) → ``EMBEDDING`` (FP32 [384]).

Instances and threads, measured in process on the 2-core development machine (shared with
other jobs, batch 32, bucket-16 sentences): two sessions with one intra-op thread each gave
95-97 sentences/s (FP32) and 190-309 (INT8) against 65-84 and 127-175 for one session with
two threads, hence ``count: 2`` and ``intra_op_thread_count: 1`` on the ONNX models. The
Python tokenizer and pooling steps take well under a millisecond per batch: one instance each.

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

from tritonctl.build.text_export import HIDDEN_SIZE
from tritonctl.build.text_tokens import BUCKETS, MAX_LENGTH
from tritonctl.model_config import ModelConfig, output, set_parameter, set_queue_policy, tensor

MAX_BATCH = 64
#: longer texts are refused (a 10,000-word document is ~60 KB and is truncated, not refused)
MAX_TEXT_BYTES = 256 * 1024
ONNX_INSTANCES = 2
INTRA_OP_THREADS = 1
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
    """An encoder; ``instance_group.kind`` is left unset so Triton picks the GPU where there is one."""
    config = ModelConfig(name=name, platform=platform)
    _batching(config)
    config.input.append(tensor("input_ids", mc.TYPE_INT64, [-1]))
    config.input.append(tensor("attention_mask", mc.TYPE_INT64, [-1]))
    config.output.append(output("last_hidden_state", mc.TYPE_FP32, [-1, HIDDEN_SIZE]))
    if platform == "tensorrt_plan":
        config.default_model_filename = "model.plan"
        config.instance_group.append(
            mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=1)
        )
    else:
        config.instance_group.append(mc.ModelInstanceGroup(count=ONNX_INSTANCES))
        set_parameter(config, "intra_op_thread_count", str(INTRA_OP_THREADS))
        set_parameter(config, "inter_op_thread_count", "1")
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
    config.input.append(tensor("last_hidden_state", mc.TYPE_FP32, [-1, HIDDEN_SIZE]))
    config.input.append(tensor("attention_mask", mc.TYPE_INT64, [-1]))
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
    enc.output_map["last_hidden_state"] = "_hidden"
    pool = steps.add(model_name=POOLING, model_version=-1)
    pool.input_map["last_hidden_state"] = "_hidden"
    pool.input_map["attention_mask"] = "_attention_mask"
    pool.output_map["EMBEDDING"] = "EMBEDDING"
    return config


def all_configs(with_tensorrt: bool) -> list[ModelConfig]:
    configs = [tokenizer_config(), pooling_config()]
    configs += [encoder_config(encoder) for encoder in ENCODERS.values()]
    configs += [ensemble_config(name, encoder) for name, encoder in ENCODERS.items()]
    if with_tensorrt:
        configs.append(encoder_config(TRT_ENCODER, platform="tensorrt_plan"))
    return configs
