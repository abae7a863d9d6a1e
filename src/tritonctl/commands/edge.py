"""``tritonctl edge run BUNDLE INPUT…`` and ``tritonctl edge bench BUNDLE``: try a bundle quickly."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "edge",
        help="run or time an on-device bundle from `tritonctl build edge` (no server)",
        description=(
            "BUNDLE is a folder made by `tritonctl build edge`, or its name under edge/ "
            "(e.g. text_encoder-onnxruntime-int8). The bundle runs through its own runner.py, "
            "exactly as it would on the device."
        ),
    )
    commands = parser.add_subparsers(dest="edge_command", metavar="COMMAND", required=True)
    run_parser = commands.add_parser("run", help="embed texts or classify images")
    run_parser.add_argument("bundle")
    run_parser.add_argument("inputs", nargs="*", help="texts, or image files (default: samples)")
    run_parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    run_parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    run_parser.set_defaults(func=run)
    bench_parser = commands.add_parser(
        "bench", help="cold start, batch-1 p50/p95 on 1 thread and all cores, peak RSS"
    )
    bench_parser.add_argument("bundle")
    bench_parser.add_argument("--runs", type=positive_int, default=200)
    bench_parser.add_argument("--json", action="store_true")
    bench_parser.set_defaults(func=bench)


def positive_int(text: str) -> int:
    """A run count of at least 1: percentiles of no latencies do not exist."""
    from tritonctl.edge.runner import positive_int as check

    return check(text)


def resolve(bundle: str) -> Path:
    """A bundle folder from a path or a name under ``edge/``."""
    from tritonctl.recipes.edge import edge_dir

    path = Path(bundle)
    if (path / "manifest.json").exists():
        return path
    named = edge_dir() / bundle
    if (named / "manifest.json").exists():
        return named
    built = (
        sorted(p.name for p in edge_dir().glob("*/manifest.json")) if edge_dir().is_dir() else []
    )
    choices = (
        ", ".join(p.removesuffix("/manifest.json") for p in built)
        or "none: run `tritonctl build edge`"
    )
    raise FileNotFoundError(f"no bundle at {bundle!r} (built bundles: {choices})")


def run(args: argparse.Namespace) -> int:
    from tritonctl.console import console, err_console
    from tritonctl.edge.evaluate import load_runner

    try:
        folder = resolve(args.bundle)
        runner = load_runner(folder)
        bundle = runner.Bundle(folder, threads=args.threads)
        samples = not args.inputs
        if bundle.task == "embed":
            texts = runner.samples(folder, bundle.manifest) if samples else args.inputs
            # The argument bytes as given (see runner.main): a bad byte is named as it was sent.
            vectors = bundle.embed([os.fsencode(t) for t in texts])
            _print_embeddings(texts, vectors, args.json)
        else:
            files = (
                sorted((folder / "samples").glob("*.png"))
                if samples
                else [Path(i) for i in args.inputs]
            )
            labels, scores = bundle.classify([f.read_bytes() for f in files])
            for file, label, score in zip(files, labels, scores, strict=True):
                ranked = [[str(a), round(float(b), 4)] for a, b in zip(label, score, strict=True)]
                if args.json:
                    print(json.dumps({"image": str(file), "top_k": ranked}))
                else:
                    console.print(f"{file.name}: " + ", ".join(f"{a} ({b:.3f})" for a, b in ranked))
    except (FileNotFoundError, IsADirectoryError) as error:
        err_console.print(f"[red]error:[/] {error}")
        return 2
    except (runner.BundleError, runner.InputError) as error:
        err_console.print(f"[red]error:[/] {error}")
        return 2
    return 0


def _print_embeddings(texts: list[str], vectors, as_json: bool) -> None:
    from rich.table import Table

    from tritonctl.client import cosine_matrix
    from tritonctl.console import console

    if as_json:
        for text, vector in zip(texts, vectors, strict=True):
            print(json.dumps({"text": text, "embedding": [round(float(v), 6) for v in vector]}))
        return
    table = Table(
        title=f"{len(texts)} embeddings of {vectors.shape[1]} dimensions: cosine similarity"
    )
    table.add_column("text")
    for i in range(len(texts)):
        table.add_column(str(i), justify="right")
    for i, (text, row) in enumerate(zip(texts, cosine_matrix(vectors), strict=True)):
        table.add_row(f"{i}: {text[:50]}", *(f"{v:.2f}" for v in row))
    console.print(table)


def bench(args: argparse.Namespace) -> int:
    from rich.table import Table

    from tritonctl.console import console, err_console
    from tritonctl.edge import measure
    from tritonctl.edge.evaluate import load_runner

    try:
        folder = resolve(args.bundle)
    except FileNotFoundError as error:
        err_console.print(f"[red]error:[/] {error}")
        return 2
    runner = load_runner(folder)
    inputs = runner.samples(folder, runner.load_manifest(folder, verify=False))
    results = {}
    for label, threads in (
        ("1 thread", 1),
        (f"{measure.all_cores()} threads", measure.all_cores()),
    ):
        try:
            results[label] = measure.bench_bundle(folder, inputs, threads=threads, runs=args.runs)
        except RuntimeError as error:
            err_console.print(f"[red]error:[/] {error}")
            return 2
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    table = Table(title=f"{folder.name}: batch 1, {args.runs} runs, each setting in a new process")
    for column in ("threads", "cold start", "p50", "p95", "peak RSS"):
        table.add_column(column, justify="right")
    for label, r in results.items():
        table.add_row(label, f"{r['cold_start_s'] * 1e3:.0f} ms", f"{r['p50_ms']:.2f} ms",
                      f"{r['p95_ms']:.2f} ms", f"{r['peak_rss_mb']:.0f} MB")  # fmt: skip
    console.print(table)
    return 0
