"""The digits build report as a terminal table and a PNG chart of accuracy against latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tritonctl import plots
from tritonctl.console import console


def print_table(report: dict[str, Any]) -> None:
    split = report["split"]
    table = Table(
        title=f"digits variants (test {split['test']} images; default chosen on validation, "
        f"{split['validation']} images)"
    )
    columns = (
        "variant", "params", "nonzero", "MACs", "ONNX KiB", "gzip KiB", "val acc",
        "test acc [95% CI]", "Δ pts", "McNemar p", "batch-1 ms", "batch-64 img/s",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, row in report["variants"].items():
        marker = " *" if name == report["default_variant"] else ""
        low, high = row["accuracy_ci95"]
        paired = row.get("vs_teacher_test")
        table.add_row(
            name + marker,
            f"{row['parameters']:,}",
            f"{row['nonzero_parameters']:,}",
            f"{row['macs']:,}",
            f"{row['onnx_bytes'] / 1024:.1f}",
            f"{row['onnx_gzip_bytes'] / 1024:.1f}",
            f"{row['validation_accuracy']:.2%}",
            f"{row['accuracy']:.2%} [{low:.1%}, {high:.1%}]",
            f"{row['points_below_teacher']:+.2f}",
            "-" if paired is None else f"{paired['mcnemar_p']:.2f}",
            f"{row['latency_ms_batch1']:.3f}",
            f"{row['throughput_batch64']:,.0f}",
        )
    # Wide enough for every column even when the output is piped (rich then assumes 80).
    Console(file=console.file, width=max(console.width, 160), highlight=False).print(table)
    console.print(
        f"* digit_classifier serves {report['default_variant']}: {report['default_rule']}"
    )
    console.print(report["significance"])
    for gate, passed in report["gates"].items():
        console.print(f"  {'[green]pass[/]' if passed else '[red]FAIL[/]'}  {gate}")


def chart(report: dict[str, Any], path: Path) -> Path:
    """Held-out accuracy against batch-1 latency, one labelled point per variant."""
    fig, ax = plots.figure(7, 4.5)
    for name, row in report["variants"].items():
        low, high = (v * 100 for v in row["accuracy_ci95"])
        y = row["accuracy"] * 100
        ax.errorbar(
            row["latency_ms_batch1"],
            y,
            yerr=[[y - low], [high - y]],
            fmt="none",
            ecolor="grey",
            capsize=3,
        )
        ax.scatter(row["latency_ms_batch1"], y, s=40 + row["macs"] / 20_000)
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
    ax.set_ylabel("held-out accuracy (%), 95 % Wilson interval")
    ax.set_title("digits: accuracy against latency (marker size ∝ MACs)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return plots.save(fig, path, dpi=120)
