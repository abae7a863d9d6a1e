"""Accuracy of a built bundle, run through its own ``runner.py`` exactly as a user runs it.

Text bundles are compared with the served FP32 pipeline run in process (the ``text_encoder``
ONNX file, the served tokenizer settings, masked mean pooling): cosine per sentence of the
evaluation corpus. Image bundles classify the held-out digits **as PNG files** and are compared
with the held-out labels and with the served variant's own predictions (``test_set.npz``).
The same targets are checked against the live server by ``tests/test_edge_parity.py``.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tritonctl import paths

#: parity targets (issue 14): FP32 text vs the served FP32, INT8 text vs FP32, digits labels
MIN_COSINE_FP32 = 0.9999
MIN_COSINE_INT8 = 0.99
MIN_AGREEMENT = 0.995
MAX_POINTS_BELOW_TEACHER = 1.5
#: corpus sentences the fixed-shape text variant is checked on
FIXED_SAMPLE = 64


def load_runner(folder: Path) -> ModuleType:
    """The bundle's own ``runner.py`` as a module (what ships, not the package's copy)."""
    name = f"tritonctl_edge_runner_{abs(hash(str(folder.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, folder / "runner.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {folder / 'runner.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def png(image: np.ndarray, note: str = "") -> bytes:
    """An 8×8 image on 0–16 as the 8-bit PNG a user would send (value × 255 / 16); a ``note``
    (a PNG text chunk) makes the bytes unique without changing the pixels."""
    from PIL import Image, PngImagePlugin

    buffer = io.BytesIO()
    pixels = np.rint(np.asarray(image).reshape(8, 8) * 255.0 / 16.0).astype(np.uint8)
    info = PngImagePlugin.PngInfo()
    if note:
        info.add_text("note", note)
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def unique_png(data: bytes, note: str) -> bytes:
    """``data`` (a PNG) re-encoded with a ``note``: same pixels, bytes never seen before."""
    from PIL import Image

    return png(np.asarray(Image.open(io.BytesIO(data))) * 16.0 / 255.0, note)


def digits_test_set() -> dict[str, np.ndarray]:
    with np.load(paths.reports_dir() / "digits" / "test_set.npz") as data:
        return {key: data[key] for key in data}


def reference_embeddings(repository: Path, texts: list[str]) -> np.ndarray:
    """The served FP32 pipeline in process: served tokenizer settings, encoder, pooling."""
    import onnxruntime as ort

    from tritonctl.recipes.text.tokens import encode, load_tokenizer, mean_pool

    tokenizer = load_tokenizer(repository / "tokenizer" / "1" / "tokenizer.json")
    session = ort.InferenceSession(
        str(repository / "text_encoder" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    rows = []
    for start in range(0, len(texts), 32):
        ids, mask = encode(tokenizer, texts[start : start + 32])
        outputs = session.run(None, {"input_ids": ids, "attention_mask": mask})
        pooled = [o for o in outputs if o.ndim == 2]  # the graph's own pooling, if it has one
        rows.append(pooled[0] if pooled else mean_pool(outputs[0], mask))
    return np.concatenate(rows)


def text_figures(embeddings: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    cosine = (embeddings * reference).sum(axis=1) / (
        np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1)
    )
    return {
        "min_cosine": round(float(cosine.min()), 6),
        "mean_cosine": round(float(cosine.mean()), 6),
    }


def evaluate(folder: Path, spec: Any, context: dict[str, Any]) -> dict[str, Any]:
    """Figures and gates of one bundle; ``context`` holds the evaluation inputs and references."""
    runner = load_runner(folder)
    bundle = runner.Bundle(folder, threads=2)
    if spec.task == "embed":
        figures: dict[str, Any] = text_figures(bundle.embed(context["texts"]), context["reference"])
        needed = MIN_COSINE_FP32 if spec.precision == "fp32" else MIN_COSINE_INT8
        figures["gate"] = f"min cosine to served FP32 >= {needed}"
        figures["passed"] = figures["min_cosine"] >= needed
        fixed = bundle.manifest.get("variants", {}).get("fixed_shape")
        if fixed:  # the mobile variant, on the texts that fit its length
            # One text per call at a fixed length: a sample of the corpus keeps the build short.
            limit = max(fixed["fixed_lengths"])
            tokens = bundle.tokenize(context["texts"][:FIXED_SAMPLE])
            fits = [i for i, ids in enumerate(tokens) if len(ids) <= limit]
            variant = runner.Bundle(folder, threads=2, variant="fixed_shape")
            texts = [context["texts"][i] for i in fits]
            fixed_figures = text_figures(variant.embed(texts), context["reference"][fits])
            figures["fixed_shape"] = {"texts": len(fits), **fixed_figures}
            if spec.precision == "fp32":
                figures["passed"] = figures["passed"] and fixed_figures["min_cosine"] >= needed
            # INT8 is recorded, not gated: alone and padded to 128, a text's dynamic quantization
            # range includes the padding (see batch_1 below: the served INT8 shares this).
        if spec.precision != "fp32" and not bundle.spec.get("fixed_lengths"):
            # One text per call, as an app (or the server at concurrency 1) would send it: INT8
            # only, as FP32 does not depend on the batch (padding is masked out).
            single = np.concatenate([bundle.embed([text]) for text in context["texts"]])
            figures["batch_1"] = text_figures(single, context["reference"])
        return figures
    test = context["digits"]
    labels, _ = bundle.classify(context["pngs"])
    predicted = labels[:, 0].astype(int)
    served = test[f"pred_{spec.source.removeprefix('digits_')}"]
    accuracy = float((predicted == test["labels"]).mean())
    teacher = float((test["pred_teacher"] == test["labels"]).mean())
    result: dict[str, Any] = {
        "accuracy": round(accuracy, 6),
        "agreement_with_served": round(float((predicted == served).mean()), 6),
        "points_below_teacher": round((teacher - accuracy) * 100, 4),
    }
    fixed = bundle.manifest.get("variants", {}).get("fixed_shape")
    if fixed:
        variant = runner.Bundle(folder, threads=2, variant="fixed_shape")
        fixed_labels, _ = variant.classify(context["pngs"])
        result["fixed_shape"] = {
            "agreement_with_dynamic": round(float((fixed_labels[:, 0] == labels[:, 0]).mean()), 6)
        }
    result["gate"] = (
        f"labels equal the served {spec.served} on >= {MIN_AGREEMENT:.1%}, accuracy within "
        f"{MAX_POINTS_BELOW_TEACHER} points of the teacher"
    )
    result["passed"] = (
        result["agreement_with_served"] >= MIN_AGREEMENT
        and result["points_below_teacher"] <= MAX_POINTS_BELOW_TEACHER
        and result.get("fixed_shape", {}).get("agreement_with_dynamic", 1.0) == 1.0
    )
    return result
