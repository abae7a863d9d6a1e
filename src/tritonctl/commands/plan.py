"""``tritonctl plan``: replicas and HPA settings for a target load, written as a values override."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tritonctl.cloud.cli import add_plan_arguments
from tritonctl.cloud.cli import run_plan as run_cloud

if TYPE_CHECKING:
    from tritonctl.k8s.plan import Capacity

#: ``--from-loadtest`` without a path: find the newest capacity report
LATEST = Path("<latest>")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="plan replicas and autoscaling for a target load from measured capacity",
        description=(
            "replicas = ceil(target / (capacity x (1 - headroom))). The capacity is the arrival "
            "rate one replica sustains within the SLO: --from-loadtest reads the newest "
            "reports/loadtest/<time>-<model>-<protocol>-capacity/summary.json written by "
            "`tritonctl loadtest --find-capacity` (or the report folder or file you name); "
            "--capacity-rps gives it by hand."
        ),
    )
    parser.add_argument(
        "--target-rps", type=float, required=True, help="peak load to serve (requests/s)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--capacity-rps", type=float, help="requests/s one replica serves within the SLO"
    )
    source.add_argument(
        "--from-loadtest",
        nargs="?",
        const=LATEST,
        type=Path,
        metavar="REPORT",
        help="capacity from loadtest --find-capacity: its summary.json or folder "
        "(default: the newest under reports/loadtest/)",
    )
    # The older name of --from-loadtest REPORT.
    source.add_argument("--capacity-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--model", help="with --from-loadtest and no REPORT: the newest search for this model"
    )
    parser.add_argument(
        "--headroom", type=float, default=0.3, help="spare fraction per replica (default 0.3)"
    )
    parser.add_argument(
        "--min-rps", type=float, default=None, help="off-peak load (default: the peak)"
    )
    parser.add_argument(
        "--min-replicas", type=int, default=2, help="availability floor (default 2)"
    )
    parser.add_argument(
        "--burst", type=float, default=2.0, help="HPA maximum = peak replicas x burst"
    )
    parser.add_argument(
        "--slo-ms", type=float, default=100.0, help="p95 latency SLO in ms (default 100)"
    )
    parser.add_argument(
        "--queue-share",
        type=float,
        default=0.2,
        help="queue-time target as a share of the SLO (default 0.2)",
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("values-override.yaml"))
    add_plan_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.cloud:
        return run_cloud(args, read_capacity)
    from tritonctl.console import console, err_console
    from tritonctl.k8s.plan import PlanError, make_plan

    try:
        capacity = read_capacity(args)
        plan = make_plan(
            args.target_rps,
            capacity,
            headroom=args.headroom,
            min_rps=args.min_rps,
            min_replicas_floor=args.min_replicas,
            burst=args.burst,
            slo_ms=args.slo_ms,
            queue_share=args.queue_share,
        )
    except PlanError as error:
        err_console.print(f"[red]✗[/] {error}", highlight=False, soft_wrap=True)
        return 2
    for line in plan.reasoning:
        console.print(f"• {line}", soft_wrap=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(plan.to_yaml())
    console.print(
        f"[green]✓[/] {plan.replicas} replicas at peak, HPA {plan.min_replicas}..{plan.max_replicas}: "
        f"wrote {args.output} (tritonctl deploy -f {args.output})",
        soft_wrap=True,
    )
    return 0


def read_capacity(args: argparse.Namespace) -> Capacity:
    """The capacity the plan divides by, from the command line or a capacity report."""
    from tritonctl import paths
    from tritonctl.k8s.plan import Capacity, latest_capacity_report, load_capacity

    if args.capacity_rps is not None:
        return Capacity(args.capacity_rps)
    report = args.from_loadtest or args.capacity_file
    if report == LATEST:
        report = latest_capacity_report(paths.reports_dir() / "loadtest", args.model)
    return load_capacity(report)
