"""Capacity search: the highest load one server carries within the SLO.

Open loop (the default) searches the arrival rate: requests sent at a rate whatever the
answers, so the capacity is a rate the server sustains, the figure ``tritonctl plan`` divides a
target load by. The rates are the profile's ``capacity.rates`` in order, or, without a list,
``start_rps`` multiplied by ``factor`` until a rate breaks (divided, if the first one breaks),
then ``refine`` bisections between the highest rate that held and the lowest that broke.

Closed loop (``mode="closed"``) raises the profile's ``capacity.users`` instead; its capacity
is the throughput those users reached, which a server cannot sustain as an arrival rate
(queues grow without the clients' waiting to hold them back), and the report says so.

Each step runs up to ``repeats`` times (warm-up discarded each time) and holds when
``required`` of them meet every latency and error objective; it stops early once the outcome
is decided. Throughput (``min_rps``) is checked against the capacity found, not per step. The
report gives every run and the spread (min-max) of each step's figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tritonctl.loadtest.locust_runner import Target
from tritonctl.loadtest.report import _figure, _png, image_tag
from tritonctl.loadtest.run import LoadTestResult, check_reachable, measure
from tritonctl.loadtest.slo import SloProfile

MODES = ("open", "closed")
#: The search does not go below the rate that sends this many requests in a window: fewer
#: are too few for a percentile to mean anything.
MIN_REQUESTS = 20


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "max": None}
    finite = [v for v in values if v == v and v != float("inf")]
    if len(finite) < len(values):  # an unanswered percentile: no upper bound
        return {"min": round(min(finite), 3) if finite else None, "max": None}
    return {"min": round(min(values), 3), "max": round(max(values), 3)}


@dataclass
class Step:
    """One load level (a rate, or a user count) and its repeated runs."""

    load: float
    runs: list[LoadTestResult] = field(default_factory=list)
    required: int = 1
    repeats: int = 1

    @property
    def held_runs(self) -> int:
        return sum(1 for r in self.runs if r.passed)

    @property
    def held(self) -> bool:
        return self.held_runs >= self.required

    @property
    def decided(self) -> bool:
        broken = len(self.runs) - self.held_runs
        return self.held or broken > self.repeats - self.required

    def spread(self) -> dict[str, dict[str, float | None]]:
        """Min and max over the runs of the step: throughput and latency percentiles."""
        return {
            "rps": _spread([r.figures.rps for r in self.runs]),
            "offered_rps": _spread([r.figures.offered_rps for r in self.runs]),
            "p50_ms": _spread([r.figures.p50_ms for r in self.runs]),
            "p95_ms": _spread([r.figures.p95_ms for r in self.runs]),
            "p99_ms": _spread([r.figures.p99_ms for r in self.runs]),
            "error_ratio": _spread(
                [r.figures.error_ratio for r in self.runs if r.figures.requests]
            ),
        }

    def failed(self) -> list[str]:
        """What the broken runs missed, each once."""
        seen: dict[str, None] = {}
        for run in self.runs:
            for line in run.failed:
                seen.setdefault(line)
        return list(seen)


@dataclass
class CapacityResult:
    profile: SloProfile
    mode: str
    steps: list[Step]
    report_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def open_loop(self) -> bool:
        return self.mode == "open"

    @property
    def held(self) -> list[Step]:
        return [s for s in self.steps if s.held]

    def _rps(self, step: Step) -> float:
        """A closed-loop step's throughput: the median over the runs that held."""
        values = sorted(r.figures.rps for r in step.runs if r.passed)
        return values[len(values) // 2] if values else 0.0

    @property
    def best(self) -> Step | None:
        """Open loop: the highest rate that held. Closed loop: the held step with the highest
        throughput (past saturation more users only queue, so the peak is what is usable)."""
        held = self.held
        if not held:
            return None
        if self.open_loop:
            return max(held, key=lambda s: s.load)
        return max(held, key=lambda s: (self._rps(s), -s.load))

    @property
    def capacity(self) -> dict[str, Any] | None:
        best = self.best
        if best is None:
            return None
        spread = best.spread()
        common = {
            "held_runs": best.held_runs,
            "runs": len(best.runs),
            "achieved_rps": spread["rps"],
            "p99_ms": spread["p99_ms"],
        }
        if self.open_loop:
            return {
                "rps": round(best.load, 3),
                "mode": "open-loop",
                "arrivals": self.profile.arrivals,
                **common,
            }
        return {
            "rps": round(self._rps(best), 3),
            "mode": "closed-loop",
            "users": int(best.load),
            **common,
        }

    @property
    def capacity_rps(self) -> float | None:
        capacity = self.capacity
        return float(capacity["rps"]) if capacity else None

    @property
    def passed(self) -> bool:
        """A load held, and (if the profile asks for one) it reached ``min_rps``."""
        rps = self.capacity_rps
        if rps is None:
            return False
        floor = self.profile.objectives.min_rps
        return floor is None or rps >= floor

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def _label(mode: str, load: float) -> str:
    return f"{load:g} req/s" if mode == "open" else f"{load:g} users"


def run_step(
    profile: SloProfile,
    mode: str,
    load: float,
    target: Target,
    folder: Path,
    *,
    workers: int,
    show_progress: bool,
) -> Step:
    """Up to ``repeats`` runs at one load, stopping once ``required`` held or cannot."""
    search = profile.capacity
    if mode == "open":
        step_profile = profile.with_overrides(mode="open", rate_rps=load)
    else:
        users = int(load)
        step_profile = profile.with_overrides(
            mode="closed", users=users, spawn_rate=max(profile.spawn_rate, users)
        )
    step = Step(load, required=search.required, repeats=search.repeats)
    while not step.decided:
        run = measure(
            step_profile,
            target,
            folder / f"run-{len(step.runs) + 1}",
            workers=workers,
            skip_objectives=("min_rps",),
            show_progress=show_progress,
        )
        step.runs.append(run)
    return step


def _rate_schedule(profile: SloProfile) -> Callable[[list[Step]], float | None]:
    """The next rate to try, given the steps so far (``None``: the search is over).

    Searching down stops at ``MIN_REQUESTS`` per window (2 req/s for a 10 s window).
    """
    search = profile.capacity
    lowest = MIN_REQUESTS / profile.duration_s

    def next_rate(steps: list[Step]) -> float | None:
        if search.rates:
            ordered = sorted(set(search.rates))
            if steps and not steps[-1].held:
                return None  # stop at the first rate that breaks
            return ordered[len(steps)] if len(steps) < len(ordered) else None
        held = [s.load for s in steps if s.held]
        broke = [s.load for s in steps if not s.held]
        low, high = (max(held) if held else None), (min(broke) if broke else None)
        if low is None or high is None:  # still looking for a held rate below a broken one
            if len(steps) >= search.max_steps:
                return None
            if not steps:
                return search.start_rps
            last = steps[-1].load
            rate = last * search.factor if high is None else last / search.factor
            return rate if rate >= lowest else None
        if high <= low or len(steps) - _bracketing_steps(steps) >= search.refine:
            return None
        middle = float(f"{(low + high) / 2:.3g}")
        return None if middle in (low, high) else middle

    return next_rate


def _bracketing_steps(steps: list[Step]) -> int:
    """How many of ``steps`` were spent finding a held rate below a broken one."""
    for count in range(1, len(steps) + 1):
        seen = steps[:count]
        if any(s.held for s in seen) and any(not s.held for s in seen):
            return count
    return len(steps)


def find_capacity(
    profile: SloProfile,
    target: Target,
    report_dir: Path,
    *,
    mode: str = "open",
    workers: int = 0,
    console: Console | None = None,
    show_progress: bool = True,
    check_target: bool = False,
) -> CapacityResult:
    """Search the highest load that holds the SLO; write ``summary.json`` and a report."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use open or closed")
    if check_target:
        check_reachable(target, profile.protocol)
    report_dir.mkdir(parents=True, exist_ok=True)
    result = CapacityResult(profile, mode, [], report_dir)
    users = iter(sorted(set(profile.capacity.users)))
    next_rate = _rate_schedule(profile)
    while True:
        if mode == "open":
            load = next_rate(result.steps)
        else:
            if result.steps and not result.steps[-1].held:
                break
            load = next(users, None)
        if load is None:
            break
        name = f"rate-{load:09.3f}" if mode == "open" else f"users-{int(load):03d}"
        step = run_step(
            profile,
            mode,
            load,
            target,
            report_dir / name,
            workers=workers,
            show_progress=show_progress,
        )
        result.steps.append(step)
        if console is not None:
            verdict = (
                "[green]held[/]" if step.held else "[red]broke[/]: " + "; ".join(step.failed())
            )
            rps = step.spread()["rps"]
            console.print(
                f"  {_label(mode, load):>12}: {step.held_runs} of {len(step.runs)} runs held, "
                f"{rps['min']:.1f}-{rps['max']:.1f} ok req/s → {verdict}",
                soft_wrap=True,
            )
    result.summary = write_capacity_report(result)
    if console is not None:
        print_capacity(console, result)
    return result


def step_summary(result: CapacityResult, step: Step) -> dict[str, Any]:
    key = "rate_rps" if result.open_loop else "users"
    return {
        key: step.load if result.open_loop else int(step.load),
        "held": step.held,
        "held_runs": step.held_runs,
        "runs_needed": step.required,
        "spread": step.spread(),
        "failed": step.failed(),
        "runs": [
            {
                "rps": round(r.figures.rps, 3),
                "offered_rps": round(r.figures.offered_rps, 3),
                "p50_ms": r.summary["latency_ms"]["p50"],
                "p95_ms": r.summary["latency_ms"]["p95"],
                "p99_ms": r.summary["latency_ms"]["p99"],
                "error_ratio": round(r.figures.error_ratio, 6),
                "unanswered": r.figures.unanswered,
                "passed": r.passed,
                "failed": r.failed,
                "report": str(r.report_dir.relative_to(result.report_dir) / "report.html"),
            }
            for r in step.runs
        ],
    }


def plot_capacity(result: CapacityResult) -> bytes:
    fig, ax = _figure()
    for step in result.steps:
        for run in step.runs:
            colour = "#2ca25f" if run.passed else "#de2d26"
            ax.plot(step.load, run.figures.rps, "o", color=colour, markersize=7, alpha=0.8)
    loads = [s.load for s in result.steps]
    order = sorted(range(len(loads)), key=lambda i: loads[i])
    medians = [sorted(r.figures.rps for r in result.steps[i].runs) for i in order]
    ax.plot(
        [loads[i] for i in order],
        [m[len(m) // 2] for m in medians],
        color="#3182bd",
        label="successful req/s (median of runs)",
    )
    if result.open_loop and loads:
        top = max(loads)
        ax.plot([0, top], [0, top], ":", color="black", linewidth=1, label="sent = answered")
    ax.set_xlabel("arrival rate (req/s)" if result.open_loop else "closed-loop users")
    ax.set_ylabel("successful requests/s")
    latency = ax.twinx()
    for step in result.steps:
        p99 = [r.figures.p99_ms for r in step.runs if r.figures.p99_ms != float("inf")]
        latency.plot([step.load] * len(p99), p99, "s", color="grey", markersize=4)
    limit = result.profile.objectives.p99_ms or result.profile.objectives.p95_ms
    if limit is not None:
        latency.axhline(limit, color="grey", linewidth=1, linestyle="--")
    # Past capacity the p99 grows by orders of magnitude: a log axis keeps the limit readable.
    latency.set_yscale("log")
    latency.set_ylabel("p99 latency per run (ms, grey squares; dashed: limit)")
    loop = "open loop" if result.open_loop else "closed loop"
    ax.set_title(f"Capacity search, {loop} (green: run held the SLO, red: broke)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def write_capacity_report(result: CapacityResult) -> dict[str, Any]:
    steps = [step_summary(result, s) for s in result.steps]
    floor = result.profile.objectives.min_rps
    failed = []
    rps = result.capacity_rps
    if rps is None:
        first = result.steps[0] if result.steps else None
        failed.append(
            "no load held the SLO"
            + (
                f"; at {_label(result.mode, first.load)}: " + "; ".join(first.failed())
                if first
                else ""
            )
        )
    elif floor is not None and rps < floor:
        failed.append(f"capacity {rps:.1f} req/s < {floor:g} req/s required")
    broke = next((s for s in result.steps if not s.held), None)
    summary: dict[str, Any] = {
        "capacity": result.capacity,
        "mode": "open-loop" if result.open_loop else "closed-loop",
        "passed": result.passed,
        "failed": failed,
        "profile": result.profile.as_dict(),
        "highest_held": max((s.load for s in result.held), default=None),
        "broke_at": (
            {
                "load": broke.load,
                "unit": "req/s" if result.open_loop else "users",
                "failed": broke.failed(),
            }
            if broke
            else None
        ),
        "steps": steps,
    }
    if not result.open_loop:
        summary["note"] = (
            "closed-loop capacity: the throughput that many clients reached when each waits for "
            "its answer; as an arrival rate it overstates what the server sustains within the "
            "SLO (run the open-loop search for the rate to plan with)"
        )
    (result.report_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, allow_nan=False) + "\n"
    )
    png = plot_capacity(result)
    (result.report_dir / "capacity.png").write_bytes(png)
    unit = "req/s sent" if result.open_loop else "users"
    rows = "".join(
        f"<tr><td>{_label(result.mode, s.load)}</td><td>{s.held_runs} of {len(s.runs)}</td>"
        f"<td>{_range(s.spread()['rps'])}</td><td>{_range(s.spread()['p95_ms'])}</td>"
        f"<td>{_range(s.spread()['p99_ms'])}</td><td>{_range(s.spread()['error_ratio'], 100, 'no requests')}</td>"
        f"<td>{'held' if s.held else 'broke: ' + '; '.join(s.failed())}</td>"
        f"<td>{' '.join(f'<a href={chr(39)}{r.report_dir.relative_to(result.report_dir)}/report.html{chr(39)}>{i + 1}</a>' for i, r in enumerate(s.runs))}</td></tr>"
        for s in result.steps
    )
    capacity = result.capacity
    headline = (
        f"{capacity['rps']:.1f} req/s ({capacity['mode']}, held in {capacity['held_runs']} of "
        f"{capacity['runs']} runs)"
        if capacity
        else "none held"
    )
    note = f"<p><b>{summary['note']}</b></p>" if "note" in summary else ""
    html_text = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Capacity</title></head>"
        "<body style='font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto'>"
        f"<h1>Capacity of <code>{result.profile.model}</code> over {result.profile.protocol}: "
        f"{headline}</h1>{note}"
        f"<p>Each step runs up to {result.profile.capacity.repeats} times and holds when "
        f"{result.profile.capacity.required} meet every latency and error objective; the "
        "columns give the min–max over its runs.</p>"
        f"<table border=1 cellpadding=4><tr><th>{unit}</th><th>runs held</th>"
        "<th>ok req/s</th><th>p95 ms</th><th>p99 ms</th><th>errors %</th><th>SLO</th>"
        f"<th>reports</th></tr>{rows}</table>"
        f"{image_tag(png, 'capacity search')}</body></html>"
    )
    (result.report_dir / "report.html").write_text(html_text)
    return summary


def _range(spread: dict[str, float | None], scale: float = 1.0, empty: str = "unanswered") -> str:
    low, high = spread["min"], spread["max"]
    if low is None:
        return empty if high is None else "unanswered"
    text = f"{low * scale:.1f}"
    return text + ("–unanswered" if high is None else f"–{high * scale:.1f}" if high != low else "")


def print_capacity(console: Console, result: CapacityResult) -> None:
    loop = "open loop" if result.open_loop else "closed loop"
    table = Table(
        title=f"Capacity search ({loop}): {result.profile.model} over {result.profile.protocol}"
    )
    for column in ("load", "runs held", "ok req/s", "p95 ms", "p99 ms", "errors %", "SLO"):
        table.add_column(column, justify="right")
    for s in result.steps:
        spread = s.spread()
        table.add_row(
            _label(result.mode, s.load),
            f"{s.held_runs} of {len(s.runs)}",
            _range(spread["rps"]),
            _range(spread["p95_ms"]),
            _range(spread["p99_ms"]),
            _range(spread["error_ratio"], 100, "no requests"),
            "[green]held[/]" if s.held else "[red]broke[/]",
        )
    console.print(table)
    capacity = result.capacity
    if capacity is None:
        console.print("[red]No load held the SLO.[/]")
    elif result.open_loop:
        console.print(
            f"Capacity: [bold]{capacity['rps']:g} req/s[/] arriving ({capacity['arrivals']}), "
            f"held in {capacity['held_runs']} of {capacity['runs']} runs",
            soft_wrap=True,
        )
    else:
        console.print(
            f"Closed-loop capacity: [bold]{capacity['rps']:.1f} req/s[/] at {capacity['users']} "
            f"users. {result.summary.get('note', '')}",
            soft_wrap=True,
        )
