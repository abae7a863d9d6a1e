"""Drift scores over a sliding window: PSI against a reference histogram, low-confidence share.

This file is pure numpy on purpose: the Triton Python models that export the drift gauges
(``pooling``, ``classify_postprocess``, ``image_preprocess``) import it from their version
folder, where ``python_backends/<model>/drift_window.py`` is a symlink to this file that
``sync_python_backends`` copies as a plain file. ``tritonctl drift`` scores offline samples with
the same functions, so the offline and the live figures agree.

PSI (population stability index) of a live histogram ``q`` against the reference ``p``::

    PSI = sum_i (q_i - p_i) * ln(q_i / p_i)

with both smoothed by ``epsilon`` so an empty bin does not give an infinite score. The usual
reading: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a significant one.
"""

import time

import numpy as np

EPSILON = 1e-4
STABLE, SHIFTED = 0.1, 0.25
#: No score below this many items in a window: the smallest window whose in-distribution PSI
#: stays under STABLE at the 99th percentile (its 95 % upper confidence bound), for both
#: pipelines and every signal (``scripts/drift_min_samples.py``, docs/monitoring.md). Three
#: ordinary sentences scored 5.7.
MIN_SAMPLES = 448


class DriftError(ValueError):
    """A sample or a profile that cannot be scored; the message says why."""


def fractions(counts, epsilon=EPSILON):
    """Counts (or fractions) per bin → epsilon-smoothed fractions that sum to 1."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    share = counts / total if total > 0 else np.full(len(counts), 1.0 / len(counts))
    share = share + epsilon
    return share / share.sum()


def psi(reference, actual, epsilon=EPSILON):
    """Population stability index of ``actual`` against ``reference`` (counts or fractions)."""
    p, q = fractions(reference, epsilon), fractions(actual, epsilon)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in bins: reference {p.shape}, actual {q.shape}")
    return float(np.sum((q - p) * np.log(q / p)))


def bin_counts(values, edges):
    """float ``[N]`` → int ``[N, B]``: a one-hot row per value over the bins ``edges`` (B+1).

    Values outside the edges go to the first or last bin, as a histogram over a closed range.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    edges = np.asarray(edges, dtype=np.float64)
    bins = len(edges) - 1
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    rows = np.zeros((len(values), bins), dtype=np.int64)
    rows[np.arange(len(values)), index] = 1
    return rows


def pixel_counts(images, edges):
    """float ``[N, ...]`` images → int ``[N, B]``: each image's pixel histogram over ``edges``."""
    images = np.asarray(images, dtype=np.float64)
    flat = images.reshape(len(images), -1)
    bins = len(edges) - 1
    index = np.clip(np.searchsorted(edges, flat, side="right") - 1, 0, bins - 1)
    offsets = index + bins * np.arange(len(flat))[:, None]
    return np.bincount(offsets.reshape(-1), minlength=len(flat) * bins).reshape(len(flat), bins)


class DriftWindow:
    """The last ``size`` items' histogram rows and low-confidence flags, in a numpy ring buffer.

    ``add`` is O(new items x bins): the window's total histogram is kept as a running sum, the
    rows that fall out of the ring are subtracted, the new ones added.
    """

    def __init__(self, reference, size=512):
        self.reference = np.asarray(reference, dtype=np.float64)
        self.size = int(size)
        bins = len(self.reference)
        self.rows = np.zeros((self.size, bins), dtype=np.int64)
        self.low = np.zeros(self.size, dtype=bool)
        self.total = np.zeros(bins, dtype=np.int64)
        self.position = 0
        self.count = 0

    def add(self, rows, low=None):
        """Add items: ``rows`` int ``[N, B]`` (see ``bin_counts``), ``low`` bool ``[N]``."""
        rows = np.asarray(rows, dtype=np.int64)
        low = np.zeros(len(rows), dtype=bool) if low is None else np.asarray(low, dtype=bool)
        if len(rows) > self.size:  # only the newest items fit
            rows, low = rows[-self.size :], low[-self.size :]
        slots = (self.position + np.arange(len(rows))) % self.size
        self.total -= self.rows[slots].sum(axis=0)
        self.rows[slots] = rows
        self.low[slots] = low
        self.total += rows.sum(axis=0)
        self.position = (self.position + len(rows)) % self.size
        self.count = min(self.count + len(rows), self.size)

    def psi(self):
        return psi(self.reference, self.total) if self.count else 0.0

    def low_ratio(self):
        return float(self.low[: self.count].mean()) if self.count else 0.0


