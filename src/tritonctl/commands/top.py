"""``tritonctl top``: live per-model requests/s, latency, queue, batching, cache and drift, and the
CPU and memory of the server's processes (a server on this machine)."""

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
    parser.add_argument(
        "--interval", type=_positive, default=2.0, help="seconds between scrapes (> 0)"
    )
    parser.add_argument("--once", action="store_true", help="print one view and exit")
    parser.set_defaults(func=run)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:  # 0 scrapes in a busy loop; NaN and negatives make no interval
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def run(args: argparse.Namespace) -> int:
    import time
    import urllib.error

    from rich.live import Live

    from tritonctl.console import console, err_console
    from tritonctl.metrics import MetricsError
    from tritonctl.top import metrics_url, once, snapshots, view

    url = metrics_url(args.url)
    try:
        if args.once:
            console.print(once(url, min(args.interval, 1.0)))
            return 0
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            state = "starting"  # then "up", or "down" while a server that answered does not
            while True:
                try:
                    for snapshot in snapshots(url, args.interval):
                        live.update(view(snapshot, title=f"{url} (Ctrl-C to quit)"))
                        if state == "down":
                            err_console.print(f"{url} is answering again")
                        state = "up"
                except (urllib.error.URLError, OSError, MetricsError) as error:
                    # Once it has answered, a failed scrape is a server restarting (`serve
                    # --max-restarts`) or briefly gone: say so once, and keep polling.
                    if state == "starting":
                        raise
                    if state == "up":
                        err_console.print(
                            f"[yellow]{url} is not answering ({error}); retrying every "
                            f"{args.interval:g} s (Ctrl-C to quit)[/]",
                            soft_wrap=True,
                        )
                    state = "down"
                    time.sleep(args.interval)
    except (urllib.error.URLError, OSError, MetricsError) as error:
        hint = ""
        if isinstance(error, urllib.error.HTTPError) and error.code == 404:
            hint = (
                " (a server answers there without /metrics: give Triton's metrics port, "
                "--metrics-port, 8002 by default, not its HTTP port)"
            )
        err_console.print(f"[red]error:[/] cannot read {url}: {error}{hint}")
        return 2
    return 0
