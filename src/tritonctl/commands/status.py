"""``tritonctl status``: rollout, pod readiness and autoscaler state of a release."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="report a release's rollout, pods and HPA from the cluster"
    )
    parser.add_argument("--release", default="tritonctl")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--context", default=None)
    parser.set_defaults(func=run)


def render(status: Any) -> list[Any]:
    """rich renderables for a ``ReleaseStatus``."""
    from rich.table import Table

    out: list[Any] = []
    d = status.deployment
    if d is None:
        out.append(
            f"[red]no Deployment of release {status.release} in namespace {status.namespace}[/]"
        )
    else:
        colour = {"complete": "green", "progressing": "yellow", "failed": "red"}[d["state"]]
        out.append(
            f"Deployment {d['name']}: [{colour}]{d['state']}[/] ({d['detail']}); "
            f"{d['ready']}/{d['desired']} ready, image {d['image']}"
        )
    pods = Table("pod", "phase", "ready", "containers", "restarts", "node", "waiting", title="Pods")
    for p in status.pods:
        pods.add_row(
            p["name"], p["phase"], "[green]yes[/]" if p["ready"] else "[red]no[/]",
            p["ready_containers"], str(p["restarts"]), p["node"], p["waiting"],
        )  # fmt: skip
    out.append(pods)
    h = status.hpa
    if h is None:
        out.append("no HorizontalPodAutoscaler (autoscaling off)")
    else:
        hpa = Table("metric", "current", "target", title=(
            f"HPA {h['name']}: {h['current']} current, {h['desired']} desired ({h['min']}..{h['max']})"
        ))  # fmt: skip
        for m in h["metrics"]:
            hpa.add_row(m["metric"], m["current"], m["target"])
        out.append(hpa)
        if not h["scaling_active"]:
            out.append(f"[yellow]scaling inactive:[/] {h['scaling_message']}")
    return out


def run(args: argparse.Namespace) -> int:
    from tritonctl.console import console, err_console
    from tritonctl.k8s.status import ClusterUnavailable, collect_status

    try:
        status = collect_status(
            args.release, args.namespace, kubeconfig=args.kubeconfig, context=args.context
        )
    except ClusterUnavailable as error:
        err_console.print(f"[red]✗[/] {error}", highlight=False, soft_wrap=True)
        return 1
    for renderable in render(status):
        console.print(renderable)
    return 0 if status.healthy else 3