class Throttle:
    """True every ``every`` items or ``seconds`` seconds, whichever comes first."""

    def __init__(self, every=32, seconds=2.0, clock=time.monotonic):
        self.every, self.seconds, self.clock = int(every), float(seconds), clock
        self.pending = 0
        self.last = clock()

    def due(self, items):
        self.pending += int(items)
        now = self.clock()
        if self.pending >= self.every or now - self.last >= self.seconds:
            self.pending, self.last = 0, now
            return True
        return False


def cosine_to(embeddings, centroid):
    """Cosine similarity of each row of ``embeddings`` ``[N, D]`` to ``centroid`` ``[D]``."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    centroid = np.asarray(centroid, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1) * np.linalg.norm(centroid)
    return embeddings @ centroid / np.maximum(norms, 1e-12)


def softmax_max(logits):
    """Highest softmax probability of each row of ``logits`` ``[N, C]``."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).max(axis=1)


# --- live monitoring inside a Triton Python model --------------------------------------------

PSI_METRIC = "tritonctl_drift_psi"
LOW_METRIC = "tritonctl_low_confidence_ratio"
SAMPLES_METRIC = "tritonctl_drift_window_samples"
MIN_SAMPLES_METRIC = "tritonctl_drift_min_samples"
_FAMILIES: dict = {}  # one MetricFamily per name in a stub process, shared by its monitors


def load_json(path):
    import json

    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def histogram(data):
    """A profile's ``{"bin_edges", "fractions"}`` → (edges, fractions) arrays."""
    edges = np.asarray(data["bin_edges"], dtype=np.float64)
    values = np.asarray(data.get("fractions", data.get("counts")), dtype=np.float64)
    return edges, values / values.sum()


def quantile(edges, fractions, q):
    """The value below which a share ``q`` of a histogram lies (linear within a bin)."""
    cdf = np.concatenate([[0.0], np.cumsum(fractions)])
    return float(np.interp(q, cdf, edges))


class Monitor:
    """One drift signal of one model: a ``DriftWindow`` whose scores go to Triton gauges.

    ``pb_utils`` is the Triton module (passed in so this file imports outside Triton too).
    The gauges are ``tritonctl_drift_psi{model, signal}``, ``tritonctl_low_confidence_ratio
    {model}`` (if ``low_confidence``), ``tritonctl_drift_window_samples{model, signal}`` and
    ``tritonctl_drift_min_samples{model, signal}``.

    Until the window holds ``min_samples`` items the scores are NaN (a handful of items is
    sampling noise, not drift) and the samples gauge is set on every request, so it shows how
    far the warm-up has got; from then on the gauges are set every ``every`` items or
    ``seconds`` seconds, not on every request.
    """

    def __init__(
        self,
        pb_utils,
        model,
        signal,
        reference,
        window=512,
        every=32,
        seconds=2.0,
        low_confidence=False,
        min_samples=MIN_SAMPLES,
    ):
        if int(window) < int(min_samples):
            raise ValueError(
                f"drift window of {window} items is smaller than the {min_samples} a score "
                f"needs: {model}'s drift gauges would never be set (drift_window >= {min_samples})"
            )
        self.window = DriftWindow(reference, window)
        self.throttle = Throttle(every, seconds)
        self.min_samples = int(min_samples)
        labels = {"model": model, "signal": signal}
        self.psi_gauge = self._family(pb_utils, PSI_METRIC, "PSI of the live window").Metric(
            labels=labels
        )
        self.samples_gauge = self._family(
            pb_utils, SAMPLES_METRIC, "items in the drift window"
        ).Metric(labels=labels)
        self.low_gauge = None
        if low_confidence:
            self.low_gauge = self._family(
                pb_utils, LOW_METRIC, "share of low-confidence items in the live window"
            ).Metric(labels={"model": model})
        self._family(
            pb_utils, MIN_SAMPLES_METRIC, "items the drift window needs before it is scored"
        ).Metric(labels=labels).set(float(self.min_samples))
        self.publish()  # NaN scores and 0 samples: exported, and warming, from the start

    @staticmethod
    def _family(pb_utils, name, description):
        if name not in _FAMILIES:
            _FAMILIES[name] = pb_utils.MetricFamily(
                name=name, description=description, kind=pb_utils.MetricFamily.GAUGE
            )
        return _FAMILIES[name]

    @property
    def ready(self):
        return self.window.count >= self.min_samples

    def observe(self, rows, low=None):
        """Add items (``bin_counts``/``pixel_counts`` rows); publish the gauges when due."""
        warming = not self.ready
        self.window.add(rows, low)
        if self.throttle.due(len(rows)) or warming:
            self.publish()

    def publish(self):
        ready = self.ready
        self.psi_gauge.set(self.window.psi() if ready else float("nan"))
        self.samples_gauge.set(float(self.window.count))
        if self.low_gauge is not None:
            self.low_gauge.set(self.window.low_ratio() if ready else float("nan"))
