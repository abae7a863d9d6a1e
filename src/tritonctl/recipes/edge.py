"""Recipe ``edge``: the served models as on-device bundles (see ``tritonctl.edge``).

``build(repository)`` writes ``edge/<model>-<runtime>-<precision>/`` beside the model
repository (ONNX Runtime always; LiteRT where ``tritonctl[edge]`` is installed, else the report
says why not), then ``reports/edge/build_report.json``, ``edge_table.md`` and
``latency.png``. Every bundle is checked through its own runner against the served models'
answers (gates in ``tritonctl.edge.evaluate``); the bundles on disk are replaced only when all
pass. Its inputs (the edge code, the served models and processing code it copies, the digits
test split, library versions) are hashed into ``edge/stamp.json``: re-running with unchanged
inputs is a quick no-op. Run it after ``text-embedding`` and ``digits``: it reads their output.
"""

from __future__ import annotations

import hashlib
import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tritonctl import paths
from tritonctl.console import console
from tritonctl.recipes.common import hash_sources

#: the served files a bundle is made from or copies (relative to the model repository)
SOURCES = (
    "text_encoder/1/model.onnx",
    "text_encoder_int8/1/model.onnx",
    "digits_teacher/1/model.onnx",
    "digits_student/1/model.onnx",
    "digits_int8/1/model.onnx",
    "tokenizer/1/tokenizer.json",
    "tokenizer/config.pbtxt",
    "image_preprocess/config.pbtxt",
    "classify_postprocess/config.pbtxt",
)
LIBRARIES = ("onnxruntime", "onnx", "torch", "numpy", "tokenizers", "pillow",
             "litert-torch", "ai-edge-litert", "ai-edge-quantizer")  # fmt: skip


def edge_dir() -> Path:
    return paths.project_root() / "edge"


def report_dir() -> Path:
    return paths.reports_dir() / "edge"


def input_hash(repository: Path) -> str:
    from tritonctl import corpus, edge

    digest = hashlib.sha256()
    code = sorted(Path(edge.__file__).parent.glob("*.py"))
    backends = [
        paths.python_backends() / n / "model.py"
        for n in ("image_preprocess", "classify_postprocess")
    ]
    hash_sources(digest, [*code, Path(__file__), Path(corpus.__file__), *backends])
    for name in SOURCES:
        stat = (repository / name).stat()
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    test_set = paths.reports_dir() / "digits" / "test_set.npz"
    digest.update(test_set.read_bytes())
    for library in LIBRARIES:
        try:
            digest.update(f"{library}={version(library)}".encode())
        except PackageNotFoundError:
            digest.update(f"{library} missing".encode())
    return digest.hexdigest()


def _up_to_date(stamp: str) -> bool:
    try:
        recorded = json.loads((edge_dir() / "stamp.json").read_text())
        report = json.loads((report_dir() / "build_report.json").read_text())
    except (OSError, ValueError):
        return False
    bundles = [edge_dir() / name / "manifest.json" for name in report.get("bundles", {})]
    return recorded.get("inputs") == stamp and bool(bundles) and all(p.exists() for p in bundles)


def build(repository: Path, *, force: bool = False) -> dict[str, Any]:
    """Build every edge bundle from ``repository``; return the build report."""
    from tritonctl.recipes.text.recipe import _lock

    repository = Path(repository)
    with _lock(edge_dir() / ".lock"):
        stamp = input_hash(repository)
        if not force and _up_to_date(stamp):
            console.print("[green]edge: up to date[/] (inputs unchanged; --force rebuilds)")
            return dict(json.loads((report_dir() / "build_report.json").read_text()))
        from tritonctl.edge import build as edge_build
        from tritonctl.edge import report as edge_report

        started = time.perf_counter()
        (edge_dir() / "stamp.json").unlink(missing_ok=True)
        report = edge_build.build(repository, edge_dir(), stamp, report_dir())
        report["build_seconds"] = round(time.perf_counter() - started, 1)
        out = report_dir()
        (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "edge_table.md").write_text(edge_report.markdown(report))
        edge_report.chart(report, out / "latency.png")
        (edge_dir() / "stamp.json").write_text(json.dumps({"inputs": stamp}) + "\n")
    edge_report.print_table(report)
    console.print(f"edge: built {len(report['bundles'])} bundles in {report['build_seconds']} s")
    return report
