"""The bench's goals: ratios measured in every round, with an interval, judged against targets.

A ratio is computed within each round, from points measured minutes apart at most (the rounds
interleave every configuration), so machine drift between rounds does not enter it. Its value
is the median over rounds and its interval the min–max. A goal is **met only when the whole
interval clears the target**: one round below a ``≥`` target (or above a ``≤`` one) leaves it
"not met". A point that had errors voids every ratio it enters, in that round and therefore
the goal: a configuration that fails requests is reported, never ranked.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tritonctl.bench.loadgen import Point

#: one round's points by key, e.g. ``"short/b@16"`` -> Point
Round = dict[str, Point]


@dataclass(frozen=True)
class Goal:
    """A ratio of points with a target. ``kind`` ``min``: value ≥ target; ``max``: ≤ target."""

    number: str
    name: str
    target: float
    kind: str
    uses: tuple[str, ...]  # point keys the ratio reads
    compute: Callable[[Round], float | None]
    detail: str = ""
    unit: str = "×"


@dataclass
class Verdict:
    goal: Goal
    values: list[float] = field(default_factory=list)  # one per round that had every point
    errors: list[str] = field(default_factory=list)  # "round 2: short/b@16 had 3 errors: ..."
    missing_rounds: int = 0

    @property
    def value(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def low(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def high(self) -> float | None:
        return max(self.values) if self.values else None

    @property
    def met(self) -> bool | None:
        """True only when every round's value clears the target and no point had errors."""
        if self.errors:
            return False
        if not self.values or self.low is None or self.high is None:
            return None
        if self.goal.kind == "min":
            return self.low >= self.goal.target
        return self.high <= self.goal.target

    @property
    def status(self) -> str:
        if self.errors:
            return "void: errors"
        return {True: "met", False: "not met", None: "n/a"}[self.met]

    def interval(self, digits: int = 2) -> str:
        if self.low is None or self.high is None:
            return "n/a"
        return f"{self.low:.{digits}f}–{self.high:.{digits}f}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "goal": self.goal.number,
            "name": self.goal.name,
            "target": self.goal.target,
            "kind": self.goal.kind,
            "unit": self.goal.unit,
            "value": None if self.value is None else round(self.value, 4),
            "low": None if self.low is None else round(self.low, 4),
            "high": None if self.high is None else round(self.high, 4),
            "per_round": [round(v, 4) for v in self.values],
            "met": self.met,
            "status": self.status,
            "errors": self.errors,
            "uses": list(self.goal.uses),
            "detail": self.goal.detail,
        }


def judge(goal: Goal, rounds: Sequence[Round]) -> Verdict:
    """``goal`` over every round: the per-round values, or the errors that void it."""
    verdict = Verdict(goal)
    for number, points in enumerate(rounds, start=1):
        if any(key not in points for key in goal.uses):
            verdict.missing_rounds += 1
            continue
        failed = [points[k] for k in goal.uses if points[k].errors]
        for point in failed:
            verdict.errors.append(
                f"round {number}: {_key_of(points, point)} had {point.errors} errors:"
                f" {point.first_error}"
            )
        if failed:
            continue
        value = goal.compute(points)
        if value is not None:
            verdict.values.append(value)
    return verdict


def _key_of(points: Round, point: Point) -> str:
    return next((k for k, p in points.items() if p is point), point.config)


def ratio(numerator: str, denominator: str) -> Callable[[Round], float | None]:
    """Throughput of one point over another's."""

    def compute(points: Round) -> float | None:
        below = points[denominator].throughput
        return points[numerator].throughput / below if below > 0 else None

    return compute


def p50_gap(served: str, limit: str) -> Callable[[Round], float | None]:
    """Milliseconds by which a served p50 exceeds the in-process one."""

    def compute(points: Round) -> float | None:
        return points[served].p50_ms - points[limit].p50_ms

    return compute


def p95_no_worse(ours: str, theirs: str) -> Callable[[Round], float | None]:
    """p95 ratio, ours over theirs (≤ 1.0: equal or better)."""

    def compute(points: Round) -> float | None:
        other = points[theirs].p95_ms
        return points[ours].p95_ms / other if other > 0 else None

    return compute


def cpu_ratio(limit: str, served: str) -> Callable[[Round], float | None]:
    """CPU per item in process over CPU per item served (every process of the server and the
    client): the share of the machine's work that is the model's own. Other jobs on the cores
    change it much less than they change items/s."""

    def compute(points: Round) -> float | None:
        ours = points[served].extra.get("cpu_ms_per_item")
        best = points[limit].extra.get("cpu_ms_per_item")
        return float(best) / float(ours) if ours and best else None

    return compute


