"""Recipe ``adaptive``: the BLS models that route each request to an accurate or a fast pipeline.

- ``text_embedding_adaptive``: ``text_embedding`` (FP32) or ``text_embedding_int8``;
- ``digit_classifier_adaptive``: ``digit_classifier_teacher`` or ``digit_classifier_student``.

Both run ``python_backends/text_embedding_adaptive/model.py`` (the digits folder holds a
symlink to it); this recipe writes their ``config.pbtxt`` with the protobuf schema, taking the
inputs, outputs and batch size from the accurate pipeline's own config. It needs the
``text-embedding`` and ``digits`` recipes built first; a pipeline that is missing is skipped
and named in the report. Writing two small configs is quick, so there is no stamp: a file is
only rewritten when its content changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from tritonctl import paths
from tritonctl.model_config import ModelConfig, config_text, load_config, output, set_parameter

#: adaptive model -> (accurate pipeline, fast pipeline)
ROUTES = {
    "text_embedding_adaptive": ("text_embedding", "text_embedding_int8"),
    "digit_classifier_adaptive": ("digit_classifier_teacher", "digit_classifier_student"),
}
#: items queued for the adaptive model at which low-priority requests go to the fast route
PRESSURE_THRESHOLD = 8
#: router instances per model: an ``execute`` waits for its BLS calls, so with one instance the
#: router is a serial stage; text needs more of them in flight than the digits' short pipeline
INSTANCES = {"text_embedding_adaptive": 8, "digit_classifier_adaptive": 4}
QUEUE_DELAY_US = 500


def adaptive_config(name: str, accurate: ModelConfig, fast_model: str) -> ModelConfig:
    """The BLS model's config: ``accurate``'s interface plus the ``ROUTE`` output."""
    config = ModelConfig(name=name, backend="python", max_batch_size=accurate.max_batch_size)
    config.input.extend(accurate.input)
    config.output.extend(accurate.output)
    config.output.append(output("ROUTE", mc.TYPE_STRING, [1]))
    # The batcher hands execute() everything that queued up: that count is the queue pressure.
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    config.instance_group.append(
        mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=INSTANCES.get(name, 4))
    )
    set_parameter(config, "accurate_model", accurate.name)
    set_parameter(config, "fast_model", fast_model)
    set_parameter(config, "pressure_threshold", str(PRESSURE_THRESHOLD))
    return config


def _write(config: ModelConfig, folder: Path) -> bool:
    path = folder / "config.pbtxt"
    text = config_text(config)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def build(repository: Path, *, force: bool = False) -> dict[str, Any]:
    report: dict[str, Any] = {"recipe": "adaptive", "models": {}, "skipped": {}}
    for name, (accurate, fast) in ROUTES.items():
        missing = [m for m in (accurate, fast) if not (repository / m / "config.pbtxt").exists()]
        if missing:
            report["skipped"][name] = f"missing pipeline(s): {', '.join(missing)}"
            continue
        config = adaptive_config(name, load_config(repository / accurate), fast)
        written = _write(config, repository / name) or force
        report["models"][name] = {"accurate": accurate, "fast": fast, "written": written}
    out = paths.reports_dir() / "adaptive"
    out.mkdir(parents=True, exist_ok=True)
    (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
