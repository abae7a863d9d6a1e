"""The digits build report as a terminal table and a PNG chart of accuracy against latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tritonctl import plots
from tritonctl.console import console


def print_table(report: dict[str, Any]) -> None:
    table = Table(title=f"digits variants (held-out test set, {report['split']['test']} images)")
    for column in (
        "variant",
        "params",
        "nonzero",
        "MACs",
        "ONNX KiB",
        "gzip KiB",
        "accuracy",
        "Δ pts",
        "batch-1 ms",
        "batch-64 img/s",
    ):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, row in report["variants"].items():
        marker = " *" if name == report["default_variant"] else ""
        table.add_row(
            name + marker,
            f"{row['parameters']:,}",
            f"{row['nonzero_parameters']:,}",
            f"{row['macs']:,}",
            f"{row['onnx_bytes'] / 1024:.1f}",
            f"{row['onnx_gzip_bytes'] / 1024:.1f}",
            f"{row['accuracy']:.2%}",
            f"{row['points_below_teacher']:+.2f}",
            f"{row['latency_ms_batch1']:.3f}",
            f"{row['throughput_batch64']:,.0f}",
        )
    # Wide enough for every column even when the output is piped (rich then assumes 80).
    Console(file=console.file, width=max(console.width, 132), highlight=False).print(table)
    console.print(
        f"* digit_classifier serves {report['default_variant']}: {report['default_rule']}"
    )
    for gate, passed in report["gates"].items():
        console.print(f"  {'[green]pass[/]' if passed else '[red]FAIL[/]'}  {gate}")


def chart(report: dict[str, Any], path: Path) -> Path:
    """Held-out accuracy against batch-1 latency, one labelled point per variant."""
    fig, ax = plots.figure(7, 4.5)
    for name, row in report["variants"].items():
        ax.scatter(row["latency_ms_batch1"], row["accuracy"] * 100, s=40 + row["macs"] / 20_000)
        ax.annotate(
            name,
            (row["latency_ms_batch1"], row["accuracy"] * 100),
            textcoords="offset points",
            xytext=(6, 4),
        )
    floor = (report["teacher_accuracy"] * 100) - report["gate_points"]
    ax.axhline(
        floor,
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"gate: teacher − {report['gate_points']} pts",
    )
    ax.set_xlabel("in-process ONNX Runtime latency, batch 1 (ms, median)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("digits: accuracy against latency (marker size ∝ MACs)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return plots.save(fig, path, dpi=120)
