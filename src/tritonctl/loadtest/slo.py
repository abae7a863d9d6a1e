"""SLO profiles (YAML in ``loadtests/slo/``) and checking measured figures against them.

A profile names the load to apply and the objectives it must meet::

    model: text_embedding
    protocol: grpc
    load: {mode: open, rate_rps: 20, arrivals: poisson, warmup_s: 3, duration_s: 10}
    objectives:
      p50_ms: 60
      p95_ms: 120
      p99_ms: 200
      max_error_ratio: 0.0
      min_rps: 20
    capacity: {rates: [10, 20, 40], repeats: 3, required: 2}

``mode: open`` sends requests at ``rate_rps`` whatever the answers (Poisson or constant
arrivals), and times each request from when it was meant to be sent, so a slow server cannot
slow the load down and hide its queue. ``mode: closed`` runs ``users`` clients that each send
their next request when the previous one is answered (what perf_analyzer's concurrency does).

Every run is judged on an error objective, 0 errors unless the profile sets
``max_error_ratio``, and on at least one successful request, so a run whose requests all fail
can never pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

SHAPES = ("constant", "step", "ramp")
PROTOCOLS = ("grpc", "http")
MODES = ("closed", "open")
ARRIVALS = ("poisson", "constant")
DEFAULT_CAPACITY_USERS = (1, 2, 4, 8, 16, 32)
LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms")


class ProfileError(ValueError):
    """An SLO profile that is missing a field or holds an impossible value."""


@dataclass(frozen=True)
class Objectives:
    """Limits a run must stay within; ``None`` leaves that objective out.

    The error objective defaults to 0: a failed request is a missed objective unless the
    profile allows some (``max_error_ratio: 0.01``), or turns the check off (``1.0``).
    """

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_error_ratio: float | None = 0.0
    min_rps: float | None = None

    @property
    def latency_limit_ms(self) -> float | None:
        """The largest latency objective, if any is set."""
        limits = [v for v in (self.p50_ms, self.p95_ms, self.p99_ms) if v is not None]
        return max(limits) if limits else None


@dataclass(frozen=True)
class CapacitySearch:
    """How ``--find-capacity`` raises the load.

    Open loop (the default): arrival rates, ``rates`` if given, else from ``start_rps``
    multiplied by ``factor`` until a rate breaks, then ``refine`` bisections between the last
    rate that held and the first that broke. Each rate runs up to ``repeats`` times and holds
    when ``required`` runs meet every objective. Closed loop: the ``users`` counts, in order.
    """

    rates: tuple[float, ...] = ()
    start_rps: float = 10.0
    factor: float = 2.0
    max_steps: int = 8
    refine: int = 2
    repeats: int = 3
    required: int = 2
    users: tuple[int, ...] = DEFAULT_CAPACITY_USERS

    def problems(self) -> list[str]:
        problems = []
        if any(r <= 0 for r in self.rates):
            problems.append("capacity.rates must be positive request rates")
        if self.start_rps <= 0:
            problems.append(f"capacity.start_rps must be positive (got {self.start_rps})")
        if self.factor <= 1:
            problems.append(f"capacity.factor must be above 1 (got {self.factor})")
        if self.max_steps < 1 or self.refine < 0:
            problems.append("capacity.max_steps must be at least 1 and refine at least 0")
        if not 1 <= self.required <= self.repeats:
            problems.append(
                f"capacity.required ({self.required}) must be between 1 and repeats "
                f"({self.repeats})"
            )
        if not self.users or any(u < 1 for u in self.users):
            problems.append("capacity.users must list positive user counts")
        return problems


@dataclass(frozen=True)
class SloProfile:
    name: str = "adhoc"
    model: str = "text_embedding"
    protocol: str = "grpc"
    mode: str = "closed"
    users: int = 4
    rate_rps: float | None = None
    arrivals: str = "poisson"
    spawn_rate: float = 4.0
    warmup_s: float = 3.0
    duration_s: float = 10.0
    drain_s: float | None = None
    shape: str = "constant"
    objectives: Objectives = field(default_factory=Objectives)
    capacity: CapacitySearch = field(default_factory=CapacitySearch)
    source: str = ""

    @property
    def open_loop(self) -> bool:
        return self.mode == "open"

    @property
    def drain(self) -> float:
        """Seconds the load goes on after the measured window so its last requests can finish.

        A request sent in the window and still unanswered then counts as slower than any
        objective. Default: 1.5 x the largest latency objective, between 1 and 30 s (2 s
        without latency objectives).
        """
        if self.drain_s is not None:
            return self.drain_s
        limit = self.objectives.latency_limit_ms
        if limit is None:
            return 2.0
        return min(max(1.5 * limit / 1000.0, 1.0), 30.0)

    @property
    def load_label(self) -> str:
        """``open loop, 20 req/s (poisson)`` or ``closed loop, 4 users``."""
        if self.open_loop:
            return f"open loop, {self.rate_rps:g} req/s ({self.arrivals} arrivals)"
        return f"closed loop, {self.users} users"

    def with_overrides(self, **changes: Any) -> SloProfile:
        """A copy with the given fields changed (``None`` values are ignored).

        Setting ``rate_rps`` switches to open loop; ``capacity_*`` keys change the search.
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        objective_keys = set(Objectives.__dataclass_fields__)
        objective_changes = {k: changes.pop(k) for k in list(changes) if k in objective_keys}
        capacity_changes = {
            k.removeprefix("capacity_"): changes.pop(k)
            for k in list(changes)
            if k.startswith("capacity_")
        }
        if "rate_rps" in changes and "mode" not in changes:
            changes["mode"] = "open"
        profile = replace(self, **changes)
        if objective_changes:
            profile = replace(profile, objectives=replace(profile.objectives, **objective_changes))
        if capacity_changes:
            profile = replace(profile, capacity=replace(profile.capacity, **capacity_changes))
        profile.validate()
        return profile

    def validate(self) -> None:
        problems = []
        # Command-line overrides skip the YAML parser's check: NaN passes every "<= 0" test.
        numbers = {
            "users": self.users, "rate_rps": self.rate_rps, "spawn_rate": self.spawn_rate,
            "warmup_s": self.warmup_s, "duration_s": self.duration_s, "drain_s": self.drain_s,
            **asdict(self.objectives),
        }  # fmt: skip
        for key, value in numbers.items():
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{key} must be a finite number (got {value})")
        if problems:
            where = f"{self.source}: " if self.source else ""
            raise ProfileError(where + "; ".join(problems))
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.arrivals not in ARRIVALS:
            problems.append(f"arrivals {self.arrivals!r} is not one of {', '.join(ARRIVALS)}")
        if self.shape not in SHAPES:
            problems.append(f"shape {self.shape!r} is not one of {', '.join(SHAPES)}")
        if self.mode == "open" and (self.rate_rps is None or self.rate_rps <= 0):
            problems.append(f"open loop needs a positive rate_rps (got {self.rate_rps})")
        if self.mode == "open" and self.shape != "constant":
            problems.append("open loop sends at a constant rate: use shape: constant")
        if self.users < 1:
            problems.append(f"users must be at least 1 (got {self.users})")
        if self.spawn_rate <= 0:
            problems.append(f"spawn_rate must be positive (got {self.spawn_rate})")
        if self.duration_s <= 0:
            problems.append(f"duration_s must be positive (got {self.duration_s})")
        if self.warmup_s < 0:
            problems.append(f"warmup_s cannot be negative (got {self.warmup_s})")
        if self.drain_s is not None and self.drain_s < 0:
            problems.append(f"drain_s cannot be negative (got {self.drain_s})")
        for key, value in asdict(self.objectives).items():
            if value is not None and (not isinstance(value, int | float) or value < 0):
                problems.append(f"objectives.{key} must be a non-negative number (got {value!r})")
        ratio = self.objectives.max_error_ratio
        if ratio is not None and ratio > 1:
            problems.append(f"objectives.max_error_ratio is a ratio in 0..1 (got {ratio})")
        problems += self.capacity.problems()
        if problems:
            where = f"{self.source}: " if self.source else ""
            raise ProfileError(where + "; ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["capacity"]["rates"] = list(self.capacity.rates)
        data["capacity"]["users"] = list(self.capacity.users)
        data["drain_s"] = self.drain
        return data


def _number(section: Mapping[str, Any], key: str, where: str) -> float | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"{where}: {key} must be a number, got {value!r}")
    if not math.isfinite(value):  # YAML's .nan/.inf: no objective or rate can be judged by it
        raise ProfileError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _numbers(section: Mapping[str, Any], keys: Sequence[str], where: str) -> list[float]:
    values = section.get(keys[0]) if keys else None
    if values is None:
        return []
    if not isinstance(values, list) or not values:
        raise ProfileError(f"{where}: {keys[0]} must be a list of numbers, got {values!r}")
    return [v for v in (_number({"x": v}, "x", where) for v in values) if v is not None]


