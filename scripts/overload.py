"""Overload: send 2× a served model's capacity and see its queue policy bound the latency.

1. Start the real server over ``--repository`` (the project's by default), loading ``--serve``.
2. Measure capacity: closed loop with ``--clients`` clients for ``--probe-seconds``.
3. Send an open-loop load at ``--factor`` (2) × capacity for ``--seconds``, every request distinct
   (no response-cache hits), and record each one's latency and outcome.
4. Print served and rejected counts, latency percentiles of both, and any other error; write
   them to ``reports/overload-<model>.json``.

    .venv/bin/python scripts/overload.py            # text_embedding and its three steps

``--no-policy`` serves a copy of the repository whose configs have the queue policy cleared
(version folders are symlinked), to compare with what happens without one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import tritonclient.grpc as grpcclient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.soak import _tensors, capacity, distinct  # noqa: E402
from tests.bad_input import served_models, valid_inputs  # noqa: E402
from tritonctl.console import console  # noqa: E402
from tritonctl.model_config import load_config, save_config  # noqa: E402
from tritonctl.paths import model_repository, reports_dir  # noqa: E402
from tritonctl.server import LocalTriton  # noqa: E402

TEXT_PIPELINE = ["tokenizer", "text_encoder", "pooling", "text_embedding"]


def without_policy(repository: Path, models: list[str]) -> Path:
    """A copy of ``models`` with ``default_queue_policy`` cleared; version folders symlinked."""
    copy = Path(tempfile.mkdtemp(prefix="overload-nopolicy-"))
    for name in models:
        (copy / name).mkdir()
        for version in (repository / name).iterdir():
            if version.is_dir():
                (copy / name / version.name).symlink_to(version.resolve())
        config = load_config(repository / name)
        if config.HasField("dynamic_batching"):  # a oneof with ensemble_scheduling
            config.dynamic_batching.ClearField("default_queue_policy")
        save_config(config, copy / name)
    return copy


def _percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))] * 1e3, 1) if ordered else None


def overload(args: argparse.Namespace) -> dict[str, object]:
    repository = Path(args.repository)
    if args.no_policy:
        repository = without_policy(repository, args.serve)
    [info] = [m for m in served_models(repository) if m.name == args.model]
    inputs = valid_inputs(info)
    with LocalTriton(repository, models=args.serve, exit_timeout=5) as server:
        address = server.grpc_address
        capacity(address, args.model, inputs, args.clients, 2.0)  # warm-up
        measured = capacity(address, args.model, inputs, args.clients, args.probe_seconds)
        rate = args.factor * measured
        count = int(rate * args.seconds)
        console.print(f"{args.model}: capacity {measured:.1f}/s → {count} requests at {rate:.1f}/s")
        client = grpcclient.InferenceServerClient(address)
        lock, done = threading.Lock(), threading.Semaphore(0)
        outcomes: list[tuple[float, str]] = []

        def callback(result: object, error: object, sent: float) -> None:
            outcome = "ok" if error is None else f"{error.status()} {error.message()}"  # type: ignore[attr-defined]
            with lock:
                outcomes.append((time.monotonic() - sent, outcome))
            done.release()

        start = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            sent = time.monotonic()
            client.async_infer(
                args.model,
                _tensors(distinct(inputs, i)),
                lambda result, error, s=sent: callback(result, error, s),
                client_timeout=120,
            )
        answered = sum(done.acquire(timeout=180) for _ in range(count))
        client.close()
    served = [t for t, o in outcomes if o == "ok"]
    rejected = [t for t, o in outcomes if o.startswith("StatusCode.UNAVAILABLE")]
    others = [o for _, o in outcomes if o != "ok" and not o.startswith("StatusCode.UNAVAILABLE")]
    return {
        "model": args.model,
        "queue_policy": not args.no_policy,
        "capacity_per_s": round(measured, 1),
        "rate_per_s": round(rate, 1),
        "seconds": args.seconds,
        "sent": count,
        "answered": answered,
        "served": len(served),
        "served_per_s": round(len(served) / args.seconds, 1),
        "rejected_unavailable": len(rejected),
        "other_errors": len(others),
        "served_p50_ms": _percentile(served, 0.5),
        "served_p99_ms": _percentile(served, 0.99),
        "served_max_ms": _percentile(served, 1.0),
        "rejected_p50_ms": _percentile(rejected, 0.5),
        "rejected_max_ms": _percentile(rejected, 1.0),
        "rejected_queue_full": sum("maximum queue size" in o.lower() for _, o in outcomes),
        "rejected_timeout": sum("timeout" in o.lower() for _, o in outcomes),
        "other_errors_sample": others[:5],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repository", type=Path, default=model_repository())
    parser.add_argument("--model", default="text_embedding")
    parser.add_argument("--serve", nargs="+", default=TEXT_PIPELINE, help="models to load")
    parser.add_argument("--factor", type=float, default=2.0, help="load as a multiple of capacity")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--probe-seconds", type=float, default=8.0)
    parser.add_argument("--no-policy", action="store_true", help="clear the queue policy first")
    args = parser.parse_args(argv)
    report = overload(args)
    suffix = "-nopolicy" if args.no_policy else ""
    path = reports_dir() / f"overload-{args.model}{suffix}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print_json(json.dumps(report))
    return 0 if report["answered"] == report["sent"] and not report["other_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
