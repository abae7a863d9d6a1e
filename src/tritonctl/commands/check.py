"""``tritonctl check``: static checks of a model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonctl import paths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="check every config.pbtxt and model file")
    parser.add_argument("--model-repository", type=Path, default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tritonctl.check import check_repository
    from tritonctl.console import console

    repository = args.model_repository or paths.model_repository()
    problems = check_repository(repository)
    for problem in problems:
        console.print(f"[red]✗[/] {problem}", soft_wrap=True)
    if problems:
        console.print(f"[red]{len(problems)} problem(s)[/] in {repository}")
        return 1
    console.print(f"[green]✓[/] {repository}: no problems", soft_wrap=True)
    return 0
