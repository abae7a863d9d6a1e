"""The text-embedding build report as rich tables on the terminal."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from tritonctl.console import console


def print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="text-embedding build (in-process, this machine)")
    table.add_column("variant", no_wrap=True)
    for column in ("MB", "min cos", "mean cos", "b1 ms", "b32/CPU-s", "b32/s 2thr"):
        table.add_column(column, justify="right")
    served = []
    for name, v in report["variants"].items():
        if v.get("served_as"):
            served.append(f"{v['served_as']} ← {name}")
        table.add_row(
            name,
            f"{v['size_mb']:.1f}",
            f"{v['min_cosine']:.5f}",
            f"{v['mean_cosine']:.5f}",
            f"{v['latency_ms_b1']:.2f}",
            f"{v['throughput_b32']:.0f}" if "throughput_b32" in v else "-",
            f"{v['throughput_b32_wall']:.0f}",
        )
    console.print(table)
    console.print("served: " + ", ".join(served))
    attempts = Table(title="INT8 techniques tried (min cosine ≥ 0.99 needed)")
    for column in ("technique", "min cos", "mean cos", "FP32 nodes"):
        attempts.add_column(column)
    for a in report.get("int8_attempts", []):
        attempts.add_row(
            a["technique"], f"{a['min_cosine']:.4f}", f"{a['mean_cosine']:.5f}",
            ", ".join(a["excluded_nodes"]) or "-",
        )  # fmt: skip
    console.print(attempts)
    trt = report.get("tensorrt", {})
    if not trt.get("built"):
        console.print(f"TensorRT: skipped ({escape(trt.get('skipped_because', 'unknown'))})")
    console.print(
        f"INT8 speed-up at batch 32: {report['int8_speedup_b32']:.2f}×; fused graph kept: "
        f"{report['optimization_kept']}; build {report.get('build_seconds', '?')} s"
    )
