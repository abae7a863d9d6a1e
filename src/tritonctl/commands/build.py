"""``tritonctl build``: convert real models into the model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonctl import paths


def register(subparsers: argparse._SubParsersAction) -> None:
    from tritonctl.recipes import RECIPES

    parser = subparsers.add_parser("build", help="convert models into model_repository/")
    parser.add_argument("recipe", choices=[*RECIPES, "all"])
    parser.add_argument("--model-repository", type=Path, default=None)
    parser.add_argument("--force", action="store_true", help="rebuild even if inputs are unchanged")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tritonctl.recipes import RECIPES, build
    from tritonctl.repository import sync_python_backends

    repository = args.model_repository or paths.model_repository()
    names = list(RECIPES) if args.recipe == "all" else [args.recipe]
    for name in names:
        build(name, repository, force=args.force)
        # Later recipes serve the repository (edge's round trip): it must hold the model.py files.
        sync_python_backends(repository, paths.python_backends())
    return 0
