"""How PSI's sampling noise shrinks with the window size, and the smallest window worth scoring.

PSI over a few items is noise: three ordinary sentences scored 5.7 against the text reference,
far over the 0.25 "significant shift" line. The live monitors (``drift_window.Monitor``) publish
no score until their window holds ``drift_window.MIN_SAMPLES`` items. That number comes from
this module:

1. A *pool* is one signal's per-item histogram rows (what a live model adds to its window) for a
   sample of traffic: in-distribution (held-out data, or the reference data itself) or shifted.
2. ``curve`` draws ``draws`` windows of ``size`` items from a pool (with replacement: items
   arrive independently) and records the quantiles of their PSI against the reference.
3. ``choose_min_samples`` picks the smallest size from which on every in-distribution pool's
   99th percentile stays under the "stable" line (0.1), judged by the 95 % upper confidence
   bound of that percentile (``p99_upper``) so that the choice does not hinge on the draw.

``scripts/drift_min_samples.py`` runs it on the built models and writes the report, the plot
and the table in ``docs/monitoring.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonctl.drift_window import (
    EPSILON,
    STABLE,
    bin_counts,
    cosine_to,
    fractions,
    pixel_counts,
)

#: window sizes measured: a handful, then multiples of the monitors' publishing step (32)
SIZES = (3, 8, 16, *range(32, 513, 32))
QUANTILES = {"p01": 1.0, "p50": 50.0, "p90": 90.0, "p99": 99.0}
Z95 = 1.645  # one-sided 95 % normal quantile
IN_DISTRIBUTION, SHIFTED = "in-distribution", "shifted"


@dataclass(frozen=True)
class Pool:
    """One signal's per-item histogram rows for one sample of traffic."""

    pipeline: str  # the gauges' ``model`` label: text_embedding, digit_classifier
    signal: str  # cosine, predicted_class, input_intensity
    sample: str  # what the items are, for the report
    kind: str  # IN_DISTRIBUTION or SHIFTED
    reference: np.ndarray  # float [B]: the profile's fractions
    rows: np.ndarray  # int [M, B]: one row per item

    @property
    def name(self) -> str:
        return f"{self.pipeline} · {self.signal} · {self.sample}"


