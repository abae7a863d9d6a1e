"""Capacity search: raise the load step by step until the SLO breaks.

Each step is a full run (warm-up discarded) at the next user count of the profile's
``capacity.users``, until a step misses a latency or error objective. The capacity is the
step that held with the highest throughput (normally the last one that held); throughput is
what is being measured, so ``min_rps`` is checked against the capacity found rather than at
every step. ``summary.json`` holds ``capacity: {"rps": float, "users": int}``,
the figure ``tritonctl plan`` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tritonctl.loadtest.locust_runner import Target
from tritonctl.loadtest.report import _figure, _png, image_tag
from tritonctl.loadtest.run import LoadTestResult, measure
from tritonctl.loadtest.slo import SloProfile


@dataclass
class CapacityResult:
    profile: SloProfile
    steps: list[LoadTestResult]
    report_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def held(self) -> list[LoadTestResult]:
        return [s for s in self.steps if s.passed]

    @property
    def best(self) -> LoadTestResult | None:
        """The step that held with the highest throughput (the fewest users on a tie).

        Usually the last step that held; past saturation more users only queue, and throughput
        can dip while the latency objectives still hold, so the peak is what a planner can use.
        """
        held = self.held
        return max(held, key=lambda s: (s.figures.rps, -s.profile.users)) if held else None

    @property
    def capacity(self) -> dict[str, float | int] | None:
        best = self.best
        if best is None:
            return None
        return {"rps": round(best.figures.rps, 3), "users": best.profile.users}

    @property
    def passed(self) -> bool:
        """A load held, and (if the profile asks for one) it reached ``min_rps``."""
        best = self.best
        if best is None:
            return False
        floor = self.profile.objectives.min_rps
        return floor is None or best.figures.rps >= floor

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def plot_capacity(steps: list[LoadTestResult], profile: SloProfile) -> bytes:
    fig, ax = _figure()
    users = [s.profile.users for s in steps]
    ax.plot(users, [s.figures.rps for s in steps], marker="o", color="#3182bd", label="req/s")
    for step in steps:
        colour = "#2ca25f" if step.passed else "#de2d26"
        ax.plot(step.profile.users, step.figures.rps, "o", color=colour, markersize=9)
    ax.set_xlabel("users")
    ax.set_ylabel("throughput (req/s)")
    latency = ax.twinx()
    latency.plot(
        users, [s.figures.p95_ms for s in steps], "--", marker="s", color="grey", label="p95 ms"
    )
    if profile.objectives.p95_ms is not None:
        latency.axhline(profile.objectives.p95_ms, color="grey", linewidth=1, linestyle=":")
    latency.set_ylabel("p95 latency (ms)")
    ax.set_title("Capacity search (green: SLO held, red: broken)")
    ax.legend(loc="upper left", fontsize=8)
    latency.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def find_capacity(
    profile: SloProfile,
    target: Target,
    report_dir: Path,
    *,
    workers: int = 0,
    console: Console | None = None,
    show_progress: bool = True,
) -> CapacityResult:
    """Run ``profile`` at each of ``profile.capacity_users`` until an objective breaks."""
    report_dir.mkdir(parents=True, exist_ok=True)
    result = CapacityResult(profile, [], report_dir)
    for users in sorted(set(profile.capacity_users)):
        step_profile = profile.with_overrides(
            users=users, spawn_rate=max(profile.spawn_rate, users)
        )
        step = measure(
            step_profile,
            target,
            report_dir / f"users-{users:03d}",
            workers=workers,
            skip_objectives=("min_rps",),
            show_progress=show_progress,
        )
        result.steps.append(step)
        if console is not None:
            verdict = (
                "[green]held[/]" if step.passed else "[red]broke[/]: " + "; ".join(step.failed)
            )
            console.print(
                f"  {users:>4} users: {step.figures.rps:8.1f} req/s, p95 {step.figures.p95_ms:g} ms"
                f" → {verdict}"
            )
        if not step.passed:
            break
    result.summary = write_capacity_report(result)
    if console is not None:
        print_capacity(console, result)
    return result


def write_capacity_report(result: CapacityResult) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {
            "users": s.profile.users,
            "rps": round(s.figures.rps, 3),
            "p50_ms": s.figures.p50_ms,
            "p95_ms": s.figures.p95_ms,
            "p99_ms": s.figures.p99_ms,
            "error_ratio": round(s.figures.error_ratio, 6),
            "passed": s.passed,
            "failed": s.failed,
            "report": str(s.report_dir.relative_to(result.report_dir) / "report.html"),
        }
        for s in result.steps
    ]
    floor = result.profile.objectives.min_rps
    failed = []
    if result.best is None:
        failed.append(
            f"no load held the SLO; at {result.steps[0].profile.users} user(s): "
            + "; ".join(result.steps[0].failed)
        )
    elif floor is not None and result.best.figures.rps < floor:
        failed.append(f"capacity {result.best.figures.rps:.1f} req/s < {floor:g} req/s required")
    summary: dict[str, Any] = {
        "capacity": result.capacity,
        "passed": result.passed,
        "failed": failed,
        "profile": result.profile.as_dict(),
        "highest_users_held": result.held[-1].profile.users if result.held else None,
        "broke_at": next(
            ({"users": s["users"], "failed": s["failed"]} for s in steps if not s["passed"]), None
        ),
        "steps": steps,
    }
    (result.report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    png = plot_capacity(result.steps, result.profile)
    (result.report_dir / "capacity.png").write_bytes(png)
    rows = "".join(
        f"<tr><td>{s['users']}</td><td>{s['rps']:.1f}</td><td>{s['p95_ms']:g}</td>"
        f"<td>{s['p99_ms']:g}</td><td>{s['error_ratio'] * 100:.2f}%</td>"
        f"<td>{'held' if s['passed'] else 'broke: ' + '; '.join(s['failed'])}</td>"
        f"<td><a href='{s['report']}'>report</a></td></tr>"
        for s in steps
    )
    capacity = result.capacity
    headline = (
        f"{capacity['rps']:.1f} req/s at {capacity['users']} users" if capacity else "none held"
    )
    html_text = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Capacity</title></head>"
        "<body style='font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto'>"
        f"<h1>Capacity of <code>{result.profile.model}</code> over {result.profile.protocol}: "
        f"{headline}</h1>"
        "<table border=1 cellpadding=4><tr><th>users</th><th>req/s</th><th>p95 ms</th>"
        f"<th>p99 ms</th><th>errors</th><th>SLO</th><th></th></tr>{rows}</table>"
        f"{image_tag(png, 'capacity search')}</body></html>"
    )
    (result.report_dir / "report.html").write_text(html_text)
    return summary


def print_capacity(console: Console, result: CapacityResult) -> None:
    table = Table(title=f"Capacity search: {result.profile.model} over {result.profile.protocol}")
    for column in ("users", "req/s", "p95 ms", "p99 ms", "errors", "SLO"):
        table.add_column(column, justify="right")
    for s in result.steps:
        table.add_row(
            str(s.profile.users),
            f"{s.figures.rps:.1f}",
            f"{s.figures.p95_ms:g}",
            f"{s.figures.p99_ms:g}",
            f"{s.figures.error_ratio * 100:.1f}%",
            "[green]held[/]" if s.passed else "[red]broke[/]",
        )
    console.print(table)
    capacity = result.capacity
    if capacity:
        console.print(
            f"Capacity: [bold]{capacity['rps']:.1f} req/s[/] at {capacity['users']} users"
        )
    else:
        console.print("[red]No load held the SLO.[/]")
