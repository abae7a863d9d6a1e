"""``tritonctl bench``: the text-embedding service against the in-process limit and the alternatives."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="the served pipelines against their in-process limit, FastAPI and LitServe, in rounds",
    )
    parser.add_argument("--quick", action="store_true", help="short windows (a few minutes)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per point")
    parser.add_argument(
        "--configs",
        default="abcdefg",
        help="a limit, b Triton, c no batching, d FastAPI, e INT8, f LitServe, g digits",
    )
    parser.add_argument("--corpora", default="short,long", help="short and/or long (short,long)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy on the stubs")
    parser.add_argument("--model-repository", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="report folder (reports/bench)")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="update this RESULTS.md (default benchmarks/RESULTS.md; 'none' to skip)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tritonctl import paths
    from tritonctl.bench import report
    from tritonctl.bench.run import CORPORA, BenchOptions, run_bench
    from tritonctl.console import console

    corpora = tuple(c.strip() for c in args.corpora.split(",") if c.strip())
    unknown = [c for c in corpora if c not in CORPORA]
    if unknown or not corpora:
        console.print(f"[red]✗[/] --corpora takes {', '.join(CORPORA)}; got {args.corpora!r}")
        return 2
    changes: dict[str, object] = {
        "configs": args.configs,
        "corpora": corpora,
        "protocol": args.protocol,
        "profile": not args.no_profile,
    }
    if args.model_repository:
        changes["repository"] = args.model_repository
    if args.out:
        changes["out_dir"] = args.out
    options = BenchOptions.quick(**changes) if args.quick else BenchOptions(**changes)  # type: ignore[arg-type]
    if args.rounds is not None:
        options.rounds = max(args.rounds, 1)
    if args.duration is not None:
        options.duration_s = args.duration
    if args.warmup is not None:
        options.warmup_s = args.warmup
    try:
        result = run_bench(options)
    except FileNotFoundError as error:
        console.print(f"[red]✗[/] {error}")
        return 1
    json_path, png_path, items = report.write(result, options.out_dir)
    report.show(result, items)
    command = "tritonctl " + shlex.join(sys.argv[1:] if sys.argv[1:2] == ["bench"] else ["bench"])
    results = (
        args.results
        if args.results is not None
        else paths.project_root() / "benchmarks" / "RESULTS.md"
    )
    if str(results) != "none":
        report.update_results_file(results, report.results_markdown(result, items, command))
        console.print(f"updated {results}")
    console.print(f"wrote {json_path}, {png_path} and {options.out_dir / 'report.html'}")
    return 0
