"""``tritonctl drift FILE``: drift scores of an offline sample against the reference profile."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tritonctl.drift_window import MIN_SAMPLES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "drift",
        help="score a sample for drift (PSI, low-confidence share) against the reference profile",
        description=(
            "FILE is a text file of sentences (one per line) for the text model, or a folder of "
            "images / an .npz of 8x8 arrays for the digits model. PSI < 0.1 is stable, "
            "0.1-0.25 a moderate shift, > 0.25 a significant one. A sample needs at least "
            f"{MIN_SAMPLES} items for a verdict: smaller ones score high by chance."
        ),
    )
    parser.add_argument("file", type=Path, help="sentences (.txt), image folder, or .npz/.npy")
    parser.add_argument(
        "--model", choices=["auto", "text", "digits"], default="auto", help="which pipeline"
    )
    parser.add_argument("--model-repository", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from tritonctl.console import console, err_console
    from tritonctl.drift import TOO_FEW, DriftError, score_file

    try:
        scores = score_file(args.file, args.model, args.model_repository)
    except DriftError as error:
        err_console.print(f"[red]error:[/] {error}")
        return 2
    if scores.warning:
        err_console.print(f"[yellow]warning:[/] {scores.warning}", soft_wrap=True)
    if args.json:
        print(json.dumps(scores.as_dict(), indent=2, allow_nan=False))
        return 0
    colours = {"stable": "green", "moderate shift": "yellow", TOO_FEW: "yellow"}
    colour = colours.get(scores.verdict, "red")
    table = Table(title=f"drift of {args.file} ({scores.model}, {scores.samples} samples)")
    table.add_column("score")
    table.add_column("value", justify="right")
    for signal, value in scores.psi.items():
        table.add_row(f"PSI {signal}", f"{value:.4f}")
    table.add_row("low-confidence ratio", f"{scores.low_confidence_ratio:.3f}")
    table.add_row("verdict", f"[{colour}]{scores.verdict}[/]")
    console.print(table)
    return 0
