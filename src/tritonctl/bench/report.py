"""The bench's ratios against the issue's targets, its terminal tables, JSON, PNG and RESULTS.md."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from tritonctl import plots
from tritonctl.bench.loadgen import Point
from tritonctl.bench.run import CONFIG_DESCRIPTIONS, CONFIG_NAMES, BenchResult
from tritonctl.console import console


@dataclass(frozen=True)
class Ratio:
    name: str
    value: float | None
    target: float
    kind: str  # "min": value >= target; "max": value <= target
    detail: str

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.kind == "min" else self.value <= self.target

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": None if self.value is None else round(self.value, 3),
            "target": self.target,
            "kind": self.kind,
            "met": self.met,
            "detail": self.detail,
        }


def _peak(points: list[Point]) -> Point | None:
    return max(points, key=lambda p: p.throughput) if points else None


def _at(points: list[Point], concurrency: int) -> Point | None:
    return next((p for p in points if p.concurrency == concurrency), None)


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(result: BenchResult) -> list[Ratio]:
    """b/a, b/c, b/d, e/b and the c=1 latency overhead, as the issue defines them."""
    b, c, d, e = (result.series(k) for k in "bcde")
    best_a = result.probes.get("a_best_batch", {}).get("throughput")
    peak_b, peak_c, peak_e = _peak(b), _peak(c), _peak(e)
    b16, d16, b1 = _at(b, 16), _at(d, 16), _at(b, 1)
    single = result.probes.get("a_single_request_ms")
    out = [
        Ratio(
            "b/a at saturation",
            _div(peak_b.throughput if peak_b else None, best_a),
            0.80,
            "min",
            "peak (b) over (a) at its best batch size",
        ),
        Ratio(
            "b/c",
            _div(peak_b.throughput if peak_b else None, peak_c.throughput if peak_c else None),
            1.8,
            "min",
            "peak throughput, with against without dynamic batching",
        ),
        Ratio(
            "b/d at c=16",
            _div(b16.throughput if b16 else None, d16.throughput if d16 else None),
            2.0,
            "min",
            "throughput at concurrency 16",
        ),
        Ratio(
            "e/b",
            _div(peak_e.throughput if peak_e else None, peak_b.throughput if peak_b else None),
            2.0,
            "min",
            "peak throughput, INT8 over FP32 ensemble",
        ),
        Ratio(
            "p50(b, c=1) - in-process single request",
            None if b1 is None or single is None else b1.p50_ms - float(single),
            2.0,
            "max",
            "milliseconds",
        ),
    ]
    return out


def points_table(result: BenchResult) -> Table:
    table = Table(title="tritonctl bench: throughput (sentences/s) and latency (ms)")
    for column in ("config", "c", "throughput", "p50", "p95", "p99", "errors", "client CPU"):
        table.add_column(
            column, justify="left" if column == "config" else "right", no_wrap=column == "config"
        )
    for key in "abcde":
        for point in result.series(key):
            table.add_row(
                point.config,
                str(point.concurrency),
                f"{point.throughput:.1f}",
                f"{point.p50_ms:.2f}",
                f"{point.p95_ms:.2f}",
                f"{point.p99_ms:.2f}",
                str(point.errors),
                f"{point.client_cpu_share * 100:.0f}%",
            )
    return table


def ratios_table(items: list[Ratio]) -> Table:
    table = Table(title="ratios against the targets")
    for column in ("ratio", "value", "target", "met", "how"):
        table.add_column(column)
    for ratio in items:
        sign = "≥" if ratio.kind == "min" else "≤"
        value = "n/a" if ratio.value is None else f"{ratio.value:.2f}"
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "n/a"}[ratio.met]
        table.add_row(ratio.name, value, f"{sign} {ratio.target}", met, ratio.detail)
    return table


def server_table(result: BenchResult, key: str = "b") -> Table:
    """Triton's per-model time per request at each concurrency: where the server spends it."""
    table = Table(title=f"Triton per-model statistics, configuration {key} (ms per request)")
    for column in ("c", "model", "queue", "input", "infer", "output", "batch"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, models in result.server_stats.items():
        config, _, concurrency = name.partition("@")
        if config != key:
            continue
        for model, delta in models.items():
            table.add_row(
                concurrency,
                model,
                f"{delta['avg_queue_ms']:.2f}",
                f"{delta['avg_compute_input_ms']:.2f}",
                f"{delta['avg_compute_infer_ms']:.2f}",
                f"{delta['avg_compute_output_ms']:.2f}",
                f"{delta['avg_batch_size']:.1f}",
            )
    return table


def plot(result: BenchResult, path: Path) -> Path:
    figure, axis = plots.figure(8, 5)
    for key in "abcde":
        points = result.series(key)
        if not points:
            continue
        axis.plot(
            [p.p95_ms for p in points],
            [p.throughput for p in points],
            marker="o",
            label=CONFIG_NAMES[key],
        )
        for p in points:
            axis.annotate(f"c={p.concurrency}", (p.p95_ms, p.throughput), fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel("p95 latency (ms, log scale)")
    axis.set_ylabel("throughput (sentences/s)")
    axis.set_title("text embedding: throughput against p95 latency")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    return plots.save(figure, path, dpi=120)


def to_json(result: BenchResult, items: list[Ratio]) -> dict[str, Any]:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": result.machine,
        "options": result.options,
        "points": [p.as_dict() for p in result.points],
        "ratios": [r.as_dict() for r in items],
        "server_stats": result.server_stats,
        "probes": result.probes,
        "profiles": result.profiles,
    }


def write(result: BenchResult, out_dir: Path) -> tuple[Path, Path, list[Ratio]]:
    items = ratios(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "bench.json"
    json_path.write_text(json.dumps(to_json(result, items), indent=2))
    png_path = plot(result, out_dir / "throughput_vs_p95.png")
    return json_path, png_path, items


def show(result: BenchResult, items: list[Ratio]) -> None:
    console.print(points_table(result))
    if any(k.startswith("b@") for k in result.server_stats):
        console.print(server_table(result, "b"))
    probes = result.probes
    if probes:
        console.print("[bold]probes[/]")
        for key, value in probes.items():
            console.print(f"  {key}: {json.dumps(value)}", soft_wrap=True)
    for profile in result.profiles:
        top = ", ".join(f"{name} {share * 100:.0f}%" for name, share in profile["top_self"][:4])
        console.print(
            f"  py-spy {profile['model']} (pid {profile['pid']}): busy {profile['busy'] * 100:.0f}%"
            f" of wall time; self time: {top or profile['error']}",
            soft_wrap=True,
        )
    console.print(ratios_table(items))


def results_markdown(result: BenchResult, items: list[Ratio], command: str) -> str:
    """The table section of ``benchmarks/RESULTS.md``."""
    m = result.machine
    lines = [
        "## Latest run",
        "",
        f"- Command: `{command}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB RAM, no GPU;"
        f" {m.get('os')}",
        f"- Software: Python {m.get('python')}, ONNX Runtime {m.get('onnxruntime')},"
        f" tritonserver {m.get('tritonserver')}",
        f"- Load average at start / end: {_loads(m.get('load_average_start'))} /"
        f" {_loads(m.get('load_average_end'))} (the cores were shared with other work)",
        f"- Window per point: warm-up {result.options.get('warmup_s')} s, measured"
        f" {result.options.get('duration_s')} s; corpus of {result.options.get('corpus_sentences')}"
        f" sentences; protocol {result.options.get('protocol')}",
        "",
        "Configurations:",
        "",
        *[f"- **{CONFIG_NAMES[k]}**: {CONFIG_DESCRIPTIONS[k]}" for k in "abcde"],
        "",
        "| config | concurrency | throughput (sent/s) | p50 ms | p95 ms | p99 ms | errors | client CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in "abcde":
        for p in result.series(key):
            lines.append(
                f"| {p.config} | {p.concurrency} | {p.throughput:.1f} | {p.p50_ms:.2f} |"
                f" {p.p95_ms:.2f} | {p.p99_ms:.2f} | {p.errors} | {p.client_cpu_share * 100:.0f}% |"
            )
    best = result.probes.get("a_best_batch", {})
    if best:
        lines += [
            "",
            f"(a) at its best batch size ({best.get('concurrency')}):"
            f" {best.get('throughput', 0):.1f} sentences/s; in-process single request"
            f" p50 {result.probes.get('a_single_request_ms', 0):.2f} ms.",
        ]
    lines += ["", "| ratio | value | target | met |", "| --- | ---: | ---: | --- |"]
    for r in items:
        sign = "≥" if r.kind == "min" else "≤"
        value = "n/a" if r.value is None else f"{r.value:.2f}"
        met = {True: "yes", False: "**no**", None: "n/a"}[r.met]
        lines.append(f"| {r.name} | {value} | {sign} {r.target} | {met} |")
    return "\n".join(lines) + "\n"


def _loads(values: Any) -> str:
    return ", ".join(f"{v:.2f}" for v in values) if values else "?"


RESULTS_MARK = "<!-- tritonctl bench: latest run -->"


def update_results_file(path: Path, section: str) -> Path:
    """Replace the generated section of ``RESULTS.md`` (after the marker), keeping the notes above."""
    head = path.read_text().split(RESULTS_MARK)[0] if path.exists() else "# Benchmark results\n\n"
    path.write_text(head.rstrip() + "\n\n" + RESULTS_MARK + "\n\n" + section)
    return path
