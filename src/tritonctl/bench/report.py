"""The bench's goals table, points table, JSON, plot, HTML report and RESULTS.md section."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from tritonctl import plots
from tritonctl.bench.goals import Goal, Verdict, bench_goals, informational, judge, summary
from tritonctl.bench.run import CONFIGS, BenchResult
from tritonctl.console import console

ACCURACY = {
    "fp32": ("FP32 served vs in-process, min cosine", 0.9999),
    "int8": ("INT8 served vs FP32 in-process, min cosine", 0.99),
}


def verdicts(result: BenchResult) -> list[Verdict]:
    """Every goal judged over the rounds, then goal 5's accuracy checks."""
    corpora = list(result.options.get("corpora", {}))
    c16 = int(result.options.get("single_concurrency", 16))
    bulk = [tuple(b) for b in result.options.get("bulk", [])]
    goals = bench_goals(corpora, c16, bulk) + informational(corpora, c16, bulk)
    out = [judge(goal, result.rounds) for goal in goals]
    out = [v for v in out if v.values or v.errors]  # goals whose points were not run: left out
    for key, (name, target) in ACCURACY.items():
        figures = result.accuracy.get(key)
        if figures:
            goal = Goal(f"5 ({key} accuracy)", name, target, "min", (), lambda _: None)
            out.append(Verdict(goal, values=[float(figures["min_cosine"])]))
    return out


def _status(verdict: Verdict, rich: bool) -> str:
    if verdict.goal.number.startswith("info"):
        return "(info)"
    text = verdict.status
    if not rich:
        return {"met": "met", "not met": "**not met**"}.get(text, f"**{text}**")
    return {"met": "[green]met[/]", "not met": "[red]not met[/]"}.get(text, f"[red]{text}[/]")


def _target(verdict: Verdict) -> str:
    goal = verdict.goal
    if goal.number.startswith("info"):
        return ""
    return f"{'≥' if goal.kind == 'min' else '≤'} {goal.target:g}{goal.unit.strip()}"


def _value(verdict: Verdict) -> str:
    digits = 4 if verdict.goal.number.endswith("accuracy)") else 2
    return "n/a" if verdict.value is None else f"{verdict.value:.{digits}f}"


def goals_table(items: list[Verdict]) -> Table:
    table = Table(title="goals (median over rounds; met only when the whole interval clears it)")
    for column in ("goal", "what", "value", "min–max", "target", "status"):
        table.add_column(column, no_wrap=column in ("goal", "min–max"))
    for v in items:
        digits = 4 if v.goal.number.endswith("accuracy)") else 2
        table.add_row(
            v.goal.number, v.goal.name, _value(v), v.interval(digits), _target(v), _status(v, True)
        )
    return table


