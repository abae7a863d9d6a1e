"""``tritonctl serve``: the real Triton server on this machine, no container, no GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonctl import paths
from tritonctl.cloud.cli import add_serve_arguments, cloud_mode
from tritonctl.cloud.cli import run_serve as run_cloud


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the model repository with the real tritonserver"
    )
    parser.add_argument(
        "--model-repository", type=Path, default=None, help="default: model_repository/"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="serve only these (and the models their ensembles use)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default loopback only)"
    )
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument(
        "--cache-size", type=int, default=256 * 1024 * 1024, help="response cache bytes (0: off)"
    )
    parser.add_argument("--log-file", type=Path, default=None)
    parser.add_argument("--verbose", "-v", action="count", default=0)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for readiness")
    parser.add_argument(
        "--exit-timeout", type=int, default=30, help="seconds in-flight requests get on shutdown"
    )
    parser.add_argument(
        "--model-control",
        choices=("poll", "explicit"),
        default="poll",
        help="poll (default): the load/unload API is off for everyone; explicit: it is on, "
        "behind the admin key (needs --admin-key-file)",
    )
    parser.add_argument(
        "--admin-key-file",
        type=Path,
        default=None,
        help="file holding a key that opens the model-repository, shared-memory, trace and "
        "logging APIs (header admin-key); without it they are closed to everyone",
    )
    parser.add_argument("--admin-key", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-restrict", action="store_true", help="leave the admin APIs open (not recommended)"
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        help="restarts in a row if the server dies (0: none), 1 s, 2 s, 4 s... apart",
    )
    parser.add_argument(
        "--healthy-after",
        type=float,
        default=60.0,
        help="seconds of uptime after which the restart count starts again (default 60)",
    )
    add_serve_arguments(parser)
    parser.set_defaults(func=run)


def read_admin_key(path: Path) -> str:
    """The key in ``path`` (first line), refusing an empty one and warning about a readable file."""
    import stat

    from tritonctl.console import err_console

    key = path.read_text().strip().splitlines()[0] if path.read_text().strip() else ""
    if not key:
        raise SystemExit(f"error: the admin key file {path} is empty")
    if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        err_console.print(f"[yellow]warning:[/] {path} is readable by other users (chmod 600 it)")
    return key


def run(args: argparse.Namespace) -> int:
    if cloud_mode(args):
        return run_cloud(args)
    from tritonctl.console import err_console
    from tritonctl.serving import RestartPolicy, serve_forever

    if args.admin_key is not None:
        err_console.print(
            "[red]error:[/] --admin-key would put the key on the command line, where every "
            "local user can read it (ps): write it to a file and pass --admin-key-file"
        )
        return 2
    admin_key = read_admin_key(args.admin_key_file) if args.admin_key_file else None
    # --no-restrict does not lift this: an open load API runs any caller's model.py.
    if args.model_control == "explicit" and admin_key is None:
        err_console.print(
            "[red]error:[/] --model-control explicit opens the load API, which runs the code of "
            "any model it is given: give --admin-key-file to restrict it"
            + (" (--no-restrict does not lift this)" if args.no_restrict else "")
        )
        return 2
    return serve_forever(
        repository=args.model_repository or paths.model_repository(),
        models=args.models,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        cache_size=args.cache_size,
        log_file=args.log_file,
        verbose=args.verbose,
        timeout=args.timeout,
        exit_timeout=args.exit_timeout,
        model_control=args.model_control,
        admin_key=admin_key,
        restrict_apis=not args.no_restrict,
        restart_policy=RestartPolicy(
            max_restarts=args.max_restarts, healthy_after=args.healthy_after
        ),
    )