def summary(points: Sequence[Point]) -> dict[str, float]:
    """Median and min–max of throughput and percentiles over the rounds of one configuration."""
    out: dict[str, float] = {}
    for name in ("throughput", "p50_ms", "p95_ms", "p99_ms"):
        values = [float(getattr(p, name)) for p in points]
        out[name] = statistics.median(values)
        out[f"{name}_low"] = min(values)
        out[f"{name}_high"] = max(values)
    out["errors"] = float(sum(p.errors for p in points))
    out["rounds"] = float(len(points))
    return out


def bench_goals(corpora: Sequence[str], c16: int, bulk: Sequence[tuple[int, int]]) -> list[Goal]:
    """Issue 22's goals 1–4 and 6 as ratios of points (goal 5's accuracy is checked apart)."""
    goals: list[Goal] = []
    for corpus in corpora:
        k = f"{corpus}/"
        b16 = f"{k}b@{c16}"
        goals.append(
            Goal(
                f"1 ({corpus})",
                f"single texts at c={c16}: served / in-process limit",
                0.80,
                "min",
                (b16, f"{k}a-limit"),
                ratio(b16, f"{k}a-limit"),
                "texts/s of text_embedding over the best in-process layout with an ideal batcher",
            )
        )
        for items, clients in bulk:
            key = f"{k}b-bulk{items}@{clients}"
            goals.append(
                Goal(
                    f"2 ({corpus}, {items}/request)",
                    f"bulk, {items} texts per request at c={clients}: served / limit",
                    0.90,
                    "min",
                    (key, f"{k}a-limit"),
                    ratio(key, f"{k}a-limit"),
                )
            )
        goals.append(
            Goal(
                f"3 ({corpus})",
                "c=1 p50: served − in-process single request",
                1.0,
                "max",
                (f"{k}b@1", f"{k}a-single"),
                p50_gap(f"{k}b@1", f"{k}a-single"),
                "same committed config as goals 1–2",
                unit=" ms",
            )
        )
        for letter, peer in (("d", "FastAPI"), ("f", "LitServe")):
            other = f"{k}{letter}@{c16}"
            goals.append(
                Goal(
                    f"4 ({corpus}, {peer})",
                    f"c={c16} throughput: Triton / {peer}",
                    1.3,
                    "min",
                    (b16, other),
                    ratio(b16, other),
                    "same ONNX file, tokenizer and buckets",
                )
            )
            goals.append(
                Goal(
                    f"4 ({corpus}, {peer} p95)",
                    f"c={c16} p95: Triton / {peer} (equal or better)",
                    1.0,
                    "max",
                    (b16, other),
                    p95_no_worse(b16, other),
                )
            )
        goals.append(
            Goal(
                f"5 ({corpus})",
                f"c={c16} throughput: INT8 / FP32 ensemble",
                2.0,
                "min",
                (f"{k}e@{c16}", b16),
                ratio(f"{k}e@{c16}", b16),
            )
        )
    d16 = f"digits/b@{c16}"
    goals.append(
        Goal(
            "6 (digits)",
            f"digits at c={c16}: served / in-process limit (decode + CNN)",
            0.80,
            "min",
            (d16, "digits/a-limit"),
            ratio(d16, "digits/a-limit"),
        )
    )
    goals.append(
        Goal(
            "6 (digits c=1)",
            "digits c=1 p50: served − in-process single image",
            1.0,
            "max",
            ("digits/b@1", "digits/a-single"),
            p50_gap("digits/b@1", "digits/a-single"),
            unit=" ms",
        )
    )
    return goals


def informational(
    corpora: Sequence[str], c16: int, bulk: Sequence[tuple[int, int]] = ()
) -> list[Goal]:
    """Ratios shown without a target of their own: what dynamic batching adds, and the CPU
    efficiency of each served point against its limit (goals 1, 2 and 6 in CPU terms)."""
    out = []
    for corpus in corpora:
        b16, limit = f"{corpus}/b@{c16}", f"{corpus}/a-limit"
        out.append(
            Goal(
                f"info ({corpus})",
                f"c={c16}: with / without dynamic batching",
                0.0,
                "min",
                (b16, f"{corpus}/c@{c16}"),
                ratio(b16, f"{corpus}/c@{c16}"),
            )
        )
        served = [b16] + [f"{corpus}/b-bulk{k}@{n}" for k, n in bulk]
        for key in served:
            out.append(
                Goal(
                    f"info ({corpus} CPU)",
                    f"CPU per text: limit / {key.split('/', 1)[1]}",
                    0.0,
                    "min",
                    (key, limit),
                    cpu_ratio(limit, key),
                )
            )
    out.append(
        Goal(
            "info (digits CPU)",
            f"CPU per image: limit / b@{c16}",
            0.0,
            "min",
            (f"digits/b@{c16}", "digits/a-limit"),
            cpu_ratio("digits/a-limit", f"digits/b@{c16}"),
        )
    )
    return out
