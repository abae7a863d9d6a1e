"""The tuner's report, in the spirit of Model Analyzer's: a table of every measured configuration,
a throughput-against-p95 plot with the SLO drawn in, the chosen configuration and its diff, as
JSON, PNG and one self-contained HTML page (the image inlined as base64)."""

from __future__ import annotations

import difflib
import html
import json
from pathlib import Path
from typing import Any

from rich.syntax import Syntax
from rich.table import Table

from tritonctl import plots
from tritonctl.console import console
from tritonctl.loadtest.slo import Objectives
from tritonctl.tune.search import SearchResult, Trial


def config_diff(before: str, after: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{name}/config.pbtxt (before)",
            tofile=f"{name}/config.pbtxt (tuned)",
        )
    )


def show_diff(diff: str) -> None:
    if diff:
        console.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))


def _short(candidate: dict[str, Any], baseline: dict[str, Any]) -> str:
    changes = [f"{k}={v}" for k, v in candidate.items() if baseline.get(k) != v]
    return ", ".join(changes) or "(baseline)"


def trials_table(result: SearchResult) -> Table:
    table = Table(title="tune: measured configurations")
    for column in ("#", "change from baseline", "thr/s", "p50", "p95", "p99", "SLO"):
        table.add_column(
            column,
            justify="left" if column.startswith("change") else "right",
            overflow="fold",
        )
    for trial in result.trials:
        mark = " ★" if trial is result.best else ""
        table.add_row(
            f"{trial.index}{mark}",
            _short(trial.candidate, result.baseline.candidate),
            f"{trial.figures.rps:.1f}",
            f"{trial.figures.p50_ms:.1f}",
            f"{trial.figures.p95_ms:.1f}",
            f"{trial.figures.p99_ms:.1f}",
            "[green]meets[/]" if trial.meets_slo else "[red]misses[/]",
        )
    return table


def plot(result: SearchResult, objectives: Objectives, path: Path) -> Path:
    figure, axis = plots.figure(8, 5)

    def scatter(trials: list[Trial], **style: Any) -> None:
        if trials:
            axis.scatter(
                [t.figures.p95_ms for t in trials], [t.figures.rps for t in trials], **style
            )

    scatter([t for t in result.trials if t.meets_slo], color="tab:green", label="meets the SLO")
    scatter([t for t in result.trials if not t.meets_slo], color="tab:red", label="misses the SLO")
    scatter([result.baseline], color="none", edgecolor="black", s=160, label="baseline")
    scatter([result.best], marker="*", color="gold", edgecolor="black", s=260, label="chosen")
    for trial in result.trials:
        axis.annotate(str(trial.index), (trial.figures.p95_ms, trial.figures.rps), fontsize=7)
    if objectives.p95_ms is not None:
        axis.axvline(objectives.p95_ms, color="tab:red", linestyle="--", label="p95 limit")
    if objectives.min_rps is not None:
        axis.axhline(objectives.min_rps, color="tab:orange", linestyle=":", label="min throughput")
    axis.set_xlabel("p95 latency (ms)")
    axis.set_ylabel("throughput (requests/s)")
    axis.set_title("tune: each measured configuration")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    return plots.save(figure, path, dpi=110)


def html_report(summary: dict[str, Any], result: SearchResult, png: Path, diffs: str) -> str:
    baseline = result.baseline.candidate
    rows = []
    for trial in result.trials:
        f = trial.figures
        style = ' style="font-weight:bold;background:#fff6cc"' if trial is result.best else ""
        verdict = (
            "meets"
            if trial.meets_slo
            else "misses: " + "; ".join(r.message for r in trial.results if not r.passed)
        )
        rows.append(
            f"<tr{style}><td>{trial.index}</td><td>{html.escape(_short(trial.candidate, baseline))}"
            f"</td><td>{f.rps:.1f}</td><td>{f.p50_ms:.1f}</td><td>{f.p95_ms:.1f}</td>"
            f"<td>{f.p99_ms:.1f}</td><td>{html.escape(verdict)}</td></tr>"
        )
    facts = "".join(
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(json.dumps(v))}</li>"
        for k, v in summary.items()
        if k not in ("search",)
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tritonctl tune: {html.escape(str(summary.get("model")))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:nth-child(2){{text-align:left}}pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}</style>
</head><body>
<h1>tritonctl tune: {html.escape(str(summary.get("model")))}</h1>
<ul>{facts}</ul>
<h2>Throughput against p95 latency</h2>
{plots.img_tag(png.read_bytes(), "throughput against p95")}
<h2>Measured configurations</h2>
<table><tr><th>#</th><th>change from baseline</th><th>throughput/s</th><th>p50 ms</th>
<th>p95 ms</th><th>p99 ms</th><th>SLO</th></tr>{"".join(rows)}</table>
<h2>Config changes written</h2>
<pre>{html.escape(diffs) or "(none: the baseline stays)"}</pre>
</body></html>
"""
