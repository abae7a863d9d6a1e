"""``tritonctl loadtest``: does this deployment meet its SLO at the expected load?

Exit code 0 when every objective holds, 1 when one or more missed (each is named, with by how
much), 2 when the test could not run at all (no server answering, a bad profile, ...).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tritonctl import paths


def duration(text: str) -> float:
    """Seconds from ``30``, ``30s``, ``2m`` or ``1m30s``."""
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30, 30s, 2m)")
    minutes, seconds = match.groups()
    return float(minutes or 0) * 60 + float(seconds or 0)


def rate_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected request rates like 10,20,40 (got {text!r})"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"rates must be positive (got {text!r})")
    return values


def user_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected user counts like 1,2,4,8 (got {text!r})"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"user counts must be positive (got {text!r})")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "loadtest",
        help="Locust load test with SLO checks, a report folder and a pass/fail exit code",
        description=(
            "Run Locust headless against Triton, discard the warm-up, check the SLO profile's "
            "objectives and write CSV, summary.json and report.html. Exit 0 when every "
            "objective holds, 1 when any is missed, 2 when the test could not run."
        ),
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--target",
        metavar="URL",
        help="server to test: http://HOST:8000 or grpc://HOST:8001 (ports +1/+2 are gRPC/metrics)",
    )
    where.add_argument(
        "--local",
        action="store_true",
        help="start the local server for the model, stop it afterwards (the default)",
    )
    parser.add_argument("--metrics-url", help="Triton's /metrics (default: derived from --target)")
    parser.add_argument(
        "--slo",
        type=Path,
        metavar="FILE",
        help="SLO profile (default: loadtests/slo/<model>.yaml when there is one)",
    )
    parser.add_argument(
        "--model", help="model to call (default: the profile's, else text_embedding)"
    )
    parser.add_argument("--protocol", choices=("grpc", "http"))
    load = parser.add_mutually_exclusive_group()
    load.add_argument(
        "--rate",
        type=float,
        metavar="RPS",
        help="open loop: send RPS requests/s whatever the answers (latency from each due time)",
    )
    load.add_argument("--users", type=int, help="closed loop: N users, each waits for its answer")
    load.add_argument(
        "--closed-loop",
        action="store_true",
        help="closed loop with the profile's users (and --find-capacity raises users)",
    )
    parser.add_argument(
        "--arrivals", choices=("poisson", "constant"), help="open-loop arrivals (default poisson)"
    )
    parser.add_argument("--spawn-rate", type=float, help="closed loop: users started per second")
    parser.add_argument(
        "--duration", type=duration, help="measured time, after the warm-up (e.g. 30s)"
    )
    parser.add_argument("--warmup", type=duration, help="warm-up to discard (e.g. 5s)")
    parser.add_argument(
        "--drain",
        type=duration,
        help="load kept on after the window so its last requests can finish "
        "(default 1.5x the largest latency objective)",
    )
    parser.add_argument("--shape", choices=("constant", "step", "ramp"), help="load shape")
    parser.add_argument(
        "--workers", type=int, default=0, help="Locust worker processes (0: one process)"
    )
    parser.add_argument("--p50", type=float, metavar="MS", help="override the p50 objective")
    parser.add_argument("--p95", type=float, metavar="MS", help="override the p95 objective")
    parser.add_argument("--p99", type=float, metavar="MS", help="override the p99 objective")
    parser.add_argument(
        "--max-error-ratio",
        type=float,
        help="override the error objective (0..1; default 0 unless the profile sets it)",
    )
    parser.add_argument("--min-rps", type=float, help="override the throughput objective")
    parser.add_argument(
        "--find-capacity",
        action="store_true",
        help="search the highest arrival rate that holds the SLO (closed loop: users)",
    )
    parser.add_argument(
        "--capacity-rates",
        type=rate_list,
        metavar="R,R,...",
        help="arrival rates to try with --find-capacity (default: the profile's, else a search)",
    )
    parser.add_argument(
        "--capacity-users",
        type=user_list,
        metavar="N,N,...",
        help="user counts to try with --find-capacity --closed-loop (default: the profile's)",
    )
    parser.add_argument(
        "--repeats", type=int, help="--find-capacity: runs per step (default: the profile's, 3)"
    )
    parser.add_argument(
        "--required",
        type=int,
        help="--find-capacity: runs of a step that must hold (default: the profile's, 2)",
    )
    parser.add_argument(
        "--report-dir", type=Path, help="default: reports/loadtest/<time>-<model>-<protocol>"
    )
    parser.set_defaults(func=run)


def default_profile(model: str | None) -> tuple[Path | None, str]:
    """``loadtests/slo/<model>.yaml`` if it exists, and a hint naming a close match if not."""
    import difflib

    folder = paths.project_root() / "loadtests" / "slo"
    name = model or "text_embedding"
    candidate = folder / f"{name}.yaml"
    if candidate.exists():
        return candidate, ""
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return None, f"No SLO profile for model {name!r} in {folder}{hint}."


def run(args: argparse.Namespace) -> int:
    from tritonctl.console import console, err_console
    from tritonctl.loadtest import (
        LoadTestError,
        ProfileError,
        Target,
        find_capacity,
        local_server,
        run_loadtest,
    )
    from tritonctl.loadtest.run import default_report_dir, resolve_profile
    from tritonctl.server import ServerError

    closed = args.closed_loop or args.users is not None
    overrides = {
        "model": args.model,
        "protocol": args.protocol,
        "mode": "closed" if closed else ("open" if args.rate is not None else None),
        "users": args.users,
        "rate_rps": args.rate,
        "arrivals": args.arrivals,
        "spawn_rate": args.spawn_rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "drain_s": args.drain,
        "shape": args.shape,
        "p50_ms": args.p50,
        "p95_ms": args.p95,
        "p99_ms": args.p99,
        "max_error_ratio": args.max_error_ratio,
        "min_rps": args.min_rps,
        "capacity_users": args.capacity_users,
        "capacity_rates": args.capacity_rates,
        "capacity_repeats": args.repeats,
        "capacity_required": args.required,
    }
    if args.slo is None:
        args.slo, hint = default_profile(args.model)
        if args.slo is not None:
            console.print(f"SLO profile: {args.slo.relative_to(paths.project_root())}")
        else:
            console.print(f"[yellow]{hint}[/]", soft_wrap=True)
    try:
        if args.find_capacity:
            mode = "closed" if closed or args.capacity_users else "open"
            if mode == "open":
                overrides["mode"] = None  # each step sets its own rate
            profile = resolve_profile(args.slo, **overrides)
            folder = args.report_dir or default_report_dir(profile, "capacity")
            if args.target:
                target = Target.from_url(args.target, args.metrics_url)
                outcome = find_capacity(
                    profile,
                    target,
                    folder,
                    mode=mode,
                    workers=args.workers,
                    console=console,
                    check_target=True,
                )
            else:
                with local_server(profile.model) as server:
                    outcome = find_capacity(
                        profile,
                        Target.from_server(server),
                        folder,
                        mode=mode,
                        workers=args.workers,
                        console=console,
                    )
            for line in outcome.summary["failed"]:
                err_console.print(f"[red]FAILED[/] {line}", soft_wrap=True)
            console.print(f"Report: {outcome.report_dir / 'report.html'}", soft_wrap=True)
            return outcome.exit_code
        result = run_loadtest(
            args.slo,
            target=args.target,
            metrics_url=args.metrics_url,
            report_dir=args.report_dir,
            workers=args.workers,
            console=console,
            **overrides,
        )
    except (ProfileError, LoadTestError, ServerError) as error:
        err_console.print(f"[red]loadtest could not run:[/] {error}", soft_wrap=True)
        return 2
    for line in result.failed:
        err_console.print(f"[red]FAILED[/] {line}", soft_wrap=True)
    if result.passed and result.summary["note"]:
        console.print(
            "[yellow]No errors, but no latency or throughput objective was set: this is not "
            "an SLO verdict.[/]",
            soft_wrap=True,
        )
    elif result.passed:
        console.print("[green]Every objective held.[/]")
    console.print(f"Report: {result.report}", soft_wrap=True)
    return result.exit_code
