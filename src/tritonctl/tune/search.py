"""The tuner's search: coordinate descent over a few knobs, each trial a short measured run.

A full grid over queue delay × preferred batch × max batch × instances × threads × the Python
models' instances is thousands of runs; coordinate descent moves one knob at a time from the
best configuration so far and stops when a whole pass changes nothing, so it needs roughly the
sum of the knobs' value counts per pass instead of their product. Every candidate is ranked by
one rule: configurations that meet the SLO beat those that do not; among those that meet it,
higher throughput wins; among those that do not, the smaller miss wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tritonctl.loadtest.slo import Figures, ObjectiveResult, Objectives, evaluate

Candidate = dict[str, Any]


@dataclass(frozen=True)
class Knob:
    """One setting the tuner may change, and the values it tries."""

    name: str
    values: tuple[Any, ...]
    description: str = ""


@dataclass
class Trial:
    """One measured candidate."""

    index: int
    candidate: Candidate
    figures: Figures
    results: list[ObjectiveResult]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def meets_slo(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def miss(self) -> float:
        """Sum of the relative misses (0 when the SLO holds)."""
        return sum(min(r.miss_percent, 1e6) for r in self.results if not r.passed)

    def rank(self) -> tuple[int, float]:
        if self.meets_slo:
            return (1, self.figures.rps)
        return (0, -self.miss)

    def as_dict(self) -> dict[str, Any]:
        f = self.figures
        return {
            "index": self.index,
            "candidate": dict(self.candidate),
            "meets_slo": self.meets_slo,
            "throughput": round(f.rps, 2),
            "p50_ms": round(f.p50_ms, 3),
            "p95_ms": round(f.p95_ms, 3),
            "p99_ms": round(f.p99_ms, 3),
            "requests": f.requests,
            "failures": f.failures,
            "objectives": [r.as_dict() for r in self.results],
            **({"extra": self.extra} if self.extra else {}),
        }


Measure = Callable[[Candidate], tuple[Figures, dict[str, Any]]]
MeasurePair = Callable[[Candidate, Candidate], tuple[Figures, Figures, dict[str, Any]]]


def _key(candidate: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(candidate.items()))


@dataclass
class SearchResult:
    trials: list[Trial]
    baseline: Trial
    best: Trial
    passes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "trials": [t.as_dict() for t in self.trials],
            "baseline": self.baseline.index,
            "best": self.best.index,
            "passes": self.passes,
        }


def coordinate_descent(
    knobs: Sequence[Knob],
    start: Candidate,
    measure: Measure,
    objectives: Objectives,
    *,
    max_passes: int = 2,
    max_trials: int | None = None,
    min_gain: float = 0.0,
    on_trial: Callable[[Trial], None] | None = None,
    measure_pair: MeasurePair | None = None,
) -> SearchResult:
    """Improve ``start`` one knob at a time; ``measure`` runs a candidate and returns its figures.

    Candidates already measured are not measured again. ``max_trials`` caps the runs.
    ``min_gain`` (e.g. 0.03) is the relative throughput a candidate must add to replace the best
    one when both meet the SLO: on a noisy machine it keeps the search from chasing noise.

    ``measure_pair(incumbent, candidate)``, when given, measures the best configuration so far
    right before each candidate, and the candidate is judged against that fresh figure rather
    than one taken minutes earlier: load from other processes drifts, and a paired comparison
    cancels most of the drift.
    """
    trials: list[Trial] = []
    seen: dict[tuple[tuple[str, Any], ...], Trial] = {}
    fresh: dict[int, Trial] = {}  # trial index -> the incumbent as measured just before it

    def run(candidate: Candidate, incumbent: Trial | None = None) -> Trial | None:
        key = _key(candidate)
        if key in seen:
            return seen[key]
        if max_trials is not None and len(trials) >= max_trials:
            return None
        if measure_pair is not None and incumbent is not None:
            before, figures, extra = measure_pair(dict(incumbent.candidate), dict(candidate))
            extra = {**extra, "incumbent": incumbent.index, "incumbent_rps": round(before.rps, 2)}
            if before.rps > 0:
                extra["paired_ratio"] = round(figures.rps / before.rps, 3)
        else:
            figures, extra = measure(dict(candidate))
            before = None
        trial = Trial(len(trials), dict(candidate), figures, evaluate(objectives, figures), extra)
        trials.append(trial)
        seen[key] = trial
        if before is not None and incumbent is not None:
            fresh[trial.index] = Trial(
                incumbent.index, incumbent.candidate, before, evaluate(objectives, before)
            )
        if on_trial is not None:
            on_trial(trial)
        return trial

    baseline = run(dict(start))
    assert baseline is not None, "max_trials must allow the baseline"
    best = baseline
    passes = 0
    for _ in range(max_passes):
        passes += 1
        changed = False
        for knob in knobs:
            for value in knob.values:
                if best.candidate.get(knob.name) == value:
                    continue
                first_new = len(trials)
                trial = run({**best.candidate, knob.name: value}, best)
                if trial is None:
                    break
                # A fresh pair is judged on its pair; a cached trial against the stored best.
                reference = fresh.get(trial.index, best) if trial.index >= first_new else best
                if better(trial, reference, min_gain):
                    best, changed = trial, True
        if not changed or (max_trials is not None and len(trials) >= max_trials):
            break
    return SearchResult(trials, baseline, best, passes)


def better(trial: Trial, best: Trial, min_gain: float = 0.0) -> bool:
    """Whether ``trial`` should replace ``best``."""
    if trial.meets_slo and best.meets_slo:
        return trial.figures.rps > best.figures.rps * (1.0 + min_gain)
    if not trial.meets_slo and not best.meets_slo:
        # Both miss: move only for a clearly smaller miss, not for noise.
        return trial.miss < best.miss * (1.0 - min_gain)
    return trial.rank() > best.rank()


def grid_size(knobs: Sequence[Knob]) -> int:
    """How many runs the full grid would need (for the report)."""
    size = 1
    for knob in knobs:
        size *= max(len(knob.values), 1)
    return size