def _section(data: Mapping[str, Any], key: str, known: set[str], where: str) -> Mapping[str, Any]:
    section = data.get(key) or {}
    if not isinstance(section, Mapping):
        raise ProfileError(f"{where}: {key} must be a mapping")
    extra = sorted(set(section) - known)
    if extra:
        raise ProfileError(f"{where}: unknown key(s) in {key}: {', '.join(extra)}")
    return section


def parse_profile(data: Mapping[str, Any], source: str = "") -> SloProfile:
    """Build a profile from parsed YAML; unknown keys are an error (they are usually typos)."""
    where = source or "profile"
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: expected a mapping at the top level")
    known = {"name", "model", "protocol", "load", "objectives", "capacity", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    load_keys = {
        "mode", "users", "rate_rps", "arrivals", "spawn_rate", "warmup_s", "duration_s",
        "drain_s", "shape",
    }  # fmt: skip
    load = _section(data, "load", load_keys, where)
    objectives = _section(data, "objectives", set(Objectives.__dataclass_fields__), where)
    capacity = _section(data, "capacity", set(CapacitySearch.__dataclass_fields__), where)
    # An objective written with its value left out (``max_error_ratio:``) is a mistake, not a
    # request to drop it: as None it would turn the error check off, which is only ever done
    # on purpose with 1.0.
    blank = sorted(k for k, v in objectives.items() if v is None)
    if blank:
        raise ProfileError(
            f"{where}: objectives.{', objectives.'.join(blank)} has no value (give a number; "
            "without the key a latency or throughput objective is left out, and errors must be 0)"
        )
    defaults = SloProfile()
    users = _number(load, "users", where)
    rate = _number(load, "rate_rps", where)
    search = CapacitySearch()
    profile = SloProfile(
        name=str(data.get("name") or (Path(source).stem if source else "adhoc")),
        model=str(data.get("model", defaults.model)),
        protocol=str(data.get("protocol", defaults.protocol)).lower(),
        mode=str(load.get("mode", "open" if rate is not None else "closed")).lower(),
        users=int(users) if users is not None else defaults.users,
        rate_rps=rate,
        arrivals=str(load.get("arrivals", defaults.arrivals)).lower(),
        spawn_rate=_number(load, "spawn_rate", where) or float(users or defaults.spawn_rate),
        warmup_s=_num_or(_number(load, "warmup_s", where), defaults.warmup_s),
        duration_s=_num_or(_number(load, "duration_s", where), defaults.duration_s),
        drain_s=_number(load, "drain_s", where),
        shape=str(load.get("shape", defaults.shape)).lower(),
        # Only the keys the profile names: an absent max_error_ratio keeps its default of 0.
        objectives=Objectives(**{k: _number(objectives, k, where) for k in objectives}),
        capacity=CapacitySearch(
            rates=tuple(_numbers(capacity, ["rates"], where)),
            start_rps=_num_or(_number(capacity, "start_rps", where), search.start_rps),
            factor=_num_or(_number(capacity, "factor", where), search.factor),
            max_steps=int(_num_or(_number(capacity, "max_steps", where), search.max_steps)),
            refine=int(_num_or(_number(capacity, "refine", where), search.refine)),
            repeats=int(_num_or(_number(capacity, "repeats", where), search.repeats)),
            required=int(_num_or(_number(capacity, "required", where), search.required)),
            users=tuple(int(u) for u in _numbers(capacity, ["users"], where)) or search.users,
        ),
        source=source,
    )
    profile.validate()
    return profile


def _num_or(value: float | None, default: float) -> float:
    return default if value is None else value


def load_profile(path: str | Path) -> SloProfile:
    """Read an SLO profile YAML file."""
    path = Path(path)
    if not path.exists():
        raise ProfileError(f"SLO profile not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: invalid YAML: {error}") from None
    return parse_profile(data or {}, str(path))


@dataclass(frozen=True)
class Figures:
    """What a run measured in its window: the numbers objectives are checked against.

    ``requests`` were sent in the window; ``failures`` of them got an error (or, for the
    tuner's own load generator, no answer). ``rps`` counts successful requests only. The
    percentiles are exact, over every request that did not fail: answered ones by their
    latency, ones still unanswered when the run ended as slower than any of them (so a
    percentile that lands on one is ``inf``).
    """

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float = 0.0
    offered_rps: float = 0.0
    unanswered: int = 0
    max_ms: float = 0.0

    @property
    def succeeded(self) -> int:
        return self.requests - self.failures - self.unanswered

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0


@dataclass(frozen=True)
class ObjectiveResult:
    """One objective: its limit, what was measured, whether it held, and a one-line verdict."""

    key: str
    label: str
    limit: float
    actual: float
    passed: bool
    unit: str
    kind: str  # "max" (actual must be <= limit) or "min" (actual must be >= limit)

    @property
    def miss_percent(self) -> float:
        """How far past the limit, in percent of the limit (0 when it held)."""
        if self.passed:
            return 0.0
        if self.limit == 0 or math.isinf(self.actual):
            return math.inf
        return abs(self.actual - self.limit) / self.limit * 100.0

    @property
    def message(self) -> str:
        actual, limit = _fmt(self.actual, self.unit), _fmt(self.limit, self.unit)
        if self.passed:
            sign = "≤" if self.kind == "max" else "≥"
            return f"{self.label} {actual} {sign} {limit}"
        sign = ">" if self.kind == "max" else "<"
        miss = self.miss_percent
        by = "+inf%" if math.isinf(miss) else f"{'+' if self.kind == 'max' else '-'}{miss:.0f}%"
        return f"{self.label} {actual} {sign} {limit} ({by})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "objective": self.key,
            "label": self.label,
            "limit": self.limit,
            "actual": _finite(self.actual, 6),
            "unit": self.unit,
            "passed": self.passed,
            "miss_percent": None if self.passed else _finite(self.miss_percent),
            "message": self.message,
        }


