"""Model drift: reference profiles, and the drift scores of a sample of traffic.

The builds store a reference profile beside each post-processing model:

- text (``pooling/1/reference_profile.json``): the centroid of the reference corpus'
  embeddings and the histogram of each embedding's cosine similarity to it;
- digits (``classify_postprocess/1/reference_profile.json``): the predicted-class
  distribution and the input-intensity (pixel value) histogram of the validation split.

Against them a sample scores:

- ``psi``: population stability index per signal (``cosine`` for text; ``predicted_class`` and
  ``input_intensity`` for digits), see ``drift_window``;
- ``low_confidence_ratio``: the share of low-confidence items (text: cosine to the centroid
  below the reference's ``LOW_PERCENTILE`` percentile, so about that share in distribution;
  digits: highest softmax probability below ``LOW_CONFIDENCE``).

The live models compute the same figures over a sliding window and export them as the gauges
``tritonctl_drift_psi{model, signal}`` and ``tritonctl_low_confidence_ratio{model}``.
``score_file`` computes them offline (``tritonctl drift FILE``), running the models in process.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tritonctl import paths
from tritonctl.drift_window import (
    MIN_SAMPLES,
    SHIFTED,
    STABLE,
    DriftError,
    bin_counts,
    cosine_to,
    pixel_counts,
    psi,
)

#: share of the reference corpus whose cosine to the centroid counts as "low confidence"
LOW_PERCENTILE = 5.0
#: a digits prediction whose top softmax probability is below this is "low confidence"
LOW_CONFIDENCE = 0.6
#: the label the gauges carry: the pipeline's ensemble, as operators know it
TEXT_LABEL, DIGITS_LABEL = "text_embedding", "digit_classifier"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".pgm"}


TOO_FEW = "too few samples"

#: Sample size -> the 99th percentile of in-distribution PSI at that size: the largest over both
#: pipelines' signals and in-distribution samples (docs/drift_min_samples.json, written by
#: scripts/drift_min_samples.py; tests/test_drift_min_samples.py checks the two agree).
NOISE_P99: dict[int, float] = {
    3: 8.282, 8: 5.12, 16: 3.352, 32: 1.707, 64: 0.851, 96: 0.303, 128: 0.229, 160: 0.197,
    192: 0.172, 224: 0.153, 256: 0.132, 288: 0.125, 320: 0.116, 352: 0.11, 384: 0.105,
    416: 0.098, 448: 0.089, 480: 0.086, 512: 0.091,
}  # fmt: skip


def noise_p99(samples: int) -> float:
    """What in-distribution samples of this size score at the 99th percentile (log-log
    interpolation of ``NOISE_P99``); infinite below its smallest size."""
    sizes = sorted(NOISE_P99)
    if not sizes or samples < sizes[0]:
        return math.inf
    logs = np.log([NOISE_P99[s] for s in sizes])
    return float(np.exp(np.interp(np.log(samples), np.log(sizes), logs)))


def verdict(value: float, samples: int | None = None) -> str:
    """The conventional reading of a PSI value. Below ``MIN_SAMPLES`` items PSI is mostly
    sampling noise (three ordinary sentences score 5.7): such a sample is a significant shift
    only if it scores over what in-distribution samples of its size reach 1 % of the time,
    and otherwise ``TOO_FEW``."""
    if samples is not None and samples < MIN_SAMPLES:
        shifted = value > max(SHIFTED, noise_p99(samples))
        return "significant shift" if shifted else TOO_FEW
    if value < STABLE:
        return "stable"
    return "moderate shift" if value < SHIFTED else "significant shift"


def sample_warning(samples: int, value: float) -> str | None:
    """Why a sample this small gets no verdict (or only one of a large shift), or None."""
    if samples >= MIN_SAMPLES:
        return None
    noise = noise_p99(samples)
    told = (
        f"only {samples} item(s): below {MIN_SAMPLES}, in-distribution samples score over "
        f"{STABLE} by chance more than 1% of the time (docs/monitoring.md, minimum window)"
    )
    if verdict(value, samples) == TOO_FEW:
        return f"{told}; PSI {value:.3g} is within what samples of this size reach, no verdict"
    return f"{told}; PSI {value:.3g} is over the {noise:.3g} they reach, a shift all the same"


def _json_number(value: float, digits: int = 4) -> float | None:
    """JSON has no NaN or Infinity: those become null."""
    return round(value, digits) if math.isfinite(value) else None


@dataclass(frozen=True)
class DriftScores:
    """Drift of one sample (or one live window) against the reference profile."""

    model: str
    samples: int
    psi: dict[str, float]
    low_confidence_ratio: float
    reference_low_confidence_ratio: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_psi(self) -> float:
        return max(self.psi.values()) if self.psi else 0.0

    @property
    def verdict(self) -> str:
        return verdict(self.max_psi, self.samples)

    @property
    def warning(self) -> str | None:
        return sample_warning(self.samples, self.max_psi)

    def as_dict(self) -> dict[str, Any]:
        """The scores as valid JSON values (NaN, e.g. digits' reference low-confidence share,
        which the profile does not record, becomes null)."""
        return {
            "model": self.model,
            "samples": self.samples,
            "min_samples": MIN_SAMPLES,
            "psi": {k: _json_number(v) for k, v in self.psi.items()},
            "max_psi": _json_number(self.max_psi),
            "verdict": self.verdict,
            "warning": self.warning,
            "low_confidence_ratio": _json_number(self.low_confidence_ratio),
            "reference_low_confidence_ratio": _json_number(self.reference_low_confidence_ratio),
            **self.extra,
        }


# --- reference profiles ---------------------------------------------------------------------


def text_profile_path(repository: Path | None = None) -> Path:
    return (repository or paths.model_repository()) / "pooling" / "1" / "reference_profile.json"


def digits_profile_path(repository: Path | None = None) -> Path:
    repository = repository or paths.model_repository()
    return repository / "classify_postprocess" / "1" / "reference_profile.json"


def load_profile(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DriftError(f"no reference profile at {path}: build the model first (tritonctl build)")
    profile: dict[str, Any] = json.loads(path.read_text())
    return profile


@dataclass(frozen=True)
class Histogram:
    edges: np.ndarray
    fractions: np.ndarray

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        edges = np.asarray(data["bin_edges"], dtype=np.float64)
        values = data.get("fractions", data.get("counts"))
        if values is None or len(values) != len(edges) - 1:
            raise DriftError("histogram needs len(bin_edges) - 1 fractions (or counts)")
        counts = np.asarray(values, dtype=np.float64)
        return cls(edges, counts / counts.sum())

    def quantile(self, q: float) -> float:
        """The value below which a share ``q`` of the reference lies (linear within a bin)."""
        cdf = np.concatenate([[0.0], np.cumsum(self.fractions)])
        return float(np.interp(q, cdf, self.edges))


@dataclass(frozen=True)
class TextProfile:
    centroid: np.ndarray
    cosine: Histogram
    low_threshold: float

    @classmethod
    def load(cls, path: Path | None = None) -> TextProfile:
        data = load_profile(path or text_profile_path())
        try:
            centroid = np.asarray(data["centroid"], dtype=np.float64)
            histogram = Histogram.from_json(data["cosine_similarity"])
        except KeyError as error:
            raise DriftError(f"text reference profile lacks {error}") from None
        low = data.get("low_threshold")
        if low is None:
            low = histogram.quantile(LOW_PERCENTILE / 100.0)
        return cls(centroid, histogram, float(low))


@dataclass(frozen=True)
class DigitsProfile:
    model: str
    classes: np.ndarray
    intensity: Histogram
    low_confidence: float = LOW_CONFIDENCE

    @classmethod
    def load(cls, path: Path | None = None) -> DigitsProfile:
        data = load_profile(path or digits_profile_path())
        try:
            classes = np.asarray(data["predicted_class_distribution"], dtype=np.float64)
            intensity = Histogram.from_json(data["input_intensity"])
        except KeyError as error:
            raise DriftError(f"digits reference profile lacks {error}") from None
        low = float(data.get("low_confidence_threshold", LOW_CONFIDENCE))
        return cls(str(data.get("model", "")), classes, intensity, low)


# --- scores ---------------------------------------------------------------------------------


def score_text(embeddings: np.ndarray, profile: TextProfile) -> DriftScores:
    """Drift of a sample of sentence embeddings ``[N, D]``."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[1] != len(profile.centroid):
        raise DriftError(
            f"embeddings must be [N, {len(profile.centroid)}], got {list(embeddings.shape)}"
        )
    cosine = cosine_to(embeddings, profile.centroid)
    counts = bin_counts(cosine, profile.cosine.edges).sum(axis=0)
    return DriftScores(
        model=TEXT_LABEL,
        samples=len(embeddings),
        psi={"cosine": psi(profile.cosine.fractions, counts)},
        low_confidence_ratio=float(np.mean(cosine < profile.low_threshold)),
        reference_low_confidence_ratio=LOW_PERCENTILE / 100.0,
        extra={
            "mean_cosine": round(float(cosine.mean()), 4),
            "low_threshold": round(profile.low_threshold, 4),
        },
    )


