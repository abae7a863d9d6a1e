"""The digits models' Triton configs, written with the protobuf schema (never string templates).

Pipeline: ``IMAGE`` (encoded bytes) → ``image_preprocess`` → ``PIXELS`` [1, 8, 8] on the 0–16
scale → ``digits_<variant>`` (ONNX, ``INPUT`` → ``LOGITS`` [10]) → ``classify_postprocess`` →
top-k ``LABELS`` (BYTES, e.g. ``b"7"``) and ``SCORES`` (FP32 softmax probabilities).

Every batching step carries a queue policy (see SECURITY.md, "Overload"): a request that found
``MAX_QUEUE`` requests (4 full batches) ahead of it, or waited ``QUEUE_TIMEOUT_US`` in a step's
queue, is rejected with ``UNAVAILABLE`` (retryable) rather than queued on. At the measured
capacity (~450 requests/s, ``loadtests/slo/digit_classifier.yaml``) the cap alone bounds the
wait to about 0.6 s. The timeout is a backstop: 500 ms (4x the SLO's p99 objective of 120 ms)
was tried and rejected valid requests of the CI tests when neighbours stalled the stubs on the
shared 2-core machine, hence 2 s.
"""

from __future__ import annotations

from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonctl.model_config import (
    ModelConfig,
    output,
    save_config,
    set_parameter,
    set_queue_policy,
    tensor,
)

MAX_BATCH = 64
TOP_K = 3
QUEUE_DELAY_US = 200
QUEUE_TIMEOUT_US = 2_000_000
MAX_QUEUE = 4 * MAX_BATCH
#: image_preprocess refuses, from the headers, an image that decodes to more pixels (a JPEG
#: counts at its reduced scale) or a request whose images decode to more bytes: one request's
#: cost stays bounded (python_backends/image_preprocess/model.py).
MAX_IMAGE_PIXELS = 1024 * 1024
MAX_REQUEST_DECODED_BYTES = 16 * 1024 * 1024
PREPROCESS, POSTPROCESS = "image_preprocess", "classify_postprocess"
VARIANTS = ["teacher", "student", "pruned", "pruned_channels", "int8"]


def model_name(variant: str) -> str:
    return f"digits_{variant}"


def ensemble_name(variant: str | None) -> str:
    return "digit_classifier" if variant is None else f"digit_classifier_{variant}"


def _batching(config: ModelConfig, preferred: list[int]) -> None:
    config.max_batch_size = MAX_BATCH
    config.dynamic_batching.preferred_batch_size.extend(preferred)
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    set_queue_policy(config, timeout_us=QUEUE_TIMEOUT_US, max_queue_size=MAX_QUEUE)


def onnx_config(name: str) -> ModelConfig:
    """ONNX model; ``instance_group.kind`` left unset so Triton picks GPU where there is one."""
    config = ModelConfig(name=name, platform="onnxruntime_onnx")
    _batching(config, [16, 64])
    config.input.append(tensor("INPUT", mc.TYPE_FP32, [1, 8, 8]))
    config.output.append(output("LOGITS", mc.TYPE_FP32, [10]))
    return config


def preprocess_config() -> ModelConfig:
    config = ModelConfig(name=PREPROCESS, backend="python")
    _batching(config, [16, 64])
    config.input.append(tensor("IMAGE", mc.TYPE_STRING, [1]))
    config.output.append(output("PIXELS", mc.TYPE_FP32, [1, 8, 8]))
    config.instance_group.append(
        mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    )
    set_parameter(config, "max_image_pixels", str(MAX_IMAGE_PIXELS))
    set_parameter(config, "max_request_decoded_bytes", str(MAX_REQUEST_DECODED_BYTES))
    return config


def postprocess_config() -> ModelConfig:
    config = ModelConfig(name=POSTPROCESS, backend="python")
    _batching(config, [16, 64])
    config.input.append(tensor("LOGITS", mc.TYPE_FP32, [10]))
    config.output.append(output("LABELS", mc.TYPE_STRING, [TOP_K]))
    config.output.append(output("SCORES", mc.TYPE_FP32, [TOP_K]))
    config.instance_group.append(
        mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    )
    set_parameter(config, "top_k", str(TOP_K))
    return config


def ensemble_config(name: str, classifier: str) -> ModelConfig:
    """``IMAGE`` → preprocess → ``classifier`` → postprocess, with the response cache on."""
    config = ModelConfig(name=name, platform="ensemble", max_batch_size=MAX_BATCH)
    config.input.append(tensor("IMAGE", mc.TYPE_STRING, [1]))
    config.output.append(output("LABELS", mc.TYPE_STRING, [TOP_K]))
    config.output.append(output("SCORES", mc.TYPE_FP32, [TOP_K]))
    steps = config.ensemble_scheduling.step
    steps.add(
        model_name=PREPROCESS,
        model_version=-1,
        input_map={"IMAGE": "IMAGE"},
        output_map={"PIXELS": "pixels"},
    )
    steps.add(
        model_name=classifier,
        model_version=-1,
        input_map={"INPUT": "pixels"},
        output_map={"LOGITS": "logits"},
    )
    steps.add(
        model_name=POSTPROCESS,
        model_version=-1,
        input_map={"LOGITS": "logits"},
        output_map={"LABELS": "LABELS", "SCORES": "SCORES"},
    )
    config.response_cache.enable = True
    return config


def write_configs(repository: Path, default_variant: str) -> list[Path]:
    """Every digits config; ``digit_classifier`` points at ``default_variant``."""
    written = [
        save_config(preprocess_config(), repository / PREPROCESS),
        save_config(postprocess_config(), repository / POSTPROCESS),
    ]
    for folder in (PREPROCESS, POSTPROCESS):
        (repository / folder / "1").mkdir(parents=True, exist_ok=True)
    for variant in VARIANTS:
        written.append(
            save_config(onnx_config(model_name(variant)), repository / model_name(variant))
        )
        name = ensemble_name(variant)
        written.append(save_config(ensemble_config(name, model_name(variant)), repository / name))
        # Triton wants a version folder for ensembles too; an empty one is enough.
        (repository / name / "1").mkdir(parents=True, exist_ok=True)
    name = ensemble_name(None)
    written.append(
        save_config(ensemble_config(name, model_name(default_variant)), repository / name)
    )
    (repository / name / "1").mkdir(parents=True, exist_ok=True)
    return written
