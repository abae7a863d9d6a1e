"""The report folder of a load test: CSVs, ``summary.json``, ``report.html`` (plots inlined).

Plots (matplotlib, Agg backend): latency percentiles over time, throughput over time, Triton's
server-side time per request, and each objective against its limit. Every figure is exact,
from the per-request samples; Locust's own (rounded) percentiles are kept beside them for
reference only.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tritonctl import plots
from tritonctl.loadtest.results import PERCENTILES, Measurement, Samples, exact_percentile
from tritonctl.loadtest.slo import ObjectiveResult, SloProfile
from tritonctl.metrics import ModelDelta

STAGES = (
    ("queue", "avg_queue_ms", "#9ecae1"),
    ("compute input", "avg_compute_input_ms", "#fdae6b"),
    ("compute infer", "avg_compute_infer_ms", "#e6550d"),
    ("compute output", "avg_compute_output_ms", "#a1d99b"),
)
PASS_COLOUR, FAIL_COLOUR = "#2ca25f", "#de2d26"


# Time series ------------------------------------------------------------------------------
def per_second(samples: Samples, start: float) -> list[dict[str, float]]:
    """For each whole second since ``start``: requests sent, failed, and their percentiles.

    Latency is that of the requests sent in that second (unanswered ones as ``inf``).
    """
    if not len(samples):
        return []
    seconds = np.floor(samples.sent - start).astype(int)
    rows = []
    for second in range(max(int(seconds.min()), 0), int(seconds.max()) + 1):
        mask = seconds == second
        answered = samples.answered[mask]
        ok = samples.ok[mask] & answered
        latencies = np.concatenate(
            [samples.latency_ms[mask][ok], np.full(int((~answered).sum()), np.inf)]
        )
        row = {
            "second": float(second),
            "requests": float(mask.sum()),
            "failures": float((answered & ~samples.ok[mask]).sum()),
            "unanswered": float((~answered).sum()),
        }
        for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            row[name] = exact_percentile(latencies, q)
        rows.append(row)
    return rows


# Plots ------------------------------------------------------------------------------------
def _figure(width: float = 8.0, height: float = 3.6) -> Any:
    return plots.figure(width, height)


_png = plots.png_bytes


def _shade(ax: Any, discarded_s: float, drain_from_s: float | None, last_s: float) -> None:
    """Grey out the warm-up before the window and the drain after it (neither is counted)."""
    if discarded_s > 0:
        ax.axvspan(0, discarded_s, color="grey", alpha=0.15, label="spawn + warm-up (discarded)")
    if drain_from_s is not None and last_s > drain_from_s:
        ax.axvspan(drain_from_s, last_s, color="grey", alpha=0.3, label="drain (not counted)")


def plot_latency(
    series: list[dict[str, float]],
    discarded_s: float,
    profile: SloProfile,
    drain_from_s: float | None = None,
) -> bytes:
    fig, ax = _figure()
    x = [r["second"] + 0.5 for r in series]  # each point is the second it summarises
    for key, label, style in (
        ("p50_ms", "p50", "-"),
        ("p95_ms", "p95", "-"),
        ("p99_ms", "p99", "-"),
    ):
        # Unanswered requests (inf) and empty seconds (nan) leave gaps rather than spikes.
        values = [r[key] if math.isfinite(r[key]) else float("nan") for r in series]
        ax.plot(x, values, style, marker=".", label=label)
    limits = profile.objectives
    for value, label in ((limits.p95_ms, "p95 SLO"), (limits.p99_ms, "p99 SLO")):
        if value is not None:
            ax.axhline(value, linestyle="--", linewidth=1, color="grey")
            ax.annotate(label, (x[-1] if x else 0, value), fontsize=8, va="bottom", ha="right")
    _shade(ax, discarded_s, drain_from_s, (x[-1] + 0.5) if x else 0.0)
    ax.set_xlabel("seconds since start (when each request was due)")
    ax.set_ylabel("latency per second (ms)")
    ax.set_title("Client latency percentiles over time")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_throughput(
    series: list[dict[str, float]],
    history: list[dict[str, Any]],
    start: float,
    discarded_s: float,
    drain_from_s: float | None = None,
) -> bytes:
    fig, ax = _figure()
    x = np.array([r["second"] for r in series])
    ok = np.array([r["requests"] - r["failures"] for r in series])
    ok = ok - np.array([r["unanswered"] for r in series])
    failed = np.array([r["failures"] for r in series])
    unanswered = np.array([r["unanswered"] for r in series])
    ax.bar(x + 0.5, ok, width=0.9, color=PASS_COLOUR, label="succeeded")
    ax.bar(x + 0.5, failed, width=0.9, bottom=ok, color=FAIL_COLOUR, label="failed")
    if unanswered.any():
        ax.bar(x + 0.5, unanswered, width=0.9, bottom=ok + failed, color="#999999",
               label="unanswered")  # fmt: skip
    _shade(ax, discarded_s, drain_from_s, float(x[-1] + 1) if len(x) else 0.0)
    ax.set_xlabel("seconds since start (when each request was due)")
    ax.set_ylabel("requests sent per second")
    ax.set_title("Requests over time, by when they were due")
    if history:
        users_ax = ax.twinx()
        users_ax.step(
            [h["timestamp"] - start for h in history],
            [h["users"] for h in history],
            where="post",
            color="black",
            linewidth=1,
            label="Locust users",
        )
        users_ax.set_ylabel("Locust users (open loop: senders)")
        users_ax.set_ylim(bottom=0)
        users_ax.legend(loc="lower right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_breakdown(models: dict[str, ModelDelta], client_avg_ms: float, model: str) -> bytes:
    names = list(models)
    fig, ax = _figure(height=max(2.2, 0.55 * (len(names) + 1) + 1.2))
    rows = [*names, f"{model} (client avg)"]
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for label, attr, colour in STAGES:
        widths = np.array([getattr(models[n], attr) for n in names] + [0.0])
        ax.barh(y, widths, left=left, color=colour, label=label)
        left += widths
    ax.barh(y[-1], client_avg_ms, color="#756bb1", label="client-side latency")
    ax.set_yticks(y, rows, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds per request")
    ax.set_title("Server-side time per request (Triton /metrics)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=5)
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def plot_objectives(results: Sequence[ObjectiveResult]) -> bytes:
    fig, ax = _figure(height=max(2.0, 0.5 * len(results) + 1.2))
    labels, usage, colours = [], [], []
    for result in results:
        if result.kind == "max":
            used = (
                result.actual / result.limit if result.limit else (0.0 if result.passed else 10.0)
            )
        else:
            used = result.limit / result.actual if result.actual else 10.0
        labels.append(result.message)
        usage.append(min(used * 100.0, 1000.0))
        colours.append(PASS_COLOUR if result.passed else FAIL_COLOUR)
    y = np.arange(len(labels))
    ax.barh(y, usage, color=colours)
    ax.axvline(100, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("% of the objective's budget used (100% = at the limit)")
    ax.set_title("Objectives: pass (green) / fail (red)")
    if usage and max(usage) > 300:
        ax.set_xscale("log")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


# Files ------------------------------------------------------------------------------------
def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_samples_csv(
    folder: Path, samples: Samples, start: float, window: tuple[float, float]
) -> Path:
    def number(value: float, digits: int) -> str:
        return "" if np.isnan(value) else f"{value:.{digits}f}"

    rows = (
        (
            f"{sent:.6f}",
            f"{sent - start:.4f}",
            number(end, 6),
            number(ms, 4),
            number(service, 4),
            int(ok and not np.isnan(end)),
            int(not np.isnan(end)),
            int(window[0] <= sent < window[1]),
        )
        for sent, end, ms, service, ok in zip(
            samples.sent,
            samples.end,
            samples.latency_ms,
            samples.service_ms,
            samples.ok,
            strict=True,
        )
    )
    return write_csv(
        folder / "samples.csv",
        ["sent", "seconds", "end", "latency_ms", "service_ms", "ok", "answered", "measured"],
        list(rows),
    )


def server_summary(measurement: Measurement, model: str) -> dict[str, Any]:
    server = measurement.server
    target = server.for_model(model)
    summary: dict[str, Any] = {
        "window_s": round(server.seconds, 3),
        "error": server.error or None,
        "servers": server.servers,
        "warnings": measurement.server_warnings(model),
        "models": {name: delta.as_dict() for name, delta in server.models.items()},
    }
    if target is not None:
        summary["target"] = target.as_dict()
        client_avg = measurement.figures().avg_ms
        # perf_analyzer's "client overhead": what the client saw beyond Triton's request time.
        summary["client_overhead_ms"] = round(client_avg - target.avg_request_ms, 4)
    return summary


image_tag = plots.img_tag


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.pass{color:#fff;background:#2ca25f;padding:.1em .5em;border-radius:4px}
.fail{color:#fff;background:#de2d26;padding:.1em .5em;border-radius:4px}
img{max-width:100%;display:block;margin:.6em 0}code{background:#f3f3f3;padding:0 .2em}
"""


