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
            "p50_ms": _ms(f.p50_ms),
            "p95_ms": _ms(f.p95_ms),
            "p99_ms": _ms(f.p99_ms),
            "requests": f.requests,
            "failures": f.failures,
            "objectives": [r.as_dict() for r in self.results],
            **({"extra": self.extra} if self.extra else {}),
        }


Measure = Callable[[Candidate], tuple[Figures, dict[str, Any]]]
#: ``(incumbent, candidate, incumbent_first)`` -> incumbent's figures, candidate's, extras
MeasurePair = Callable[[Candidate, Candidate, bool], tuple[Figures, Figures, dict[str, Any]]]


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

    ``measure_pair(incumbent, candidate, incumbent_first)``, when given, measures the best
    configuration so far next to each candidate, and the candidate is judged against that fresh
    figure rather than one taken minutes earlier: load from other processes drifts, and a paired
    comparison cancels most of the drift. The order alternates from one pair to the next, so
    whichever runs first (on a warmer or a quieter machine) is not always the same side.
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
            incumbent_first = len(fresh) % 2 == 0
            before, figures, extra = measure_pair(
                dict(incumbent.candidate), dict(candidate), incumbent_first
            )
            extra = {
                **extra,
                "incumbent": incumbent.index,
                "incumbent_rps": round(before.rps, 2),
                "order": "incumbent first" if incumbent_first else "candidate first",
            }
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


@dataclass(frozen=True)
class Verdict:
    """Whether a change is kept after paired, order-alternating measurements, and why."""

    keep: bool
    reason: str
    ratios: tuple[float, ...]
    candidate_meets: int
    incumbent_meets: int
    rounds: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "keep": self.keep,
            "reason": self.reason,
            "throughput_ratios": [round(r, 3) for r in self.ratios],
            "candidate_meets_slo": f"{self.candidate_meets} of {self.rounds}",
            "incumbent_meets_slo": f"{self.incumbent_meets} of {self.rounds}",
        }


def keep_change(
    pairs: Sequence[tuple[Figures, Figures]], objectives: Objectives, min_gain: float
) -> Verdict:
    """The keep rule for a change measured as ``(incumbent, candidate)`` pairs.

    A change is kept only if the candidate meets the SLO in every round and is never slower
    than the incumbent by more than the noise margin ``min_gain`` in any round; and then either
    its median throughput gain is at least ``min_gain``, or the incumbent misses the SLO in most
    rounds (one noisy window that spikes past a latency limit does not count).
    """
    rounds = len(pairs)
    ratios = tuple(
        (cand.rps / inc.rps) if inc.rps > 0 else (float("inf") if cand.rps > 0 else 1.0)
        for inc, cand in pairs
    )

    def meets(figures: Figures) -> bool:
        return all(r.passed for r in evaluate(objectives, figures))

    cand_ok = sum(1 for _, cand in pairs if meets(cand))
    inc_ok = sum(1 for inc, _ in pairs if meets(inc))

    def verdict(keep: bool, reason: str) -> Verdict:
        return Verdict(keep, reason, ratios, cand_ok, inc_ok, rounds)

    if not rounds:
        return verdict(False, "not measured")
    if cand_ok < rounds:
        return verdict(False, f"the change misses the SLO in {rounds - cand_ok} of {rounds} rounds")
    worst = min(ratios)
    if worst < 1.0 - min_gain:
        return verdict(
            False,
            f"a throughput loss beyond noise: {worst:.2f}x the incumbent in one round "
            f"(noise margin {min_gain:.0%})",
        )
    median = _median(ratios)
    if median >= 1.0 + min_gain:
        return verdict(True, f"median throughput {median:.2f}x the incumbent")
    if inc_ok * 2 < rounds:
        return verdict(
            True,
            f"the incumbent misses the SLO in {rounds - inc_ok} of {rounds} rounds and the "
            f"change meets it in all, at {median:.2f}x the throughput",
        )
    return verdict(
        False, f"median throughput {median:.2f}x: below the {1 + min_gain:.2f}x that beats noise"
    )


def _ms(value: float) -> float | None:
    """Milliseconds for JSON: ``None`` for an unanswered percentile (inf)."""
    return None if value == float("inf") else round(value, 2)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def measure_rounds(
    measure_pair: MeasurePair, incumbent: Candidate, candidate: Candidate, rounds: int
) -> list[tuple[Figures, Figures]]:
    """``rounds`` pairs in ABBA order: incumbent first, then candidate first, and so on."""
    pairs = []
    for index in range(rounds):
        before, after, _ = measure_pair(dict(incumbent), dict(candidate), index % 2 == 0)
        pairs.append((before, after))
    return pairs


def confirm_knobs(
    measure_pair: MeasurePair,
    baseline: Candidate,
    best: Candidate,
    knob_order: Sequence[str],
    objectives: Objectives,
    *,
    rounds: int = 2,
    min_gain: float = 0.1,
    on_knob: Callable[[str, Verdict], None] | None = None,
) -> tuple[Candidate, list[dict[str, Any]]]:
    """Confirm each knob the search changed, one at a time, on top of those already confirmed.

    A bundle of changes can hide one that costs throughput behind one that gains more; tested
    one by one (in ``knob_order``, the order the search moved them), each must earn its place
    by :func:`keep_change`. Returns the confirmed candidate and one record per knob.
    """
    chosen = dict(baseline)
    records = []
    changed = [k for k in knob_order if best.get(k) != baseline.get(k)]
    changed += [k for k in best if best.get(k) != baseline.get(k) and k not in changed]
    for knob in changed:
        candidate = {**chosen, knob: best[knob]}
        pairs = measure_rounds(measure_pair, chosen, candidate, rounds)
        verdict = keep_change(pairs, objectives, min_gain)
        if verdict.keep:
            chosen = candidate
        records.append(
            {
                "knob": knob,
                "from": baseline.get(knob),
                "to": best[knob],
                "incumbent_rps": [round(a.rps, 2) for a, _ in pairs],
                "candidate_rps": [round(b.rps, 2) for _, b in pairs],
                "candidate_p99_ms": [_ms(b.p99_ms) for _, b in pairs],
                **verdict.as_dict(),
            }
        )
        if on_knob is not None:
            on_knob(knob, verdict)
    return chosen, records
