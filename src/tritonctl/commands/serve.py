"""``tritonctl serve``: the real Triton server on this machine, no container, no GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonctl import paths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the model repository with the real tritonserver"
    )
    parser.add_argument(
        "--model-repository", type=Path, default=None, help="default: model_repository/"
    )
    parser.add_argument(
        "--models", nargs="+", default=None, help="load only these (explicit model control)"
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
        "--admin-key", default=None, help="key for the restricted APIs (default: random)"
    )
    parser.add_argument(
        "--no-restrict", action="store_true", help="leave the admin APIs open (not recommended)"
    )
    parser.add_argument(
        "--max-restarts", type=int, default=3, help="restarts if the server dies (0: none)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tritonctl.serving import serve_forever

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
        admin_key=args.admin_key,
        restrict_apis=not args.no_restrict,
        max_restarts=args.max_restarts,
    )
