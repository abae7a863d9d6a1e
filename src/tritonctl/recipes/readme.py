"""The README's build-result tables, generated from the build reports (never typed by hand).

``reports/`` is machine-local and not committed, so the README's figures come from a committed
snapshot of the reports, ``docs/build_reports/*.json``. ``scripts/update_readme_tables.py``
copies the current reports there and rewrites each README section between its markers::

    <!-- generated:text-embedding:begin --> ... <!-- generated:text-embedding:end -->

``tests/test_readme_tables.py`` fails when the README and the snapshot disagree.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from tritonctl import paths

#: README section -> (report under reports/, snapshot under docs/build_reports/)
SOURCES = {
    "text-embedding": ("text_embedding/build_report.json", "text_embedding.json"),
    "digits": ("digits/build_report.json", "digits.json"),
    "edge": ("edge/build_report.json", "edge.json"),
}
VARIANT_LABELS = {
    "fp32_plain": "FP32 ONNX export",
    "fp32_optimized": "FP32 + ORT fusions",
    "int8": "INT8",
    "tensorrt_fp16": "TensorRT FP16",
}


def snapshot_dir() -> Path:
    return paths.project_root() / "docs" / "build_reports"


def load_snapshots() -> dict[str, dict[str, Any]]:
    return {
        name: json.loads((snapshot_dir() / snapshot).read_text())
        for name, (_, snapshot) in SOURCES.items()
    }


def _pct(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


def text_section(report: dict[str, Any]) -> str:
    fused = ", ".join(f"{n} {op}" for op, n in report["fused_operators"].items())
    lines = [
        "**Text embedding** (`tritonctl build text-embedding`, "
        f"`reports/text_embedding/build_report.json`), {report['corpus_size']}-sentence evaluation "
        "set, cosine to the FP32 export; speed in process (batch-1 median latency, batch-32 items "
        "per CPU-second):",
        "",
        "| variant | served as | size | min / mean cosine | batch-1 latency | batch-32 throughput |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in report["variants"].items():
        served = f"`{v['served_as']}`" if v.get("served_as") else "—"
        lines.append(
            f"| {VARIANT_LABELS.get(name, name)} | {served} | {v['size_mb']:.1f} MB | "
            f"{v['min_cosine']:.4f} / {v['mean_cosine']:.4f} | {v['latency_ms_b1']:.1f} ms | "
            f"{v['throughput_b32']:.0f} /s |"
        )
    gate = report["speed_gate"]
    verdict = "met" if gate["passed"] else "missed, reported; fatal only when strict"
    lines += [
        "",
        f"ORT fusions found: {fused} (kept: {'yes' if report['optimization_kept'] else 'no'}). "
        f"INT8 speed-up at batch 32: {gate['int8_speedup_b32']:.2f}× (gate ≥ {gate['needs']}×: "
        f"{verdict}). INT8 techniques tried, in order (the last one is served):",
        "",
        "| technique | min / mean cosine | kept in FP32 |",
        "| --- | --- | --- |",
    ]
    for a in report["int8_attempts"]:
        kept = ", ".join(a["excluded_nodes"]) or "—"
        lines.append(
            f"| {a['technique']} | {a['min_cosine']:.4f} / {a['mean_cosine']:.4f} | {kept} |"
        )
    trt = report["tensorrt"]
    if not trt.get("built"):
        lines += ["", f"TensorRT FP16: not built ({trt['skipped_because']})."]
    return "\n".join(lines)


def digits_section(report: dict[str, Any]) -> str:
    split = report["split"]
    lines = [
        f"**Digits** (`tritonctl build digits`, `reports/digits/build_report.json` and "
        f"`accuracy_vs_latency.png`; {split['train']} training, {split['validation']} validation "
        f"and {split['test']} test images; the default is chosen on validation, the test set only "
        "reports):",
        "",
        "| variant | params | MACs | ONNX | validation | test [95% CI] | Δ vs teacher "
        "(McNemar p) | batch-1 | batch-64 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["variants"].items():
        low, high = row["accuracy_ci95"]
        paired = row.get("vs_teacher_test")
        versus = (
            "—"
            if paired is None
            else f"{0.0 - row['points_below_teacher']:+.2f} pts ({paired['mcnemar_p']:.2f})"
        )
        params = f"{row['parameters']:,}"
        if row["nonzero_parameters"] != row["parameters"]:
            params += f" ({row['nonzero_parameters']:,} non-zero)"
        label = name + (" (**default**)" if name == report["default_variant"] else "")
        lines.append(
            f"| {label} | {params} | {row['macs'] / 1e6:.2f} M | "
            f"{row['onnx_bytes'] / 1024:.0f} KiB | {_pct(row['validation_accuracy'], 2)} | "
            f"{_pct(row['accuracy'], 2)} [{_pct(low)}, {_pct(high)}] | {versus} | "
            f"{row['latency_ms_batch1']:.3f} ms | {row['throughput_batch64'] / 1000:.0f}k img/s |"
        )
    significance = report["significance"]
    lines += ["", f"Default: {report['default_rule']} {significance[0].upper()}{significance[1:]}."]
    return "\n".join(lines)


def edge_section(report: dict[str, Any]) -> str:
    """The table ``tritonctl build edge`` prints (``tritonctl.edge.report``)."""
    from tritonctl.edge.report import markdown

    return markdown(report).removesuffix("\n")


RENDER = {"text-embedding": text_section, "digits": digits_section, "edge": edge_section}


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name}:begin -->", f"<!-- generated:{name}:end -->"


def section(readme: str, name: str) -> str:
    """The text between ``name``'s markers (without them); ``ValueError`` if they are missing."""
    begin, end = _markers(name)
    match = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), readme, re.S)
    if match is None:
        raise ValueError(f"README has no generated section {name!r} ({begin} … {end})")
    return match.group(1).removesuffix("\n")


def render(readme: str, reports: dict[str, dict[str, Any]]) -> str:
    """``readme`` with every generated section rewritten from ``reports``."""
    for name, report in reports.items():
        begin, end = _markers(name)
        old = section(readme, name)  # raises if the markers are missing
        current = f"{begin}\n{old}\n{end}" if old else f"{begin}\n{end}"
        readme = readme.replace(current, f"{begin}\n{RENDER[name](report)}\n{end}", 1)
    return readme


def update(readme_path: Path | None = None) -> Path:
    """Snapshot the current reports into ``docs/build_reports/`` and regenerate the README."""
    readme_path = readme_path or paths.project_root() / "README.md"
    snapshot_dir().mkdir(parents=True, exist_ok=True)
    for report, snapshot in SOURCES.values():
        shutil.copyfile(paths.reports_dir() / report, snapshot_dir() / snapshot)
    readme_path.write_text(render(readme_path.read_text(), load_snapshots()))
    return readme_path
