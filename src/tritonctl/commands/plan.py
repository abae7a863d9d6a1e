"""``tritonctl plan``: replicas and HPA settings for a target load, written as a values override."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="plan replicas and autoscaling for a target load from measured capacity",
        description=(
            "replicas = ceil(target / (capacity x (1 - headroom))). The capacity is what one "
            "replica serves within the SLO: pass it with --capacity-rps, or --capacity-file "
            'pointing at the summary JSON of `tritonctl loadtest --find-capacity` ({"capacity": '
            '{"rps": <float>, "users": <int>}}).'
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
        "--capacity-file", type=Path, help="summary JSON of loadtest --find-capacity"
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tritonctl.console import console, err_console
    from tritonctl.k8s.plan import Capacity, PlanError, load_capacity, make_plan

    try:
        capacity = (
            load_capacity(args.capacity_file) if args.capacity_file else Capacity(args.capacity_rps)
        )
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
