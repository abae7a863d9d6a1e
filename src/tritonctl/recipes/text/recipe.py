"""Recipe ``text-embedding``: all-MiniLM-L6-v2 converted, verified, quantized, configured.

``build(repository)`` writes into ``model_repository/``:

- ``text_encoder/1/model.onnx``: FP32, ONNX Runtime's transformer fusions applied when they
  measurably help (else the plain export); verified against PyTorch;
- ``text_encoder_int8/1/model.onnx``: INT8 (see ``quantize``), gated on min cosine ≥ 0.99
  to the reference over ``corpus.sentences()`` and ≥ 2× the FP32 throughput at batch 32;
- ``text_encoder_trt/1/model.plan``: FP16 TensorRT engine, only where TensorRT and a CUDA GPU
  are present (elsewhere the report says it was skipped and why);
- ``tokenizer/1/tokenizer.json`` and every ``config.pbtxt`` (``text_configs``);
- ``pooling/1/reference_profile.json``: the drift reference, format::

      {"format": "tritonctl.text_reference_profile/1",
       "centroid": [384 floats],          # unit-length mean of the corpus embeddings
       "cosine_similarity": {             # each corpus embedding's cosine to the centroid
           "bin_edges": [11 floats],      # -1, the 10 %..90 % quantiles, 1 (10 bins)
           "fractions": [10 floats],      # share of the corpus in each bin (sums to 1)
           "counts": [10 ints]},
       "low_threshold": float,            # 5th percentile of those cosines
       "corpus_size": int, "model": "text_encoder"}

- ``reports/text_embedding/build_report.json``, also shown as a table.

The build fails (``BuildError``) when a verification or a gate fails. Its inputs (these
sources, the corpus, the weights file's size and mtime, library versions, TensorRT
availability) are hashed into a stamp: re-running with unchanged inputs is a quick no-op.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from tritonctl import paths
from tritonctl.console import console, progress
from tritonctl.model_config import save_config
from tritonctl.recipes.common import BuildError, hash_sources
from tritonctl.recipes.text.report import print_report

VARIANT_FILES = {"text_encoder": "model.onnx", "text_encoder_int8": "model.onnx"}
MIN_COSINE_INT8 = 0.99
MIN_SPEEDUP_INT8 = 2.0
STAMP = ("text_encoder", "1", "build_stamp.json")
STEPS = 9


def report_path() -> Path:
    return paths.reports_dir() / "text_embedding" / "build_report.json"


def input_hash() -> str:
    """Hash of everything the build's output depends on."""
    from importlib.metadata import version

    from tritonctl import corpus
    from tritonctl.recipes.text import export as text_export
    from tritonctl.recipes.text import tensorrt as text_tensorrt

    digest = hashlib.sha256()
    here = Path(__file__).parent
    # Left out: configs are cheap and rewritten by every call (if changed); the table is display.
    sources = [p for p in sorted(here.glob("*.py")) if p.name not in ("configs.py", "report.py")]
    hash_sources(digest, [*sources, Path(corpus.__file__)])
    weights = text_export.weights_dir()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        stat = (weights / name).stat()
        digest.update(f"{name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    versions = [version(p) for p in ("torch", "onnxruntime", "transformers", "onnx")]
    digest.update(repr(versions).encode())
    digest.update(str(text_tensorrt.unavailable_reason()).encode())
    return digest.hexdigest()


def _outputs(repository: Path) -> list[Path]:
    files = [repository / name / "1" / file for name, file in VARIANT_FILES.items()]
    files += [repository / "tokenizer" / "1" / "tokenizer.json"]
    files += [repository / "pooling" / "1" / "reference_profile.json", report_path()]
    return files


def _up_to_date(repository: Path, stamp: str) -> bool:
    text = repository.joinpath(*STAMP).read_text()
    if not text.strip() or not all(p.exists() for p in _outputs(repository)):
        return False
    return bool(json.loads(text).get("inputs") == stamp)


def build(repository: Path, *, force: bool = False) -> dict[str, Any]:
    """Build the text-embedding models into ``repository``; return the build report."""
    repository = Path(repository)
    # Several processes (parallel test sessions, a CLI build) may call this at once: one builds,
    # the others wait for it and then find the repository up to date. The stamp file is the lock.
    with _lock(repository.joinpath(*STAMP)):
        stamp = input_hash()
        if not force and _up_to_date(repository, stamp):
            report: dict[str, Any] = json.loads(report_path().read_text())
            write_configs(repository, with_tensorrt=bool(report.get("tensorrt", {}).get("built")))
            console.print(
                "[green]text-embedding: up to date[/] (inputs unchanged; --force rebuilds)"
            )
            return report
        started = time.perf_counter()
        workdir = Path(tempfile.mkdtemp(prefix="text_embedding_build-", dir=paths.cache_dir()))
        try:
            report = _build(repository, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        report["build_seconds"] = round(time.perf_counter() - started, 1)
        report_path().parent.mkdir(parents=True, exist_ok=True)
        report_path().write_text(json.dumps(report, indent=2) + "\n")
        repository.joinpath(*STAMP).write_text(json.dumps({"inputs": stamp}) + "\n")
    print_report(report)
    return report


def _build(repository: Path, workdir: Path) -> dict[str, Any]:
    from tritonctl.corpus import calibration_sentences, sentences
    from tritonctl.recipes.text import (
        configs as text_configs,
    )
    from tritonctl.recipes.text import (
        export as text_export,
    )
    from tritonctl.recipes.text import (
        quantize as text_quantize,
    )
    from tritonctl.recipes.text import (
        tensorrt as text_tensorrt,
    )
    from tritonctl.recipes.text.measure import accuracy, embed, session, speed
    from tritonctl.recipes.text.tokens import bucketed_batches, full_batches, load_tokenizer

    weights = text_export.weights_dir()
    texts = sentences()
    tokenizer = load_tokenizer(weights / "tokenizer.json")
    batches = bucketed_batches(tokenizer, texts)
    full32 = list(full_batches(batches, 32))
    singles = bucketed_batches(tokenizer, texts[:: max(1, len(texts) // 40)], batch_size=1)
    calibration = bucketed_batches(tokenizer, calibration_sentences())
    report: dict[str, Any] = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "corpus_size": len(texts),
    }

    with progress() as bar:
        task = bar.add_task("text-embedding", total=STEPS)

        def step(message: str, advance: int = 0) -> None:
            bar.update(task, description=f"text-embedding: {message}", advance=advance)
            if message.startswith(("dynamic", "smoothed (")):
                bar.console.print(f"  INT8 {message}")

        step("PyTorch reference embeddings")
        model = text_export.load_model(weights)
        reference = text_export.reference_embeddings(model, batches, len(texts))
        step("export to ONNX", 1)
        plain = text_export.export(model, batches[0], workdir / "plain.onnx")
        check = _verification_batch(batches)
        verification = {"plain": text_export.verify(session(plain, 2), model, check)}

        step("ONNX Runtime transformer optimizations", 1)
        optimized, fused = _optimize(plain, workdir / "optimized.onnx")
        verification["optimized"] = text_export.verify(session(optimized, 2), model, check)
        report["fused_operators"] = fused

        step("INT8 quantization", 1)
        int8 = workdir / "int8.onnx"

        try:
            _, attempts = text_quantize.build_int8(
                optimized,
                int8,
                eval_batches=batches,
                reference=reference,
                calibration=calibration,
                gate=MIN_COSINE_INT8,
                workdir=workdir,
                step=step,
            )
        except text_quantize.QuantizationError as error:
            raise BuildError(str(error)) from None
        report["int8_attempts"] = [a.as_dict() for a in attempts]

        step("accuracy and speed of each variant", 1)
        candidates = {"fp32_plain": plain, "fp32_optimized": optimized, "int8": int8}
        variants: dict[str, dict[str, Any]] = {}
        for name, path in candidates.items():
            figures = accuracy(embed(session(path, 2), batches, len(texts)), reference)
            variants[name] = {"size_mb": round(path.stat().st_size / 2**20, 1), **figures}
        for name, figures in speed(candidates, singles, full32).items():
            variants[name].update(figures)

        keep_optimized = _helps(variants["fp32_optimized"], variants["fp32_plain"])
        fp32_name = "fp32_optimized" if keep_optimized else "fp32_plain"
        variants[fp32_name]["served_as"] = "text_encoder"
        variants["int8"]["served_as"] = "text_encoder_int8"
        speedup = variants["int8"]["throughput_b32"] / variants[fp32_name]["throughput_b32"]
        report["optimization_kept"] = keep_optimized
        report["int8_speedup_b32"] = round(speedup, 2)
        report["verification"] = verification
        if variants["int8"]["min_cosine"] < MIN_COSINE_INT8:
            raise BuildError(
                f"INT8 min cosine {variants['int8']['min_cosine']:.4f} < {MIN_COSINE_INT8}"
            )
        report["speed_gate"] = {
            "int8_speedup_b32": round(speedup, 2),
            "needs": MIN_SPEEDUP_INT8,
            "passed": speedup >= MIN_SPEEDUP_INT8,
        }
        if speedup < MIN_SPEEDUP_INT8:
            # Speed depends on the CPU (VNNI or not) and on what else runs: fatal only on request.
            message = (
                f"INT8 runs only {speedup:.2f}× the FP32 throughput at batch 32 "
                f"(the gate is ≥ {MIN_SPEEDUP_INT8}×)"
            )
            if os.environ.get("TRITONCTL_STRICT_SPEED_GATES") == "1":
                raise BuildError(f"{message}: {variants}")
            console.print(f"[yellow]text-embedding: speed gate missed: {message}[/]")

        step("TensorRT", 1)
        reason = text_tensorrt.unavailable_reason()
        if reason is None:
            plan = text_tensorrt.build_engine(plain, workdir / "model.plan")
            trt_embeddings, trt_speed = text_tensorrt.evaluate(plan, batches, len(texts))
            variants["tensorrt_fp16"] = {
                "size_mb": round(plan.stat().st_size / 2**20, 1),
                **accuracy(trt_embeddings, reference),
                **trt_speed,
                "served_as": "text_encoder_trt",
            }
            if variants["tensorrt_fp16"]["min_cosine"] < MIN_COSINE_INT8:
                raise BuildError(f"TensorRT FP16 engine disagrees: {variants['tensorrt_fp16']}")
            report["tensorrt"] = {"built": True}
        else:
            console.print(f"[yellow]text-embedding: skipped TensorRT: {escape(reason)}[/]")
            report["tensorrt"] = {"built": False, "skipped_because": reason}
            plan = None
        report["variants"] = variants

        step("writing the model repository", 1)
        fp32_path = optimized if keep_optimized else plain
        _install(fp32_path, repository / "text_encoder" / "1" / "model.onnx")
        _install(int8, repository / "text_encoder_int8" / "1" / "model.onnx")
        if plan is not None:
            _install(plan, repository / text_configs.TRT_ENCODER / "1" / "model.plan")
        _install(weights / "tokenizer.json", repository / "tokenizer" / "1" / "tokenizer.json")
        write_configs(repository, with_tensorrt=plan is not None)

        step("drift reference profile", 1)
        served = embed(session(fp32_path, 2), batches, len(texts))
        profile = reference_profile(served)
        profile_path = repository / "pooling" / "1" / "reference_profile.json"
        profile_path.parent.mkdir(parents=True, exist_ok=True)
        profile_path.write_text(json.dumps(profile) + "\n")
        step("done", STEPS - 7)
    return report


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_configs(repository: Path, *, with_tensorrt: bool) -> list[Path]:
    """Write every config.pbtxt whose content changed; return those written."""
    from tritonctl.model_config import config_text
    from tritonctl.recipes.text import configs as text_configs

    written = []
    for config in text_configs.all_configs(with_tensorrt=with_tensorrt):
        # Triton loads a model only with a version folder, even an ensemble (which has no files).
        (repository / config.name / "1").mkdir(parents=True, exist_ok=True)
        path = repository / config.name / "config.pbtxt"
        if not path.exists() or path.read_text() != config_text(config):
            written.append(save_config(config, repository / config.name))
    return written


def _verification_batch(batches: list) -> Any:
    """A fixed batch mixing lengths: the first sentence of every bucket, padded together."""
    from tritonctl.recipes.text.tokens import Batch

    width = max(b.input_ids.shape[1] for b in batches)
    rows = [(b.indices[0], b.input_ids[0], b.attention_mask[0]) for b in batches]
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, (_, i, m) in enumerate(rows):
        ids[row, : len(i)], mask[row, : len(m)] = i, m
    return Batch([r[0] for r in rows], ids, mask)


def _optimize(plain: Path, target: Path) -> tuple[Path, dict[str, int]]:
    from onnxruntime.transformers.optimizer import optimize_model

    from tritonctl.recipes.text.export import HIDDEN_SIZE, NUM_HEADS

    optimized = optimize_model(
        str(plain), model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN_SIZE, opt_level=1
    )
    optimized.save_model_to_file(str(target))
    fused = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    return target, fused


def _helps(optimized: dict[str, float], plain: dict[str, float]) -> bool:
    """The fused graph is kept if it is faster on balance (batch-1 latency and batch-32 throughput)."""
    latency_gain = plain["latency_ms_b1"] / optimized["latency_ms_b1"]
    throughput_gain = optimized["throughput_b32"] / plain["throughput_b32"]
    return bool((latency_gain * throughput_gain) ** 0.5 > 1.0)


def _install(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def reference_profile(embeddings: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """The drift reference of ``embeddings`` (format in the module docstring)."""
    centroid = embeddings.mean(axis=0)
    centroid = centroid / np.linalg.norm(centroid)
    cosine = embeddings @ centroid / np.linalg.norm(embeddings, axis=1)
    inner = np.quantile(cosine, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.concatenate([[-1.0], inner, [1.0]])
    counts, _ = np.histogram(cosine, bins=edges)
    return {
        "format": "tritonctl.text_reference_profile/1",
        "centroid": [round(float(v), 7) for v in centroid],
        "cosine_similarity": {
            "bin_edges": [round(float(v), 6) for v in edges],
            "fractions": [round(float(c) / len(cosine), 6) for c in counts],
            "counts": [int(c) for c in counts],
        },
        "low_threshold": round(float(np.percentile(cosine, 5)), 6),
        "corpus_size": len(cosine),
        "model": "text_encoder",
    }
