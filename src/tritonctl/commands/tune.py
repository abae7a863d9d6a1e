"""``tritonctl tune``: the highest-throughput batching/instance configuration that meets an SLO."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def _at_least_one(flag: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a whole number (got {text!r})"
            ) from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be at least 1 (got {value})")
        return value

    return parse


def _margin(text: str) -> float:
    """The noise margin: at 1 or more, "no throughput loss beyond noise" (worst round at
    least 1 - margin of the incumbent) would no longer refuse any loss."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--min-gain must be a number (got {text!r})") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"--min-gain must be in [0, 1) (got {value:g})")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="search batching, instances and threads for the best throughput within an SLO",
    )
    parser.add_argument("--model", required=True, help="a model or an ensemble (tunes its steps)")
    parser.add_argument(
        "--slo", type=Path, required=True, help="SLO profile (loadtests/slo/*.yaml)"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="measured seconds per run (the profile's)"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="warm-up seconds per run (the profile's)"
    )
    parser.add_argument(
        "--max-trials", type=_at_least_one("--max-trials"), default=24, help="cap on measured runs"
    )
    parser.add_argument(
        "--passes", type=_at_least_one("--passes"), default=2, help="coordinate-descent passes"
    )
    parser.add_argument("--concurrency", type=int, default=None, help="default: the SLO's users")
    parser.add_argument(
        "--knobs",
        default=None,
        help="search only these knobs (comma-separated, e.g. text_encoder.max_queue_delay_us)",
    )
    parser.add_argument("--dry-run", action="store_true", help="report, but do not write configs")
    parser.add_argument(
        "--unpaired",
        action="store_true",
        help="one server, no fresh incumbent next to each candidate (less robust to noise)",
    )
    parser.add_argument(
        "--min-gain",
        type=_margin,
        default=0.10,
        help="noise margin: a change must gain this share of throughput, and may lose no more "
        "than it in any round (default 0.10)",
    )
    parser.add_argument(
        "--confirm-rounds",
        type=_at_least_one("--confirm-rounds"),
        default=2,
        help="paired rounds (ABBA order) confirming each changed knob (default 2)",
    )
    parser.add_argument("--model-repository", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="report folder (reports/tune)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tritonctl import paths
    from tritonctl.console import console
    from tritonctl.loadtest.slo import ProfileError
    from tritonctl.tune import TuneOptions, tune
    from tritonctl.tune.report import show_diff, trials_table
    from tritonctl.tune.search import Trial, Verdict

    repository = args.model_repository or paths.model_repository()
    if not (repository / args.model / "config.pbtxt").is_file():
        console.print(f"[red]✗[/] no model {args.model!r} in {repository}")
        return 1
    options = TuneOptions(
        model=args.model,
        slo=args.slo,
        repository=repository,
        out_dir=args.out or paths.reports_dir() / "tune",
        warmup_s=args.warmup,
        duration_s=args.duration,
        max_trials=args.max_trials,
        max_passes=args.passes,
        apply=not args.dry_run,
        concurrency=args.concurrency,
        paired=not args.unpaired,
        min_gain=args.min_gain,
        confirm_rounds=args.confirm_rounds,
        knob_names=[k.strip() for k in args.knobs.split(",") if k.strip()] if args.knobs else None,
    )

    def on_trial(trial: Trial) -> None:
        f = trial.figures
        verdict = "[green]meets[/]" if trial.meets_slo else "[red]misses[/]"
        pair = trial.extra.get("paired_ratio")
        against = (
            f" ({pair:.2f}x run {trial.extra['incumbent']}, {trial.extra['order']})" if pair else ""
        )
        console.print(
            f"  run {trial.index}: {f.rps:.1f}/s{against} p50 {f.p50_ms:.1f} p95 {f.p95_ms:.1f}"
            f" p99 {f.p99_ms:.1f} ms {verdict}  {trial.candidate}",
            soft_wrap=True,
        )

    def on_knob(knob: str, verdict: Verdict) -> None:
        mark = "[green]kept[/]" if verdict.keep else "[red]dropped[/]"
        console.print(f"  confirm {knob}: {mark} ({verdict.reason})", soft_wrap=True)

    try:
        outcome = tune(options, on_trial=on_trial, on_knob=on_knob)
    except (ProfileError, ValueError, FileNotFoundError) as error:
        console.print(f"[red]✗[/] {error}")
        return 1
    console.print(trials_table(outcome.search))
    if not outcome.confirmation:
        console.print("confirmation: the search changed no knob")
    for diff in outcome.diffs.values():
        show_diff(diff)
    if not outcome.diffs:
        console.print("the current configuration is the best found: nothing to change")
    for path in outcome.written:
        console.print(f"wrote {path} (first backup kept as {path.name}.bak)")
    console.print(f"report: {outcome.report_dir / 'report.html'}")
    return 0
