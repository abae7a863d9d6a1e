"""The ``tritonctl`` command line: a thin layer over the library's functions.

Each subcommand is a module in ``tritonctl.commands`` with ``register(subparsers)``; it is
imported only when the command line is built, and its heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tritonctl import __version__

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (
    "serve",
    "check",
    "build",
    "infer",
    "loadtest",
    "bench",
    "tune",
    "plan",
    "package",
    "deploy",
    "status",
    "drift",
    "top",
    "edge",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tritonctl",
        description="Serve models with the real NVIDIA Triton Inference Server, locally and on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"tritonctl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tritonctl.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"tritonctl.commands.{name}":
                continue  # not written yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