def window_psi(pool: Pool, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """PSI of ``draws`` windows of ``size`` items drawn from ``pool`` (float ``[draws]``)."""
    picks = rng.integers(0, len(pool.rows), size=(draws, size))
    scores = np.empty(draws)
    for start in range(0, draws, 256):  # bounded memory: [256, size, bins] at a time
        totals = pool.rows[picks[start : start + 256]].sum(axis=1)
        scores[start : start + 256] = psi_rows(pool.reference, totals)
    return scores


def psi_rows(reference: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``drift_window.psi(reference, row)`` for each row of ``counts`` ``[D, B]``, in one go."""
    p = fractions(reference)
    counts = np.asarray(counts, dtype=np.float64)
    q = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-300) + EPSILON
    q /= q.sum(axis=1, keepdims=True)
    return np.asarray(np.sum((q - p) * np.log(q / p), axis=1))


def curve(
    pool: Pool, sizes: Sequence[int] = SIZES, draws: int = 2000, seed: int = 0
) -> list[dict[str, float]]:
    """PSI quantiles of ``pool`` at each window size: ``[{size, mean, p01, p50, p90, p99,
    p99_upper}]``."""
    rng = np.random.default_rng(seed)
    points = []
    for size in sizes:
        scores = window_psi(pool, size, draws, rng)
        point = {"size": float(size), "mean": float(scores.mean())}
        point.update({k: float(np.percentile(scores, q)) for k, q in QUANTILES.items()})
        point["p99_upper"] = upper_bound(scores, 0.99)
        points.append(point)
    return points


def upper_bound(scores: np.ndarray, quantile: float) -> float:
    """A 95 % upper confidence bound of ``scores``' ``quantile``: the order statistic whose rank
    the binomial count of draws under the true quantile stays below 95 % of the time (normal
    approximation; the 1,988th of 2,000 draws for the 99th percentile)."""
    n = len(scores)
    rank = math.ceil(n * quantile + Z95 * math.sqrt(n * quantile * (1 - quantile)))
    return float(np.sort(scores)[min(rank, n) - 1])


def choose_min_samples(
    curves: Mapping[str, Sequence[Mapping[str, float]]],
    in_distribution: Sequence[str],
    line: float = STABLE,
    quantile: str = "p99_upper",
) -> int:
    """The smallest measured size from which on the ``quantile`` of every in-distribution curve
    stays under ``line``; ``ValueError`` if even the largest size does not."""
    sizes = [int(p["size"]) for p in curves[in_distribution[0]]]
    ok = [all(curves[n][i][quantile] < line for n in in_distribution) for i in range(len(sizes))]
    for index, size in enumerate(sizes):
        if all(ok[index:]):
            return size
    raise ValueError(
        f"the {quantile} of in-distribution PSI is over {line} even at {sizes[-1]} items"
    )


def noise_table(
    curves: Mapping[str, Sequence[Mapping[str, float]]], in_distribution: Sequence[str]
) -> dict[str, float]:
    """Size -> the largest in-distribution 99th percentile at that size, rounded up to 3
    decimals (``tritonctl.drift.NOISE_P99``: offline verdicts on samples under the minimum)."""
    first = curves[in_distribution[0]]
    return {
        str(int(point["size"])): math.ceil(
            max(curves[name][index]["p99"] for name in in_distribution) * 1000
        )
        / 1000
        for index, point in enumerate(first)
    }


# --- pools from the built models ------------------------------------------------------------


def text_pools(
    repository: Path,
    in_distribution: Mapping[str, Sequence[str]],
    shifted: Mapping[str, Sequence[str]],
) -> list[Pool]:
    """Cosine-to-centroid rows of each named sentence sample, embedded as the server does."""
    from tritonctl.drift import TEXT_LABEL, TextProfile, text_profile_path
    from tritonctl.drift_text import embed_sentences

    profile = TextProfile.load(text_profile_path(repository))
    pools = []
    for kind, samples in ((IN_DISTRIBUTION, in_distribution), (SHIFTED, shifted)):
        for sample, texts in samples.items():
            cosine = cosine_to(embed_sentences(list(texts), repository), profile.centroid)
            rows = bin_counts(cosine, profile.cosine.edges)
            reference = profile.cosine.fractions
            pools.append(Pool(TEXT_LABEL, "cosine", sample, kind, reference, rows))
    return pools


def digits_pools(
    repository: Path, in_distribution: Mapping[str, np.ndarray], shifted: Mapping[str, np.ndarray]
) -> list[Pool]:
    """Predicted-class and pixel-intensity rows of each named image sample ``[N, 1, 8, 8]``,
    classified by the model the reference was profiled with."""
    from tritonctl.drift import DIGITS_LABEL, DigitsProfile, classify, digits_profile_path

    profile = DigitsProfile.load(digits_profile_path(repository))
    model = repository / (profile.model or "digits_student") / "1" / "model.onnx"
    class_edges = np.arange(len(profile.classes) + 1) - 0.5
    pools = []
    for kind, samples in ((IN_DISTRIBUTION, in_distribution), (SHIFTED, shifted)):
        for sample, pixels in samples.items():
            predicted = classify(pixels, model).argmax(axis=1)
            signals = {
                "predicted_class": (profile.classes, bin_counts(predicted, class_edges)),
                "input_intensity": (
                    profile.intensity.fractions,
                    pixel_counts(pixels, profile.intensity.edges),
                ),
            }
            for signal, (reference, rows) in signals.items():
                pools.append(Pool(DIGITS_LABEL, signal, sample, kind, reference, rows))
    return pools


# --- the report -----------------------------------------------------------------------------


def measure(
    pools: Sequence[Pool],
    sizes: Sequence[int] = SIZES,
    draws: int = 2000,
    seed: int = 0,
    done: Callable[[Pool], object] | None = None,
) -> dict[str, Any]:
    """Every pool's curve and the chosen minimum: the JSON report's content. ``done`` is called
    after each pool (progress)."""
    curves = {}
    for pool in pools:
        curves[pool.name] = curve(pool, sizes, draws, seed)
        if done is not None:
            done(pool)
    in_distribution = [p.name for p in pools if p.kind == IN_DISTRIBUTION]
    return {
        "draws": draws,
        "seed": seed,
        "stable_line": STABLE,
        "min_samples": choose_min_samples(curves, in_distribution),
        "noise_p99": noise_table(curves, in_distribution),
        "pools": [
            {
                "name": p.name,
                "pipeline": p.pipeline,
                "signal": p.signal,
                "sample": p.sample,
                "kind": p.kind,
                "items": len(p.rows),
                "bins": len(p.reference),
                "curve": curves[p.name],
            }
            for p in pools
        ],
    }


def at_size(pool: Mapping[str, Any], size: int) -> Mapping[str, float]:
    """A report pool's curve point at ``size``."""
    return next(p for p in pool["curve"] if int(p["size"]) == size)


def markdown_table(report: Mapping[str, Any], sizes: Sequence[int] = (3, 32, 128, 256)) -> str:
    """The docs' table: in-distribution p99 (shifted: p01) of PSI at a few sizes and at N."""
    n = int(report["min_samples"])
    shown = sorted({*sizes, n})
    header = ["pipeline", "signal", "sample", "items", "PSI quantile"]
    header += [f"{s} items" + (" (N)" if s == n else "") for s in shown]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for pool in report["pools"]:
        key = "p99" if pool["kind"] == IN_DISTRIBUTION else "p01"
        cells = [pool["pipeline"], pool["signal"], pool["sample"], str(pool["items"])]
        cells.append(f"{key} ({pool['kind']})")
        cells += [f"{at_size(pool, s)[key]:.3f}" for s in shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(report: Mapping[str, Any], path: Path) -> Path:
    """Two panels against window size: in-distribution p99 (left), shifted p01 (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tritonctl.drift_window import SHIFTED as SHIFTED_LINE
    from tritonctl.plots import save

    fig, axes = plt.subplots(1, 2, figsize=(12.0, 5.0), dpi=100, sharey=True)
    panels = ((IN_DISTRIBUTION, "p99", axes[0]), (SHIFTED, "p01", axes[1]))
    for kind, key, ax in panels:
        for pool in (p for p in report["pools"] if p["kind"] == kind):
            sizes = [p["size"] for p in pool["curve"]]
            values = [max(p[key], 1e-3) for p in pool["curve"]]
            label = f"{pool['pipeline']} {pool['signal']}: {pool['sample']}"
            ax.plot(sizes, values, marker="o", ms=2.5, label=label)
        ax.axhline(STABLE, color="green", lw=1, ls=":", label=f"stable < {STABLE}")
        ax.axhline(SHIFTED_LINE, color="red", lw=1, ls=":", label=f"significant > {SHIFTED_LINE}")
        ax.axvline(report["min_samples"], color="black", lw=1, label=f"N = {report['min_samples']}")
        ax.set(xscale="log", yscale="log", xlabel="items in the window")
        ax.set_title(f"{kind} samples: {key} of {report['draws']} windows per size")
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("PSI against the reference")
    return save(fig, path)


def html_page(report: Mapping[str, Any], png: bytes) -> str:
    """A self-contained HTML report: the plot, the table, every pool's full curve."""
    import html

    from tritonctl.plots import img_tag

    rows = []
    for pool in report["pools"]:
        for point in pool["curve"]:
            cells = [pool["pipeline"], pool["signal"], pool["sample"], pool["kind"]]
            cells += [f"{int(point['size'])}"]
            cells += [f"{point[k]:.4f}" for k in ("mean", "p01", "p50", "p90", "p99", "p99_upper")]
            rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "pipeline",
            "signal",
            "sample",
            "kind",
            "items",
            "mean",
            "p01",
            "p50",
            "p90",
            "p99",
            "p99 (95 % upper bound)",
        )
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>drift: minimum window</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}</style></head><body>"
        f"<h1>PSI by window size: minimum N = {report['min_samples']}</h1>"
        f"<p>{report['draws']} windows drawn per size (seed {report['seed']}); N is the smallest "
        f"size from which on the 99th percentile of every in-distribution pool (its 95 % upper "
        f"confidence bound) stays under {report['stable_line']}.</p>{img_tag(png, 'PSI by window size')}"
        f"<table><tr>{head}</tr>{''.join(rows)}</table></body></html>"
    )
