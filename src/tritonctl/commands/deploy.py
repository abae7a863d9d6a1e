"""``tritonctl deploy``: ``helm upgrade --install`` the chart, or render it with ``--dry-run``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonctl.cloud.cli import add_deploy_arguments
from tritonctl.cloud.cli import run_deploy as run_sagemaker


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="helm upgrade --install the chart (--dry-run: render the manifests, no cluster)",
    )
    parser.add_argument("--release", default="tritonctl")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument(
        "--chart", type=Path, default=None, help="chart folder (default helm/tritonctl)"
    )
    parser.add_argument(
        "-f", "--values", action="append", default=[], type=Path, help="values file (repeatable)"
    )
    parser.add_argument(
        "--set", action="append", default=[], dest="sets", help="key=value (repeatable)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="render with Helm's engine and print"
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="with --dry-run: write the manifests here"
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the rollout")
    parser.add_argument(
        "--timeout", type=int, default=900, help="seconds to wait (model loads are slow)"
    )
    add_deploy_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.target == "sagemaker":
        return run_sagemaker(args)
    from tritonctl.console import console, err_console
    from tritonctl.k8s.chart import ChartError, load_values
    from tritonctl.k8s.deploy import DeployError, Release, deploy, dry_run

    release = Release(args.release, args.namespace, args.chart)
    try:
        if args.dry_run:
            values = load_values(args.values, args.sets)
            text, notes = dry_run(release, values, args.output)
            if args.output:
                console.print(
                    f"[green]✓[/] rendered {text.count('# Source:')} manifests into {args.output}"
                )
            else:
                print(text, end="")
            err_console.print(notes, highlight=False, markup=False)
            return 0
        console.print(
            deploy(release, args.values, args.sets, wait=not args.no_wait, timeout_s=args.timeout)
        )
        console.print(
            f"next: tritonctl status --release {args.release} -n {args.namespace}; helm test {args.release}"
        )
        return 0
    except (ChartError, DeployError) as error:
        err_console.print(f"[red]✗[/] {error}", highlight=False, soft_wrap=True)
        return 1