def score_digits(
    pixels: np.ndarray, probabilities: np.ndarray, profile: DigitsProfile
) -> DriftScores:
    """Drift of digits images ``[N, 1, 8, 8]`` (0–16 scale) and their softmax outputs ``[N, 10]``."""
    pixels, probabilities = np.asarray(pixels), np.asarray(probabilities)
    if len(pixels) != len(probabilities):
        raise DriftError(f"{len(pixels)} images but {len(probabilities)} predictions")
    classes = np.bincount(probabilities.argmax(axis=1), minlength=len(profile.classes))
    intensity = pixel_counts(pixels, profile.intensity.edges).sum(axis=0)
    return DriftScores(
        model=DIGITS_LABEL,
        samples=len(pixels),
        psi={
            "predicted_class": psi(profile.classes, classes),
            "input_intensity": psi(profile.intensity.fractions, intensity),
        },
        low_confidence_ratio=float(np.mean(probabilities.max(axis=1) < profile.low_confidence)),
        reference_low_confidence_ratio=float("nan"),
        extra={"low_confidence_threshold": profile.low_confidence},
    )


# --- offline: run the models in process -----------------------------------------------------


def backend_module(model: str) -> ModuleType:
    """Import ``python_backends/<model>/model.py`` (its pure helpers work outside Triton)."""
    path = paths.python_backends() / model / "model.py"
    spec = importlib.util.spec_from_file_location(f"tritonctl_backend_{model}", path)
    if spec is None or spec.loader is None:
        raise DriftError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_images(path: Path) -> np.ndarray:
    """A folder of image files, or an ``.npz``/``.npy`` of 8×8 arrays → float32 ``[N, 1, 8, 8]``.

    Files are converted exactly as the server's ``image_preprocess`` does. Arrays are taken to be
    on the data set's 0–16 scale already (``images`` or ``pixels`` key in an ``.npz``).
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DriftError(f"{path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        preprocess = backend_module("image_preprocess")
        try:
            pixels = preprocess.preprocess([f.read_bytes() for f in files])
        except preprocess.ImageError as error:
            raise DriftError(f"{path}: {error}") from None
        return np.asarray(pixels, dtype=np.float32)
    if path.suffix == ".npz":
        with np.load(path) as data:
            key = next((k for k in ("images", "pixels") if k in data), None)
            if key is None:
                raise DriftError(f"{path} has no 'images' or 'pixels' array (has {list(data)})")
            array = data[key]
    elif path.suffix == ".npy":
        array = np.load(path)
    else:
        raise DriftError(f"{path}: expected a folder of images, an .npz or an .npy file")
    array = np.asarray(array, dtype=np.float32)
    if array.shape[-2:] != (8, 8):
        raise DriftError(f"{path}: images must be 8x8, got shape {list(array.shape)}")
    return array.reshape(-1, 1, 8, 8)


def classify(pixels: np.ndarray, model: Path) -> np.ndarray:
    """Softmax probabilities of the digits ONNX ``model`` on ``pixels`` ``[N, 1, 8, 8]``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.asarray(session.run(None, {name: pixels.astype(np.float32)})[0], np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def score_digits_sample(pixels: np.ndarray, repository: Path | None = None) -> DriftScores:
    """Classify ``pixels`` with the model the reference was profiled on, then score them."""
    repository = repository or paths.model_repository()
    profile = DigitsProfile.load(digits_profile_path(repository))
    model = repository / (profile.model or "digits_student") / "1" / "model.onnx"
    if not model.exists():
        raise DriftError(f"no model at {model}: build the digits models first")
    return score_digits(pixels, classify(pixels, model), profile)


def read_sentences(path: Path) -> list[str]:
    """One sentence per non-empty line of a UTF-8 text file."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    sentences = [line for line in lines if line]
    if not sentences:
        raise DriftError(f"{path} holds no sentences (one per line expected)")
    return sentences


def embed(sentences: list[str], repository: Path | None = None) -> np.ndarray:
    """Sentence embeddings ``[N, 384]`` from the text pipeline's own parts, run in process."""
    try:
        from tritonctl.drift_text import embed_sentences
    except ImportError:
        raise DriftError(
            "offline text scoring is not implemented yet (tritonctl.drift_text); "
            "score text through the server's pooling gauges instead"
        ) from None
    return np.asarray(embed_sentences(sentences, repository or paths.model_repository()))


def score_text_sample(sentences: list[str], repository: Path | None = None) -> DriftScores:
    repository = repository or paths.model_repository()
    profile = TextProfile.load(text_profile_path(repository))
    return score_text(embed(sentences, repository), profile)


def score_file(path: Path, model: str = "auto", repository: Path | None = None) -> DriftScores:
    """``tritonctl drift FILE``: a text file of sentences, or a folder / npz of images."""
    path = Path(path)
    if not path.exists():
        raise DriftError(f"{path} does not exist")
    if model == "auto":
        model = "text" if path.is_file() and path.suffix in ("", ".txt", ".text") else "digits"
    if model == "text":
        return score_text_sample(read_sentences(path), repository)
    if model == "digits":
        return score_digits_sample(read_images(path), repository)
    raise DriftError(f"unknown model kind {model!r}: choose text or digits")