def _cell(value: Any) -> str:
    """Whole numbers without decimals, others to three significant decimals at most."""
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], raw: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped except in the ``raw`` columns (our own markup)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{c if i in raw else html.escape(str(c))}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _badge(passed: bool) -> str:
    return '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'


def _ms(value: float | None) -> str:
    return "unanswered" if value is None else f"{value:g} ms"


def render_html(summary: dict[str, Any], images: dict[str, bytes]) -> str:
    latency = summary["latency_ms"]
    figures = [
        ("requests sent in the window", summary["requests"]),
        ("failed (error answers)", f"{summary['failures']} ({summary['error_ratio'] * 100:.2f}%)"),
        ("unanswered when the run ended", summary["unanswered"]),
        ("offered rate", f"{summary['offered_rps']:.1f} req/s"),
        ("throughput (successful)", f"{summary['rps']:.1f} req/s"),
        *[(k, _ms(v)) for k, v in latency.items()],
    ]
    cpu = summary.get("load_generator")
    if cpu:
        figures.append(
            (
                "load generator CPU",
                f"{cpu['cpu_cores']:.2f} cores over {cpu['processes']} process(es), "
                f"{cpu['machine_share']:.0%} of {cpu['machine_cores']}",
            )
        )
    objectives = [
        (o["label"], o["limit"], o["actual"], o["unit"], _badge(o["passed"]), o["message"])
        for o in summary["objectives"]
    ]
    objectives_html = _table(
        ["objective", "limit", "actual", "unit", "", "verdict"], objectives, raw=(4,)
    )
    server = summary["server"]
    server_rows = [
        (
            name,
            d["success"],
            d["failure"],
            d["avg_request_ms"],
            d["avg_queue_ms"],
            d["avg_compute_input_ms"],
            d["avg_compute_infer_ms"],
            d["avg_compute_output_ms"],
            d["avg_batch_size"],
            d["cache_hits"],
        )
        for name, d in server["models"].items()
    ]
    profile = summary["profile"]
    window = summary["window"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Load test {html.escape(profile['model'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Load test: <code>{html.escape(profile['model'])}</code> over "
        f"{html.escape(profile['protocol'])} {_badge(summary['passed'])}</h1>",
        f"<p>{html.escape(summary['target']['address'])} · {html.escape(summary['load'])} · "
        f"{profile['warmup_s']:g} s warm-up discarded · {window['measured_s']:g} s measured · "
        f"{window['drain_s']:g} s drain · profile {html.escape(profile['name'])}</p>",
    ]
    if summary["failed"]:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in summary["failed"])
        parts.append(f"<p><b>Objectives missed:</b></p><ul>{items}</ul>")
    if summary.get("note"):
        parts.append(f"<p><b>{html.escape(summary['note'])}</b></p>")
    parts += [
        "<h2>Objectives</h2>",
        objectives_html,
        image_tag(images["objectives"], "objectives") if "objectives" in images else "",
        "<h2>Client-side figures (exact, from every request sent in the window)</h2>",
        _table(["figure", "value"], figures),
        "<p>Latency counts from when each request was due (open loop) or sent (closed loop); "
        "percentiles are over the requests that did not fail, unanswered ones counting as "
        "slower than all others. Locust's own percentiles, rounded to two significant digits "
        "above 100 ms, are in <code>summary.json</code> under <code>locust_rounded_ms</code> "
        "for reference.</p>",
        image_tag(images["latency"], "latency percentiles over time")
        if "latency" in images
        else "",
        image_tag(images["throughput"], "throughput over time") if "throughput" in images else "",
        "<h2>Server-side time per request (Triton)</h2>",
    ]
    for warning in server.get("warnings") or []:
        parts.append(f"<p><b>Note:</b> {html.escape(warning)}</p>")
    if server.get("error"):
        parts.append(f"<p>{html.escape(server['error'])}</p>")
    else:
        parts.append(
            _table(
                [
                    "model",
                    "success",
                    "failure",
                    "request ms",
                    "queue ms",
                    "input ms",
                    "infer ms",
                    "output ms",
                    "avg batch",
                    "cache hits",
                ],
                server_rows,
            )
        )
        if "client_overhead_ms" in server:
            parts.append(
                f"<p>Client overhead (client avg − Triton request time): "
                f"{server['client_overhead_ms']:.3f} ms per request.</p>"
            )
    if "breakdown" in images:
        parts.append(image_tag(images["breakdown"], "server-side breakdown"))
    if summary["errors"]:
        parts += [
            "<h2>Errors</h2>",
            "<p>Locust's table of failures after the warm-up: it also holds those of requests "
            "sent during the drain, after the window the error ratio counts.</p>",
            _table(
                ["error", "occurrences"],
                [(e["error"], e["occurrences"]) for e in summary["errors"]],
            ),
        ]
    parts += [
        "<h2>Files</h2>",
        "<ul>"
        + "".join(f"<li><code>{html.escape(f)}</code></li>" for f in summary["files"])
        + "</ul>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    folder: Path,
    summary: dict[str, Any],
    measurement: Measurement,
    profile: SloProfile,
    results: Sequence[ObjectiveResult],
    *,
    with_plots: bool = True,
) -> dict[str, Path]:
    """Write the CSVs, plots, ``summary.json`` and ``report.html``; return their paths."""
    start = float(measurement.events.get("test_start") or measurement.totals.start)
    series = per_second(measurement.samples, start)
    window = (measurement.warmup_end, measurement.window_end)
    files: dict[str, Path] = {
        "samples": write_samples_csv(folder, measurement.samples, start, window),
        "percentiles": write_csv(
            folder / "percentiles.csv",
            ["second", "requests", "failures", "unanswered", "p50_ms", "p95_ms", "p99_ms"],
            [
                [
                    r["second"],
                    r["requests"],
                    r["failures"],
                    r["unanswered"],
                    r["p50_ms"],
                    r["p95_ms"],
                    r["p99_ms"],
                ]
                for r in series
            ],
        ),
    }
    if measurement.server.models:
        files["server_breakdown"] = write_csv(
            folder / "server_breakdown.csv",
            list(next(iter(measurement.server.models.values())).as_dict()),
            [list(d.as_dict().values()) for d in measurement.server.models.values()],
        )
    images: dict[str, bytes] = {}
    if with_plots:
        # Shade from the start to the end of the warm-up (spawning users comes before it).
        discarded = max(measurement.warmup_end - start, 0.0)
        drain_from = measurement.window_end - start
        images = {
            "latency": plot_latency(series, discarded, profile, drain_from),
            "throughput": plot_throughput(
                series, measurement.history, start, discarded, drain_from
            ),
            "objectives": plot_objectives(results),
        }
        if measurement.server.models:
            images["breakdown"] = plot_breakdown(
                measurement.server.models, measurement.figures().avg_ms, profile.model
            )
        plots = folder / "plots"
        plots.mkdir(exist_ok=True)
        for name, png in images.items():
            files[f"plot_{name}"] = plots / f"{name}.png"
            files[f"plot_{name}"].write_bytes(png)
    files["summary"] = folder / "summary.json"
    files["report"] = folder / "report.html"
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    summary["files"] = sorted({*names, "summary.json", "report.html"})
    files["summary"].write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    files["report"].write_text(render_html(summary, images))
    return files


# Terminal ---------------------------------------------------------------------------------
def print_summary(console: Console, summary: dict[str, Any]) -> None:
    """Rich tables: headline figures, objectives, server-side breakdown."""
    latency = summary["latency_ms"]
    verdict = "[bold green]PASS[/]" if summary["passed"] else "[bold red]FAIL[/]"
    profile = summary["profile"]
    figures = Table(
        title=f"{profile['model']} over {profile['protocol']} · {summary['load']} · {verdict}"
    )
    for column in (
        "sent", "failed", "unanswered", "ok req/s", "p50 ms", "p95 ms", "p99 ms", "avg ms",
    ):  # fmt: skip
        figures.add_column(column, justify="right")
    figures.add_row(
        str(summary["requests"]),
        f"{summary['failures']} ({summary['error_ratio'] * 100:.1f}%)",
        str(summary["unanswered"]),
        f"{summary['rps']:.1f}",
        *(_ms(latency[k]).removesuffix(" ms") for k in ("p50", "p95", "p99")),
        f"{latency['avg']:.2f}",
    )
    console.print(figures)
    if summary.get("note"):
        console.print(f"[yellow]{summary['note']}[/]", soft_wrap=True)
    if summary["objectives"]:
        objectives = Table(title="Objectives")
        objectives.add_column("objective")
        objectives.add_column("verdict")
        objectives.add_column("")
        for o in summary["objectives"]:
            mark = "[green]pass[/]" if o["passed"] else "[red]FAIL[/]"
            objectives.add_row(o["label"], o["message"], mark)
        console.print(objectives)
    cpu = summary.get("load_generator")
    if cpu:
        console.print(
            f"Load generator: {cpu['cpu_cores']:.2f} CPU cores over {cpu['processes']} "
            f"process(es) ({cpu['machine_share']:.0%} of this machine's {cpu['machine_cores']})"
            + (
                "; its busiest process is near a full core, so it may limit the load: add --workers"
                if cpu["busiest_process_cores"] > 0.8
                else ""
            ),
            soft_wrap=True,
        )
    models = summary["server"]["models"]
    for warning in summary["server"].get("warnings") or []:
        console.print(f"[yellow]{warning}[/]", soft_wrap=True)
    if models:
        server = Table(title="Server-side time per request (Triton /metrics, ms)")
        for column in (
            "model", "requests", "request", "queue", "input", "infer", "output", "batch",
            "cache hits",
        ):  # fmt: skip
            server.add_column(column, justify="left" if column == "model" else "right")
        for name, d in models.items():
            server.add_row(
                name,
                f"{d['success'] + d['failure']:.0f}",
                f"{d['avg_request_ms']:.2f}",
                f"{d['avg_queue_ms']:.2f}",
                f"{d['avg_compute_input_ms']:.2f}",
                f"{d['avg_compute_infer_ms']:.2f}",
                f"{d['avg_compute_output_ms']:.2f}",
                f"{d['avg_batch_size']:.2f}",
                f"{d['cache_hits']:.0f}",
            )
        console.print(server)
    elif summary["server"].get("error"):
        console.print(f"[yellow]{summary['server']['error']}[/]")
    for error in summary["errors"][:5]:
        console.print(f"[red]error[/] ×{error['occurrences']}: {error['error']}")


def latency_block(measurement: Measurement) -> dict[str, float | None]:
    """Exact percentiles of the window's requests (``None``: an unanswered request), avg, max."""
    kept = measurement.measured
    good = kept.answered & kept.ok
    latency = np.concatenate([kept.latency_ms[good], np.full(int((~kept.answered).sum()), np.inf)])
    block: dict[str, float | None] = {}
    for q in PERCENTILES[:-1]:
        value = exact_percentile(latency, q)
        key = f"p{('%g' % (q * 100)).replace('.', '_')}"
        block[key] = None if math.isinf(value) else round(0.0 if math.isnan(value) else value, 4)
    figures = kept.figures(measurement.window_s)
    block.update(
        avg=round(figures.avg_ms, 4),
        min=round(float(kept.latency_ms[good].min()), 4) if good.any() else 0.0,
        max=round(figures.max_ms, 4),
    )
    return block


def locust_block(measurement: Measurement) -> dict[str, float]:
    """Locust's own percentiles (its histogram rounds to 2 significant digits above 100 ms)."""
    totals = measurement.totals
    block = {f"p{('%g' % (q * 100)).replace('.', '_')}": totals.percentile(q) for q in PERCENTILES}
    block.pop("p100", None)
    block.update(requests=totals.requests, failures=totals.failures)
    return block
