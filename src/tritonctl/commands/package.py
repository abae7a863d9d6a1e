"""``tritonctl package sagemaker|vertex|azureml``: deployable artefacts, checked offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "package",
        help="write a SageMaker, Vertex AI or Azure ML package of one model (docs/cloud.md)",
        description=(
            "Stage the model and the models it needs, write the cloud's request bodies or YAML "
            "and the commands to run, and check them offline with the cloud's own SDK. The "
            "defaults for account, bucket, project and registry are documentation placeholders."
        ),
    )
    parser.add_argument("cloud", choices=("sagemaker", "vertex", "azureml"))
    parser.add_argument(
        "--model", default="text_embedding", help="text_embedding, digit_classifier, ..."
    )
    parser.add_argument("--model-repository", type=Path, default=None)
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="default dist/cloud/<cloud>/<model>"
    )
    parser.add_argument("--name", default="", help="resource name (default tritonctl-<model>)")
    parser.add_argument("--region", default="")
    parser.add_argument("--instance-type", default="")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument(
        "--triton-release",
        choices=("25.08", "24.10"),
        default="25.08",
        help="NGC release the serving image is built on: 25.08 (the chart's, CVE fixes) or "
        "24.10 (Triton 2.51.0, the server tested here)",
    )
    aws = parser.add_argument_group("SageMaker")
    aws.add_argument("--account", default="111122223333")
    aws.add_argument("--bucket", default="amzn-s3-demo-bucket")
    aws.add_argument("--role-arn", default="")
    gcp = parser.add_argument_group("Vertex AI")
    gcp.add_argument("--project", default="example-project")
    gcp.add_argument("--gcs-bucket", default="example-bucket")
    azure = parser.add_argument_group("Azure ML")
    azure.add_argument("--registry", default="exampleregistry", help="Azure Container Registry")
    parser.add_argument("--no-validate", action="store_true", help="skip the offline SDK checks")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tritonctl import paths
    from tritonctl.cloud.package import Options, package
    from tritonctl.cloud.selection import SelectionError
    from tritonctl.cloud.shm import ShmError
    from tritonctl.console import console, err_console

    options = Options(
        name=args.name,
        region=args.region,
        account=args.account,
        bucket=args.bucket,
        role_arn=args.role_arn,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        project=args.project,
        gcs_bucket=args.gcs_bucket,
        registry=args.registry,
        release=args.triton_release,
    )
    out = args.output or paths.project_root() / "dist" / "cloud" / args.cloud / args.model
    try:
        with console.status(f"packaging {args.model} for {args.cloud}…"):
            built = package(
                args.cloud,
                args.model_repository or paths.model_repository(),
                args.model,
                out,
                options,
            )
    except (SelectionError, ShmError) as error:
        err_console.print(f"[red]✗[/] {error}", highlight=False, soft_wrap=True)
        return 1
    console.print(f"[green]✓[/] {built.cloud} package of {built.model} in {out}")
    console.print(f"  models: {', '.join(built.models)}")
    console.print(f"  image:  {built.image}")
    for line in built.shm.lines():
        console.print(f"  shm:    {line}", soft_wrap=True)
    if not args.no_validate:
        from tritonctl.cloud.validate import check

        problems = check(out)
        for problem in problems:
            err_console.print(f"[red]✗[/] {problem}", highlight=False, soft_wrap=True)
        if problems:
            return 1
        console.print(f"[green]✓[/] validated offline with the {built.cloud} SDK")
    if options.placeholders:
        console.print(
            f"[yellow]placeholders[/]: {', '.join(options.placeholders)} — pass your own before running",
            soft_wrap=True,
        )
    console.print(f"\nthe commands ({out / 'commands.sh'}):")
    for line in built.commands:
        console.print(
            line, style="dim" if line.startswith("#") else None, soft_wrap=True, markup=False
        )
    return 0
