"""SLO profiles (YAML in ``loadtests/slo/``) and checking measured figures against them.

A profile names the load to apply and the objectives it must meet::

    model: text_embedding
    protocol: grpc
    load: {users: 4, spawn_rate: 4, warmup_s: 3, duration_s: 10, shape: constant}
    objectives:
      p50_ms: 60
      p95_ms: 120
      p99_ms: 200
      max_error_ratio: 0.0
      min_rps: 20
    capacity: {users: [1, 2, 4, 8, 16]}
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
DEFAULT_CAPACITY_USERS = (1, 2, 4, 8, 16, 32)


class ProfileError(ValueError):
    """An SLO profile that is missing a field or holds an impossible value."""


@dataclass(frozen=True)
class Objectives:
    """Limits a run must stay within; ``None`` leaves that objective out."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_error_ratio: float | None = None
    min_rps: float | None = None


@dataclass(frozen=True)
class SloProfile:
    name: str = "adhoc"
    model: str = "text_embedding"
    protocol: str = "grpc"
    users: int = 4
    spawn_rate: float = 4.0
    warmup_s: float = 3.0
    duration_s: float = 10.0
    shape: str = "constant"
    objectives: Objectives = field(default_factory=Objectives)
    capacity_users: tuple[int, ...] = DEFAULT_CAPACITY_USERS
    source: str = ""

    def with_overrides(self, **changes: Any) -> SloProfile:
        """A copy with the given fields changed (``None`` values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        objective_keys = set(Objectives.__dataclass_fields__)
        objective_changes = {k: changes.pop(k) for k in list(changes) if k in objective_keys}
        profile = replace(self, **changes)
        if objective_changes:
            profile = replace(profile, objectives=replace(profile.objectives, **objective_changes))
        profile.validate()
        return profile

    def validate(self) -> None:
        problems = []
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.shape not in SHAPES:
            problems.append(f"shape {self.shape!r} is not one of {', '.join(SHAPES)}")
        if self.users < 1:
            problems.append(f"users must be at least 1 (got {self.users})")
        if self.spawn_rate <= 0:
            problems.append(f"spawn_rate must be positive (got {self.spawn_rate})")
        if self.duration_s <= 0:
            problems.append(f"duration_s must be positive (got {self.duration_s})")
        if self.warmup_s < 0:
            problems.append(f"warmup_s cannot be negative (got {self.warmup_s})")
        for key, value in asdict(self.objectives).items():
            if value is not None and (not isinstance(value, int | float) or value < 0):
                problems.append(f"objectives.{key} must be a non-negative number (got {value!r})")
        ratio = self.objectives.max_error_ratio
        if ratio is not None and ratio > 1:
            problems.append(f"objectives.max_error_ratio is a ratio in 0..1 (got {ratio})")
        if not self.capacity_users or any(u < 1 for u in self.capacity_users):
            problems.append("capacity.users must list positive user counts")
        if problems:
            where = f"{self.source}: " if self.source else ""
            raise ProfileError(where + "; ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["capacity_users"] = list(self.capacity_users)
        return data


def _number(section: Mapping[str, Any], key: str, where: str) -> float | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def parse_profile(data: Mapping[str, Any], source: str = "") -> SloProfile:
    """Build a profile from parsed YAML; unknown keys are an error (they are usually typos)."""
    where = source or "profile"
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: expected a mapping at the top level")
    known = {"name", "model", "protocol", "load", "objectives", "capacity", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    load = data.get("load") or {}
    objectives = data.get("objectives") or {}
    capacity = data.get("capacity") or {}
    load_keys = {"users", "spawn_rate", "warmup_s", "duration_s", "shape"}
    objective_keys = set(Objectives.__dataclass_fields__)
    for section, keys, label in (
        (load, load_keys, "load"),
        (objectives, objective_keys, "objectives"),
    ):
        extra = sorted(set(section) - keys)
        if extra:
            raise ProfileError(f"{where}: unknown key(s) in {label}: {', '.join(extra)}")
    defaults = SloProfile()
    users = _number(load, "users", where)
    profile = SloProfile(
        name=str(data.get("name") or (Path(source).stem if source else "adhoc")),
        model=str(data.get("model", defaults.model)),
        protocol=str(data.get("protocol", defaults.protocol)).lower(),
        users=int(users) if users is not None else defaults.users,
        spawn_rate=_number(load, "spawn_rate", where) or float(users or defaults.spawn_rate),
        warmup_s=_num_or(_number(load, "warmup_s", where), defaults.warmup_s),
        duration_s=_num_or(_number(load, "duration_s", where), defaults.duration_s),
        shape=str(load.get("shape", defaults.shape)).lower(),
        objectives=Objectives(**{k: _number(objectives, k, where) for k in objective_keys}),
        capacity_users=tuple(int(u) for u in capacity.get("users", DEFAULT_CAPACITY_USERS)),
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
    """What a run measured, after the warm-up: the numbers objectives are checked against."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float = 0.0

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
        if self.limit == 0:
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
            "actual": round(self.actual, 6),
            "unit": self.unit,
            "passed": self.passed,
            "miss_percent": None if self.passed else _finite(self.miss_percent),
            "message": self.message,
        }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else round(value, 2)


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
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
    """Check ``figures`` against every objective that is set (and not in ``skip``)."""
    checks: list[tuple[str, str, float, str, str]] = [
        ("p50_ms", "p50", figures.p50_ms, "ms", "max"),
        ("p95_ms", "p95", figures.p95_ms, "ms", "max"),
        ("p99_ms", "p99", figures.p99_ms, "ms", "max"),
        ("max_error_ratio", "error ratio", figures.error_ratio, "ratio", "max"),
        ("min_rps", "throughput", figures.rps, "rps", "min"),
    ]
    results = []
    if figures.requests == 0:
        # Nothing measured: every other verdict would be vacuous.
        results.append(ObjectiveResult("requests", "requests", 1, 0, False, "count", "min"))
    for key, label, actual, unit, kind in checks:
        limit = getattr(objectives, key)
        if limit is None or key in skip:
            continue
        passed = actual <= limit if kind == "max" else actual >= limit
        results.append(ObjectiveResult(key, label, float(limit), float(actual), passed, unit, kind))
    return results
