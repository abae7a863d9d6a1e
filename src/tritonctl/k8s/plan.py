"""Capacity planning: replicas and HPA settings from a target load and a measured capacity.

The capacity figure is the arrival rate one replica sustains within the SLO, as found by
``tritonctl loadtest --find-capacity`` (open loop). Its summary JSON carries it as::

    {"capacity": {"rps": 40.0, "mode": "open-loop", "held_runs": 2, "runs": 3, ...}, ...}

A closed-loop search (``--closed-loop``, or a summary from before open loop existed, with
``users`` and no ``mode``) records the throughput its users reached instead; that overstates
the rate a replica sustains, so the plan says so in its reasoning. When the summary also holds
``profile.objectives.p95_ms``, that SLO is used unless one is given; other keys are ignored.

:func:`latest_capacity_report` finds the newest ``reports/loadtest/*-capacity/summary.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class PlanError(ValueError):
    """An input to the plan is missing or out of range."""


@dataclass(frozen=True)
class Capacity:
    rps: float
    users: int | None = None
    source: str = "command line"
    #: The p95 objective the capacity was measured against, when the summary records it.
    slo_p95_ms: float | None = None
    #: "open-loop" (an arrival rate), "closed-loop" (users' throughput) or "" (given by hand)
    mode: str = ""
    #: e.g. "2 of 3 runs held" for a repeated search
    evidence: str = ""

    @property
    def closed_loop(self) -> bool:
        return self.mode == "closed-loop"


CAPACITY_GLOB = "*-capacity/summary.json"


def latest_capacity_report(reports: str | Path, model: str | None = None) -> Path:
    """The newest ``<reports>/<time>-<model>-<protocol>-capacity/summary.json``.

    Newest by the time stamp that starts the folder's name (then by modification time);
    ``model`` keeps only that model's searches.
    """
    reports = Path(reports)
    found = [p for p in reports.glob(CAPACITY_GLOB) if p.is_file()]
    if model is not None:
        found = [p for p in found if _folder_model(p.parent.name) == model]
    if not found:
        which = f" for model {model!r}" if model else ""
        raise PlanError(
            f"no capacity report{which} under {reports} (looked for {CAPACITY_GLOB}): run "
            "`tritonctl loadtest --find-capacity` first, or pass --capacity-rps"
        )
    return max(found, key=lambda p: (p.parent.name[:15], p.stat().st_mtime))


def _folder_model(name: str) -> str:
    """``20260101-120000-text_embedding-grpc-capacity`` -> ``text_embedding``."""
    parts = name.split("-")
    return "-".join(parts[2:-2]) if len(parts) >= 5 else ""


def load_capacity(path: str | Path) -> Capacity:
    """The ``capacity`` object of a ``loadtest --find-capacity`` summary JSON (or its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise PlanError(f"capacity file not found: {path}") from error
    except json.JSONDecodeError as error:
        raise PlanError(f"{path}: not JSON ({error})") from error
    capacity = data.get("capacity") if isinstance(data, dict) else None
    if isinstance(data, dict) and "capacity" in data and capacity is None:
        raise PlanError(
            f"{path}: no load held the SLO in that capacity search, so there is no capacity to plan with"
        )
    if not isinstance(capacity, dict) or "rps" not in capacity:
        raise PlanError(
            f'{path}: expected {{"capacity": {{"rps": <float>, "users": <int>}}}} '
            "as written by `tritonctl loadtest --find-capacity`"
        )
    try:
        rps = float(capacity["rps"])
    except (TypeError, ValueError) as error:
        raise PlanError(
            f"{path}: capacity.rps must be a number, not {capacity['rps']!r}"
        ) from error
    users = capacity.get("users")
    objectives = (data.get("profile") or {}).get("objectives") or {}
    slo = objectives.get("p95_ms") if isinstance(objectives, dict) else None
    # Summaries written before the open-loop search have users and no mode: closed loop.
    mode = str(capacity.get("mode") or ("closed-loop" if users is not None else ""))
    evidence = ""
    if capacity.get("runs"):
        evidence = f"held in {capacity.get('held_runs')} of {capacity['runs']} runs"
    return Capacity(
        rps=rps,
        users=int(users) if users is not None else None,
        source=str(path),
        slo_p95_ms=float(slo) if isinstance(slo, int | float) and slo > 0 else None,
        mode=mode,
        evidence=evidence,
    )


@dataclass
class Plan:
    """The numbers, and the reasoning behind each, for one target load."""

    target_rps: float
    capacity: Capacity
    headroom: float
    replicas: int
    min_replicas: int
    max_replicas: int
    queue_target_us: int
    cpu_target_utilization: int
    slo_ms: float
    reasoning: list[str] = field(default_factory=list)

    @property
    def per_replica_rps(self) -> float:
        return self.capacity.rps * (1.0 - self.headroom)

    def values(self) -> dict[str, Any]:
        """The chart values override (keys of helm/tritonctl/values.yaml)."""
        return {
            # Used only with autoscaling off; never below the HPA minimum.
            "replicaCount": max(self.replicas, self.min_replicas),
            "autoscaling": {
                "enabled": True,
                "minReplicas": self.min_replicas,
                "maxReplicas": self.max_replicas,
                "queueTimeTargetUs": self.queue_target_us,
                "cpuTargetUtilization": self.cpu_target_utilization,
            },
            "monitoring": {"prometheusRule": {"latencySloMs": self.slo_ms}},
        }

    def to_yaml(self) -> str:
        header = "".join(f"# {line}\n" for line in self.reasoning)
        body = yaml.safe_dump(self.values(), sort_keys=False)
        return f"# Written by `tritonctl plan`.\n{header}{body}"


def replicas_for(rps: float, capacity_rps: float, headroom: float) -> int:
    """ceil(rps / (capacity × (1 − headroom))): each replica runs at most (1 − headroom) of capacity."""
    if capacity_rps <= 0:
        raise PlanError(f"capacity must be positive, got {capacity_rps} requests/s")
    if not 0 <= headroom < 1:
        raise PlanError(f"headroom must be in [0, 1), got {headroom}")
    if rps < 0:
        raise PlanError(f"target load must not be negative, got {rps} requests/s")
    # Round before ceil so that 300 / (100 × 0.75) stays 4, not 5 from float noise.
    return max(1, math.ceil(round(rps / (capacity_rps * (1.0 - headroom)), 9)))


def make_plan(
    target_rps: float,
    capacity: Capacity,
    *,
    headroom: float = 0.3,
    min_rps: float | None = None,
    min_replicas_floor: int = 2,
    burst: float = 2.0,
    slo_ms: float | None = None,
    queue_share: float = 0.2,
) -> Plan:
    """Replicas, HPA bounds and targets for ``target_rps`` at peak.

    ``min_rps`` is the off-peak load (default: the peak, so the HPA never drops below what the
    peak needs); ``min_replicas_floor`` keeps a pod for availability during node drains;
    ``burst`` multiplies the peak replicas into the HPA maximum; the queue-time target is
    ``queue_share`` of the p95 latency SLO (``slo_ms``, else the one the capacity was measured
    against, else 100 ms).
    """
    if slo_ms is None:
        slo_ms = capacity.slo_p95_ms or 100.0
    if target_rps <= 0:
        raise PlanError(f"target load must be positive, got {target_rps} requests/s")
    if burst < 1:
        raise PlanError(f"burst must be at least 1, got {burst}")
    if min_replicas_floor < 1:
        raise PlanError(f"the minimum replica floor must be at least 1, got {min_replicas_floor}")
    if not 0 < queue_share < 1:
        raise PlanError(f"queue share must be in (0, 1), got {queue_share}")
    if slo_ms <= 0:
        raise PlanError(f"the latency SLO must be positive, got {slo_ms} ms")
    replicas = replicas_for(target_rps, capacity.rps, headroom)
    per_replica = capacity.rps * (1.0 - headroom)
    off_peak = target_rps if min_rps is None else min_rps
    off_peak_replicas = replicas_for(off_peak, capacity.rps, headroom) if off_peak > 0 else 1
    min_replicas = min(
        max(min_replicas_floor, off_peak_replicas), max(replicas, min_replicas_floor)
    )
    max_replicas = max(min_replicas, math.ceil(replicas * burst))
    queue_target_us = round(slo_ms * queue_share * 1000)
    cpu_target = min(95, max(10, round(100 * (1.0 - headroom))))
    if capacity.closed_loop:
        users = f" by {capacity.users} closed-loop users" if capacity.users else ""
        measured = (
            f"capacity: one replica answered {capacity.rps:g} requests/s{users} within the SLO "
            f"({capacity.source}). WARNING: a closed-loop figure, not an arrival rate: requests "
            "arriving at that rate queue without the clients' waiting to hold them back, so "
            "this plan is likely short of replicas; run `tritonctl loadtest --find-capacity` "
            "(open loop) for the rate to plan with"
        )
    else:
        kind = " arriving" if capacity.mode == "open-loop" else ""
        evidence = f", {capacity.evidence}" if capacity.evidence else ""
        users = f", {capacity.users} concurrent users" if capacity.users else ""
        measured = (
            f"capacity: one replica serves {capacity.rps:g} requests/s{kind} within the SLO"
            f"{evidence}{users} ({capacity.source})"
        )
    reasoning = [
        measured,
        f"headroom {headroom:.0%}: plan each replica for {capacity.rps:g} x (1 - {headroom:g}) = {per_replica:.4g} requests/s",
        f"replicas = ceil({target_rps:g} / {per_replica:.4g}) = {replicas} for the peak of {target_rps:g} requests/s",
        (
            f"HPA minimum = {min_replicas}: off-peak {off_peak:g} requests/s needs {off_peak_replicas}, "
            f"availability floor {min_replicas_floor}"
        ),
        f"HPA maximum = {max_replicas}: ceil({replicas} x burst {burst:g})",
        (
            f"HPA target: queue time per request {queue_target_us} us = {queue_share:.0%} of the "
            f"{slo_ms:g} ms p95 SLO; requests that wait longer mean the pods are saturated"
        ),
        f"CPU fallback target {cpu_target}% = the utilisation at (1 - headroom) of capacity",
    ]
    return Plan(
        target_rps=target_rps,
        capacity=capacity,
        headroom=headroom,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        queue_target_us=queue_target_us,
        cpu_target_utilization=cpu_target,
        slo_ms=slo_ms,
        reasoning=reasoning,
    )
