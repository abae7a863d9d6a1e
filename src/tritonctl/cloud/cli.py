"""The cloud parts of the command line: ``serve --sagemaker|--vertex-ai``, ``package``,
``deploy --target sagemaker``. Each ``add_*`` adds arguments to a parser another module owns;
each ``run_*`` does the work (heavy imports inside)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from tritonctl import paths

if TYPE_CHECKING:
    from tritonctl.cloud.frontends import CloudTriton


def parse_size(text: str) -> int:
    """``64m``, ``1g``, ``65536``: bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64m, 1g)") from None


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("managed-cloud front ends (docs/cloud.md)")
    mode = group.add_mutually_exclusive_group()
    mode.add_argument(
        "--sagemaker",
        action="store_true",
        help="serve as a SageMaker endpoint does: its serve script's flags, /ping and /invocations",
    )
    mode.add_argument(
        "--vertex-ai",
        action="store_true",
        help="serve as Vertex AI does: AIP_* variables, the container spec's routes",
    )
    group.add_argument(
        "--model", default="text_embedding", help="the model the endpoint serves (cloud modes)"
    )
    group.add_argument(
        "--package",
        type=Path,
        default=None,
        help="serve this `tritonctl package` folder instead of staging --model afresh",
    )
    group.add_argument("--port", type=int, default=8080, help="the front end's port (8080)")
    group.add_argument(
        "--shm-size",
        type=parse_size,
        default=None,
        help="give the server a private /dev/shm of this size, e.g. 64m as on SageMaker "
        "(needs root or user namespaces)",
    )


def cloud_mode(args: argparse.Namespace) -> str:
    if getattr(args, "sagemaker", False):
        return "sagemaker"
    if getattr(args, "vertex_ai", False):
        return "vertex"
    return ""


def cloud_server(
    cloud: str,
    *,
    model: str,
    package_dir: Path | None = None,
    repository: Path | None = None,
    port: int | None = None,
    shm_size: int | None = None,
    log_file: Path | None = None,
) -> CloudTriton:
    """The front-end server for ``cloud`` over a package folder, or over ``model`` staged now."""
    from tritonctl.cloud import sagemaker, vertex
    from tritonctl.cloud.frontends import SageMakerTriton, VertexTriton
    from tritonctl.cloud.package import Options, image_uri, stage_model

    options = {"port": port, "shm_limit_bytes": shm_size, "log_file": log_file}
    if package_dir is not None:
        folder = Path(package_dir)
        if cloud == "sagemaker":
            env = json.loads((folder / "environment.json").read_text())
            return SageMakerTriton(folder / "model", env, **options)
        spec = json.loads((folder / "container-spec.json").read_text())
        return VertexTriton(folder / "model", spec, **options)
    staged = paths.cache_dir() / "cloud" / cloud / model
    _, plan = stage_model(cloud, repository or paths.model_repository(), model, staged)
    if cloud == "sagemaker":
        return SageMakerTriton(staged, sagemaker.container_environment(model, plan), **options)
    image = image_uri("vertex", Options().resolved("vertex"))
    return VertexTriton(staged, vertex.container_spec(model, image, plan), **options)


def run_serve(args: argparse.Namespace) -> int:
    from tritonctl.cloud.selection import SelectionError
    from tritonctl.cloud.shm import ShmError
    from tritonctl.console import console, err_console
    from tritonctl.server import ServerError

    cloud = cloud_mode(args)
    try:
        server = cloud_server(
            cloud,
            model=args.model,
            package_dir=args.package,
            repository=args.model_repository,
            port=args.port,
            shm_size=args.shm_size,
            log_file=args.log_file,
        )
    except (SelectionError, ShmError, FileNotFoundError) as error:
        err_console.print(f"[red]error:[/] {error}", soft_wrap=True)
        return 1
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        server.terminate()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with console.status(f"starting tritonserver as {cloud} starts it…"):
            server.start(timeout=args.timeout)
        endpoint = server.endpoint
        console.print(
            f"[green]ready[/]: {endpoint.cloud} contract on {server.url}  "
            f"predict POST {endpoint.predict_path}  health GET {endpoint.health_path}",
            soft_wrap=True,
        )
        console.print(
            f"[yellow]note[/]: Triton 2.51 binds this listener to 0.0.0.0 (no address flag): it "
            f"is reachable from the network while it runs. Log: {server.log_file}",
            soft_wrap=True,
        )
        while True:
            try:
                code = server.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                continue
        return 0 if stopping else (code or 1)
    except (ServerError, RuntimeError) as error:
        err_console.print(f"[red]error:[/] {error}", soft_wrap=True)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("SageMaker (--target sagemaker; docs/cloud.md)")
    group.add_argument(
        "--target",
        choices=("helm", "sagemaker"),
        default="helm",
        help="helm: install the chart (default); sagemaker: deploy a `tritonctl package` folder",
    )
    group.add_argument("--package", type=Path, default=None, help="the SageMaker package folder")
    group.add_argument("--kind", choices=("realtime", "serverless", "async"), default="realtime")
    group.add_argument("--region", default=None, help="AWS region (default: the image's)")
    group.add_argument(
        "--endpoint-url",
        default=None,
        help="another AWS API server, e.g. moto's emulator at http://127.0.0.1:5000",
    )


