"""``tritonctl top``: live per-model requests/s, latency, queue, batching, cache and drift."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "top", help="live per-model view of a Triton server from its /metrics endpoint"
    )
    parser.add_argument(
        "--url",
        default="localhost:8002",
        help="metrics endpoint: host:port or URL (default localhost:8002)",
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes")
    parser.add_argument("--once", action="store_true", help="print one table and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import urllib.error

    from rich.live import Live

    from tritonctl.console import console, err_console
    from tritonctl.top import metrics_url, once, rows, snapshots, table

    url = metrics_url(args.url)
    try:
        if args.once:
            console.print(once(url, min(args.interval, 1.0)))
            return 0
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            for before, after in snapshots(url, args.interval):
                live.update(table(rows(before, after), title=f"{url} (Ctrl-C to quit)"))
    except (urllib.error.URLError, OSError) as error:
        err_console.print(f"[red]error:[/] cannot read {url}: {error}")
        return 2
    return 0