def _finite(value: float, digits: int = 2) -> float | None:
    """``value`` rounded, or ``None`` where JSON has no number for it (inf, NaN)."""
    return None if math.isinf(value) or math.isnan(value) else round(value, digits)


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        if math.isinf(value):
            return "unanswered"
        text = f"{value:.3f}".rstrip("0").rstrip(".") if value < 1 else f"{value:.1f}".rstrip("0")
        return f"{text.rstrip('.')} ms"
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    if unit == "count":
        return f"{value:.0f}"
    return f"{value:.1f} req/s"


def evaluate(
    objectives: Objectives, figures: Figures, *, skip: Sequence[str] = ()
) -> list[ObjectiveResult]:
    """Check ``figures`` against every objective that is set (and not in ``skip``).

    A run with no successful request fails, whatever the objectives: "nothing failed" is not
    "nothing measured". Without a latency objective, a request never answered fails the run. When every request failed, the latency objectives are left out (there
    is no latency); unanswered requests do have one, longer than any objective.
    """
    checks: list[tuple[str, str, float, str, str]] = [
        ("p50_ms", "p50", figures.p50_ms, "ms", "max"),
        ("p95_ms", "p95", figures.p95_ms, "ms", "max"),
        ("p99_ms", "p99", figures.p99_ms, "ms", "max"),
        ("max_error_ratio", "error ratio", figures.error_ratio, "ratio", "max"),
        ("min_rps", "throughput", figures.rps, "rps", "min"),
    ]
    results = []
    if figures.succeeded <= 0:
        results.append(
            ObjectiveResult("succeeded", "successful requests", 1, 0, False, "count", "min")
        )
    timed = any(getattr(objectives, k) is not None and k not in skip for k in LATENCY_KEYS)
    if figures.unanswered and not timed:
        # A latency objective judges an unanswered request as slower than its limit; without
        # one nothing would: an open-loop rate far past capacity (most requests still queued
        # when the run ends) would pass, and --find-capacity would record it as held.
        results.append(
            ObjectiveResult(
                "unanswered", "unanswered requests", 0, figures.unanswered, False, "count", "max"
            )
        )
    for key, label, actual, unit, kind in checks:
        limit = getattr(objectives, key)
        if limit is None or key in skip:
            continue
        if key in LATENCY_KEYS and figures.succeeded + figures.unanswered <= 0:
            continue  # every request failed: there is no latency to judge
        passed = actual <= limit if kind == "max" else actual >= limit
        results.append(ObjectiveResult(key, label, float(limit), float(actual), passed, unit, kind))
    return results


def objectives_set(objectives: Objectives) -> list[str]:
    """Labels of the latency and throughput objectives that are set (the error one always is)."""
    names = {"p50_ms": "p50", "p95_ms": "p95", "p99_ms": "p99", "min_rps": "throughput"}
    return [label for key, label in names.items() if getattr(objectives, key) is not None]
