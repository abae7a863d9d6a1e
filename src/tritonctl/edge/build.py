"""The edge build's steps: convert, assemble, check, time, report (see ``tritonctl.recipes.edge``)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from tritonctl import paths
from tritonctl.console import console, progress
from tritonctl.edge import SPECS, Spec, evaluate, litert, measure, onnx_runtime
from tritonctl.edge import bundle as assemble
from tritonctl.recipes.common import BuildError

SAMPLES = 8


def _gzip_size(path: Path) -> int:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing, like `gzip -6`
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            size += len(compressor.compress(block))
    return size + len(compressor.flush())


def _convert(spec: Spec, folder: Path, repository: Path, context: dict[str, Any]) -> dict[str, Any]:
    """The model file(s) of one bundle; returns the manifest's model part."""
    if spec.runtime == "onnxruntime":
        source = repository / spec.source / "1" / "model.onnx"
        result = onnx_runtime.build_bundle_model(source, folder, text=spec.task == "embed")
        if spec.task == "embed":  # an encoder that pools in its graph also returns [N, dim]
            pooled = [o["name"] for o in result["model"]["outputs"] if len(o["shape"]) == 2]
            result["pooling_in_graph"] = bool(pooled)
            result["model"]["output"] = (
                pooled[0] if pooled else result["model"]["outputs"][0]["name"]
            )
        return result
    target = folder / "model.tflite"
    if spec.task == "embed":
        from tritonctl.recipes.text.export import weights_dir

        litert.convert_text(litert.text_module(weights_dir()), target)
        model: dict[str, Any] = {"fixed_lengths": list(litert.TEXT_LENGTHS)}
        extra = {"pooling_in_graph": True}
    else:
        float_model = context["litert_float"].get(spec.model)
        if float_model is None:  # float first: the INT8 recipes quantize the float file
            float_model = folder.parent / f".{spec.model}-float.tflite"
            module = litert.digits_module(repository / spec.source / "1" / "model.onnx")
            litert.convert_digits(module, float_model)
            context["litert_float"][spec.model] = float_model
        if spec.precision == "fp32":
            shutil.copyfile(float_model, target)
        else:
            litert.quantize(float_model, target, spec.precision, context["calibration"])
        model, extra = {}, {}
    inputs, outputs, signatures = litert.io_spec(target)
    model.update(
        {"file": "model.tflite", "format": "TFLite flatbuffer", "inputs": inputs, "outputs": outputs,
         "signatures": signatures}
    )  # fmt: skip
    if spec.precision != "fp32":
        model["quantization_recipe"] = litert.RECIPES[spec.precision]
    return {"model": model, **extra}


def _samples(spec: Spec, folder: Path, context: dict[str, Any]) -> None:
    samples = folder / "samples"
    samples.mkdir()
    if spec.task == "embed":
        (samples / "texts.json").write_text(json.dumps(context["texts"][:SAMPLES], indent=1) + "\n")
        return
    test = context["digits"]
    for digit in range(SAMPLES):  # one held-out image per class, named by its label
        index = int(np.flatnonzero(test["labels"] == digit)[0])
        (samples / f"digit_{digit}.png").write_bytes(context["pngs"][index])


def make_bundle(
    spec: Spec, staging: Path, repository: Path, stamp: str, context: dict[str, Any]
) -> dict[str, Any]:
    """Build, assemble and check one bundle in ``staging/<name>``; returns its report row."""
    folder = staging / spec.name
    folder.mkdir(parents=True)
    converted = _convert(spec, folder, repository, context)
    assemble.copy_support_files(spec, folder, repository)
    _samples(spec, folder, context)
    (folder / "requirements.txt").write_text("\n".join(assemble.requirements(spec)) + "\n")
    manifest = assemble.manifest(spec, converted.pop("model"), repository, stamp, **converted)
    assemble.write_manifest(folder, manifest)
    model_file = folder / manifest["model"]["file"]
    row: dict[str, Any] = {
        "runtime": spec.runtime,
        "precision": spec.precision,
        "served": spec.served,
        "model_file": manifest["model"]["file"],
        "model_bytes": model_file.stat().st_size,
        "model_gzip_bytes": _gzip_size(model_file),
        "bundle_bytes": sum(f["bytes"] for f in manifest["files"].values()),
        "quality": evaluate.evaluate(folder, spec, context),
    }
    fixed = manifest.get("variants", {}).get("fixed_shape")
    if fixed:
        row["mobile"] = fixed["mobile_execution_providers"]
    return row


