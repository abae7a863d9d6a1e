"""The edge table: a rich table on the terminal, Markdown for the README, and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritonctl.console import console

COLUMNS = (
    "bundle",
    "size",
    "gzip",
    "cold start",
    "p50 / p95 1 thread",
    "p50 / p95 all cores",
    "peak RSS",
    "accuracy / cosine",
    "served Triton c=1 p50 / p95",
)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _quality(row: dict[str, Any]) -> str:
    q = row["quality"]
    if "accuracy" in q:
        return f"{q['accuracy']:.2%} ({q['agreement_with_served']:.1%} = served)"
    return f"min cos {q['min_cosine']:.4f}"


def rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    served = report.get("served", {})
    for name, row in report["bundles"].items():
        one, every = row["bench"]["1"], row["bench"]["all"]
        trip = served.get(row["served"])
        out.append(
            [
                name,
                _size(row["model_bytes"]),
                _size(row["model_gzip_bytes"]),
                f"{one['cold_start_s'] * 1e3:.0f} ms",
                f"{one['p50_ms']:.2f} / {one['p95_ms']:.2f} ms",
                f"{every['p50_ms']:.2f} / {every['p95_ms']:.2f} ms",
                f"{one['peak_rss_mb']:.0f} MB",
                _quality(row),
                f"{trip['p50_ms']:.2f} / {trip['p95_ms']:.2f} ms ({row['served']})"
                if trip
                else "-",
            ]
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(report)]
    for name, reason in report.get("not_built", {}).items():
        lines.append(f"| {name} | not built: {reason} |" + " |" * (len(COLUMNS) - 2))
    return "\n".join(lines) + "\n"


def print_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"edge bundles (batch 1, {report['machine']})")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "bundle" else "right")
    for r in rows(report):
        table.add_row(*r)
    console.print(table)
    for name, reason in report.get("not_built", {}).items():
        console.print(f"[yellow]{name}: not built: {reason}[/]")


def chart(report: dict[str, Any], path: Path) -> Path:
    """p50 latency at batch 1 (1 thread) per bundle, with the served round trip beside it."""
    from tritonctl.plots import figure, save

    names = list(report["bundles"])
    fig, ax = figure(9.0, 0.45 * len(names) + 1.8)
    edge = [report["bundles"][n]["bench"]["1"]["p50_ms"] for n in names]
    served = [
        report.get("served", {}).get(report["bundles"][n]["served"], {}).get("p50_ms", 0.0)
        for n in names
    ]
    positions = range(len(names))
    ax.barh([p + 0.2 for p in positions], edge, height=0.4, label="on device (runner, 1 thread)")
    ax.barh([p - 0.2 for p in positions], served, height=0.4, label="served Triton, gRPC, c=1")
    ax.set_yticks(list(positions), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency at batch 1, ms (log scale; lower is better)")
    ax.set_title("On-device bundles vs. the served round trip")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    return save(fig, path)