def point_rows(result: BenchResult) -> list[dict[str, Any]]:
    """One row per point key: medians and ranges over the rounds."""
    rows = []
    for key in result.point_keys():
        points = result.series(key)
        figures = summary(points)
        cpu = [float(p.extra["cpu_ms_per_item"]) for p in points if "cpu_ms_per_item" in p.extra]
        rows.append(
            {
                "key": key,
                "concurrency": points[0].concurrency,
                "items_per_request": points[0].items_per_request,
                "layout": points[0].extra.get("layout", ""),
                **{k: round(v, 3) for k, v in figures.items()},
                "cpu_ms_per_item": round(sorted(cpu)[len(cpu) // 2], 3) if cpu else None,
                "first_error": next((p.first_error for p in points if p.errors), ""),
            }
        )
    return rows


def points_table(result: BenchResult) -> Table:
    table = Table(title="points: texts (images) per second and latency per request, over rounds")
    for column in (
        "point",
        "c",
        "per req",
        "throughput",
        "min–max",
        "p50",
        "p95",
        "p99",
        "errors",
        "CPU ms/item",
    ):
        table.add_column(column, justify="left" if column == "point" else "right", no_wrap=True)
    for row in point_rows(result):
        table.add_row(
            row["key"],
            str(row["concurrency"]),
            str(row["items_per_request"]),
            f"{row['throughput']:.1f}",
            f"{row['throughput_low']:.0f}–{row['throughput_high']:.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            str(int(row["errors"])),
            "" if row["cpu_ms_per_item"] is None else f"{row['cpu_ms_per_item']:.2f}",
        )
    return table


def server_table(result: BenchResult) -> Table:
    """Triton's per-model time per request (last round) for the served text points."""
    table = Table(title="Triton per-model statistics, last round (ms per request)")
    for column in ("point", "model", "queue", "input", "infer", "output", "batch"):
        table.add_column(column, justify="left" if column in ("point", "model") else "right")
    for key, models in result.server_stats.items():
        for model, delta in models.items():
            if not delta.get("success"):
                continue
            table.add_row(
                key,
                model,
                f"{delta['avg_queue_ms']:.2f}",
                f"{delta['avg_compute_input_ms']:.2f}",
                f"{delta['avg_compute_infer_ms']:.2f}",
                f"{delta['avg_compute_output_ms']:.2f}",
                f"{delta['avg_batch_size']:.1f}",
            )
    return table


def plot(result: BenchResult, path: Path) -> Path:
    """Median throughput per point with its min–max over rounds, one panel per corpus."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in point_rows(result):
        groups.setdefault(row["key"].split("/", 1)[0], []).append(row)
    figure, _ = plots.figure(4.2 * max(len(groups), 1), 4.5)
    figure.clf()
    axes = figure.subplots(1, max(len(groups), 1), squeeze=False)[0]
    for axis, (corpus, rows) in zip(axes, groups.items(), strict=False):
        labels = [r["key"].split("/", 1)[1] for r in rows]
        values = [r["throughput"] for r in rows]
        low = [r["throughput"] - r["throughput_low"] for r in rows]
        high = [r["throughput_high"] - r["throughput"] for r in rows]
        colours = ["#888888" if lab.startswith("a-") else "#1f77b4" for lab in labels]
        axis.barh(labels, values, xerr=[low, high], color=colours, capsize=3)
        axis.invert_yaxis()
        axis.set_title(corpus)
        axis.set_xlabel("items/s (median, min–max over rounds)")
        axis.grid(True, axis="x", alpha=0.3)
    figure.suptitle("tritonctl bench (grey: in-process limits)")
    return plots.save(figure, path, dpi=110)


def to_json(result: BenchResult, items: list[Verdict]) -> dict[str, Any]:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": result.machine,
        "options": result.options,
        "goals": [v.as_dict() for v in items],
        "points": point_rows(result),
        "rounds": [{k: p.as_dict() for k, p in points.items()} for points in result.rounds],
        "selection": result.selection,
        "accuracy": result.accuracy,
        "server_stats": result.server_stats,
        "probes": result.probes,
        "profiles": result.profiles,
    }


def html_report(result: BenchResult, items: list[Verdict], png: Path) -> str:
    """A self-contained page: goals, points, the plot, the machine."""
    goal_rows = "".join(
        f"<tr><td>{html.escape(v.goal.number)}</td><td>{html.escape(v.goal.name)}</td>"
        f"<td>{_value(v)}</td><td>{v.interval(4 if v.goal.number.endswith('accuracy)') else 2)}</td>"
        f"<td>{html.escape(_target(v))}</td><td>{html.escape(_status(v, False).strip('*'))}</td></tr>"
        for v in items
    )
    point_html = "".join(
        f"<tr><td>{html.escape(r['key'])}</td><td>{r['concurrency']}</td><td>{r['items_per_request']}</td>"
        f"<td>{r['throughput']:.1f}</td><td>{r['throughput_low']:.0f}–{r['throughput_high']:.0f}</td>"
        f"<td>{r['p50_ms']:.2f}</td><td>{r['p95_ms']:.2f}</td><td>{int(r['errors'])}</td></tr>"
        for r in point_rows(result)
    )
    machine = html.escape(json.dumps(result.machine))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>tritonctl bench</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>"
        f"</head><body><h1>tritonctl bench</h1><p>{machine}</p>"
        "<h2>Goals</h2><table><tr><th>goal</th><th>what</th><th>median</th><th>min–max</th>"
        f"<th>target</th><th>status</th></tr>{goal_rows}</table>"
        "<h2>Points</h2><table><tr><th>point</th><th>c</th><th>items/request</th><th>items/s</th>"
        f"<th>min–max</th><th>p50 ms</th><th>p95 ms</th><th>errors</th></tr>{point_html}</table>"
        f"{plots.img_tag(png.read_bytes(), 'throughput per point')}</body></html>"
    )


def write(result: BenchResult, out_dir: Path) -> tuple[Path, Path, list[Verdict]]:
    items = verdicts(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "bench.json"
    json_path.write_text(json.dumps(to_json(result, items), indent=2))
    png_path = plot(result, out_dir / "throughput.png")
    (out_dir / "report.html").write_text(html_report(result, items, png_path))
    return json_path, png_path, items


def show(result: BenchResult, items: list[Verdict]) -> None:
    width = max(console.width, 150)  # a log or a pipe gets 80 columns: the tables need more
    console.print(points_table(result), width=width)
    if result.server_stats:
        console.print(server_table(result), width=width)
    for name, found in result.selection.items():
        console.print(f"  limit search ({name}): {json.dumps(found)}", soft_wrap=True)
    for key, value in {**result.probes, "accuracy": result.accuracy}.items():
        console.print(f"  {key}: {json.dumps(value)}", soft_wrap=True)
    for profile in result.profiles:
        top = ", ".join(f"{name} {share * 100:.0f}%" for name, share in profile["top_self"][:4])
        console.print(
            f"  py-spy {profile['model']} (pid {profile['pid']}): busy {profile['busy'] * 100:.0f}%"
            f" of wall time; self time: {top or profile['error']}",
            soft_wrap=True,
        )
    console.print(goals_table(items), width=width)


def results_markdown(result: BenchResult, items: list[Verdict], command: str) -> str:
    """The generated section of ``benchmarks/RESULTS.md``."""
    m, o = result.machine, result.options
    lines = [
        "## Latest run",
        "",
        f"- Command: `{command}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {m.get('cpu')} ({m.get('cpu_flags') or 'no AVX2'}), {m.get('cores')} cores,"
        f" {m.get('memory_gib')} GiB RAM, no GPU; {m.get('os')}",
        f"- Software: Python {m.get('python')}, ONNX Runtime {m.get('onnxruntime')},"
        f" tritonserver {m.get('tritonserver')}",
        f"- Load average at start / end: {_loads(m.get('load_average_start'))} /"
        f" {_loads(m.get('load_average_end'))}",
        f"- {o.get('rounds')} interleaved rounds; per point warm-up {o.get('warmup_s')} s, measured"
        f" {o.get('duration_s')} s; corpora {o.get('corpora')}; buckets {o.get('buckets')};"
        f" protocol {o.get('protocol')}",
        "",
        "Configurations: "
        + "; ".join(f"**{k}** {v}" for k, v in CONFIGS.items() if k in o.get("configs", "")),
        "",
        "| goal | what | median | min–max | target | status |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for v in items:
        digits = 4 if v.goal.number.endswith("accuracy)") else 2
        lines.append(
            f"| {v.goal.number} | {v.goal.name} | {_value(v)} | {v.interval(digits)} |"
            f" {_target(v)} | {_status(v, False)} |"
        )
    lines += [
        "",
        "| point | c | texts/request | items/s (median) | min–max | p50 ms | p95 ms | p99 ms | errors | CPU ms/item |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in point_rows(result):
        cpu = "" if r["cpu_ms_per_item"] is None else f"{r['cpu_ms_per_item']:.2f}"
        lines.append(
            f"| {r['key']} | {r['concurrency']} | {r['items_per_request']} | {r['throughput']:.1f} |"
            f" {r['throughput_low']:.0f}–{r['throughput_high']:.0f} | {r['p50_ms']:.2f} |"
            f" {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {int(r['errors'])} | {cpu} |"
        )
    for name, found in result.selection.items():
        lines += ["", f"Limit search ({name}): `{json.dumps(found)}`"]
    if result.probes.get("cpu_ms_per_text_c16"):
        lines += [
            "",
            f"CPU ms per text at c=16, by process: `{json.dumps(result.probes['cpu_ms_per_text_c16'])}`",
        ]
    return "\n".join(lines) + "\n"


def _loads(values: Any) -> str:
    return ", ".join(f"{v:.2f}" for v in values) if values else "?"


RESULTS_MARK = "<!-- tritonctl bench: latest run -->"


def update_results_file(path: Path, section: str) -> Path:
    """Replace the generated section of ``RESULTS.md`` (after the marker), keeping the notes above."""
    head = path.read_text().split(RESULTS_MARK)[0] if path.exists() else "# Benchmark results\n\n"
    path.write_text(head.rstrip() + "\n\n" + RESULTS_MARK + "\n\n" + section)
    return path