def build(
    repository: Path, out: Path, stamp: str, reports: Path, specs: tuple[Spec, ...] = SPECS
) -> dict[str, Any]:
    """Every bundle of ``specs`` into ``out`` (swapped in only when all pass its gates)."""
    from tritonctl.corpus import sentences

    texts = sentences()
    test = evaluate.digits_test_set()
    from tritonctl.recipes.digits.data import load

    context: dict[str, Any] = {
        "texts": texts,
        "reference": evaluate.reference_embeddings(repository, texts),
        "digits": test,
        "pngs": [evaluate.png(image) for image in test["images"]],
        "calibration": load().train.x,
        "litert_float": {},
    }
    reason = litert.unavailable_reason()
    chosen = [s for s in specs if s.runtime != "litert" or reason is None]
    report: dict[str, Any] = {
        "machine": f"{measure.all_cores()}-core {platform.machine()}, no GPU",
        # Timings on a shared machine: what else ran is part of the figure.
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "bundles": {},
        "not_built": {s.name: reason for s in specs if s not in chosen},
    }
    # A private folder in the cache: two checkouts or test sessions may build at once.
    staging = Path(tempfile.mkdtemp(prefix="edge-staging-", dir=paths.cache_dir()))
    try:
        with progress() as bar:
            task = bar.add_task("edge bundles", total=len(chosen) * 2 + 1)
            for spec in chosen:
                bar.update(task, description=f"edge: build {spec.name}")
                try:
                    began = time.perf_counter()
                    row = make_bundle(spec, staging, repository, stamp, context)
                    row["build_seconds"] = round(time.perf_counter() - began, 1)
                    report["bundles"][spec.name] = row
                except Exception as error:
                    if spec.runtime == "litert" and spec.task == "embed":
                        # A converter failure on the transformer is a result, not a build failure.
                        report["not_built"][spec.name] = f"{type(error).__name__}: {error}"[:2000]
                        shutil.rmtree(staging / spec.name, ignore_errors=True)
                        console.print(
                            f"[yellow]edge: {spec.name} not converted: {escape(str(error))[:300]}[/]"
                        )
                    else:
                        raise
                bar.advance(task)
            for name, row in report["bundles"].items():
                bar.update(task, description=f"edge: time {name}")
                text = name.startswith("text")
                inputs = texts[:50] if text else context["pngs"][:50]
                runs = measure.BENCH_RUNS // 2 if text else measure.BENCH_RUNS  # ms vs µs each
                row["bench"] = {
                    "1": measure.bench_bundle(staging / name, inputs, threads=1, runs=runs),
                    "all": measure.bench_bundle(
                        staging / name, inputs, threads=measure.all_cores(), runs=runs
                    ),
                }
                bar.advance(task)
            bar.update(task, description="edge: served round trip at c=1")
            ensembles = {row["served"]: ("embed" if n.startswith("text") else "classify")
                         for n, row in report["bundles"].items()}  # fmt: skip
            for attempt in (1, 2):  # a server that fails to start on a busy machine: once more
                try:
                    report["served"] = measure.served_round_trip(
                        repository, ensembles, texts, context["pngs"]
                    )
                    report.pop("served_error", None)
                    break
                # The bundles stand without it; the column says why it is empty.
                except Exception as error:  # noqa: BLE001
                    report["served"] = {}
                    report["served_error"] = f"{type(error).__name__}: {error}"[-1500:]
                    console.print(
                        f"[yellow]edge: served round trip not measured (try {attempt}): "
                        f"{escape(str(error))[:300]}[/]"
                    )
            bar.advance(task)
        failed = [n for n, row in report["bundles"].items() if not row["quality"]["passed"]]
        report["failed_gates"] = failed
        reports.mkdir(parents=True, exist_ok=True)
        if failed:
            (reports / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
            raise BuildError(f"edge bundles failed their parity gates: {failed} (see {reports})")
        _install(staging, out, [*report["bundles"]])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _install(staging: Path, out: Path, names: list[str]) -> None:
    """Swap the new bundles in; bundles of earlier builds not built now are removed."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_dir() and old.name not in names:
            shutil.rmtree(old)
    for name in names:
        target = out / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(staging / name), target)