def run_deploy(args: argparse.Namespace) -> int:
    from tritonctl.cloud.deploy import DeployError, deploy_sagemaker
    from tritonctl.console import console, err_console

    if args.package is None:
        err_console.print(
            "[red]✗[/] --target sagemaker needs --package (from `tritonctl package sagemaker`)"
        )
        return 2
    try:
        described = deploy_sagemaker(
            args.package,
            kind=args.kind,
            region=args.region,
            endpoint_url=args.endpoint_url,
            wait=not args.no_wait,
            timeout_s=args.timeout,
            log=lambda line: console.print(f"• {line}", soft_wrap=True),
        )
    except (DeployError, FileNotFoundError) as error:
        err_console.print(f"[red]✗[/] {error}", highlight=False, soft_wrap=True)
        return 1
    where = f" (emulator at {args.endpoint_url})" if args.endpoint_url else ""
    console.print(
        f"[green]✓[/] {described['EndpointName']}: {described['EndpointStatus']}{where}",
        soft_wrap=True,
    )
    return 0


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("managed-cloud cost (--cloud; docs/cloud.md)")
    group.add_argument(
        "--cloud",
        choices=("aws", "gcp", "azure"),
        default=None,
        help="price the target load on this cloud's endpoints instead of writing chart values",
    )
    group.add_argument(
        "--instance-type",
        action="append",
        default=None,
        help="instance type to price (repeatable; default: every one in the price file)",
    )
    group.add_argument(
        "--prices",
        type=Path,
        default=None,
        help="price file to use instead of the shipped, dated one (same layout)",
    )
    group.add_argument(
        "--capacity-vcpus",
        type=float,
        default=2,
        help="vCPUs of the machine the capacity was measured on (default 2)",
    )
    group.add_argument("--json", type=Path, default=None, help="also write the plan as JSON")


def run_plan(args: argparse.Namespace, read_capacity: Callable[[argparse.Namespace], Any]) -> int:
    """``plan --cloud``: ``read_capacity`` is ``plan``'s own reader of the capacity inputs."""
    from rich.table import Table

    from tritonctl.cloud.pricing import PricingError, cost_plan, load_prices
    from tritonctl.console import console, err_console
    from tritonctl.k8s.plan import PlanError

    try:
        plan = cost_plan(
            load_prices(args.cloud, args.prices),
            target_rps=args.target_rps,
            capacity_rps=read_capacity(args).rps,
            capacity_vcpus=args.capacity_vcpus,
            headroom=args.headroom,
            min_instances=args.min_replicas,
            instance_types=args.instance_type,
        )
    except (PricingError, PlanError) as error:
        err_console.print(f"[red]✗[/] {error}", highlight=False, soft_wrap=True)
        return 2
    for line in plan.lines():
        console.print(f"• {line}", soft_wrap=True)
    table = Table(title=f"{args.target_rps:g} requests/s, headroom {args.headroom:.0%}")
    for column in (
        "instance type",
        "vCPUs",
        "req/s each",
        "instances",
        "$/hour",
        "$/month",
        "$ per 1M req",
        "utilisation",
    ):
        table.add_column(column, justify="left" if column == "instance type" else "right")
    for index, option in enumerate(plan.options):
        style = "bold green" if index == 0 else None
        table.add_row(
            option.instance.name,
            f"{option.instance.vcpus:g}",
            f"{option.per_instance_rps:.1f}",
            str(option.instances),
            f"{option.usd_per_hour:.3f}",
            f"{option.usd_per_month:,.2f}",
            f"{option.usd_per_million:.4f}",
            f"{option.utilisation:.0%}",
            style=style,
        )
    console.print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
        console.print(f"[green]✓[/] wrote {args.json}")
    return 0
