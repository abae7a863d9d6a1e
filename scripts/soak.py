"""Soak: run a served model at 70% of its capacity for ``--minutes``; zero errors, RSS growth < 10%.

1. Start the real server (the tiny repository by default, or ``--repository`` with ``--model``).
2. Measure capacity: closed loop with ``--clients`` clients for ``--probe-seconds``.
3. Send an open-loop load at ``--load`` (0.7) × capacity until ``--minutes`` have passed, sampling
   the resident memory of the server and of every backend stub each ``--sample-seconds``.
4. Print the figures, write them as JSON under ``reports/soak-<model>.json``, and exit non-zero if
   any request failed or the RSS grew by 10% or more (after a warm-up, see ``--warmup``).

    .venv/bin/python scripts/soak.py --minutes 3
    .venv/bin/python scripts/soak.py --minutes 30 --repository model_repository --model digit_classifier
    .venv/bin/python scripts/soak.py --minutes 3 --repository model_repository --model text_embedding

Text inputs are distinct per request (see ``distinct``), so the text ensembles' response cache
cannot answer them: the soak measures the pipeline, not the cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tritonclient.grpc as grpcclient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.bad_input import served_models, valid_inputs  # noqa: E402
from tritonctl.console import console, progress  # noqa: E402
from tritonctl.paths import reports_dir  # noqa: E402
from tritonctl.server import LocalTriton  # noqa: E402


def distinct(inputs: list[tuple[str, str, np.ndarray]], index: int) -> list:
    """``inputs`` with every text input made unique to request ``index``: a corpus sentence and a
    counter, so that a response cache (the text ensembles have one) cannot answer it."""
    from tritonctl.corpus import sentences

    corpus = sentences()
    text = f"{corpus[index % len(corpus)]} (request {index})".encode()
    return [
        (n, d, np.full(a.shape, text, dtype=np.object_))
        if d == "BYTES" and "IMAGE" not in n.upper()
        else (n, d, a)
        for n, d, a in inputs
    ]


def _tensors(inputs: list[tuple[str, str, np.ndarray]]) -> list[grpcclient.InferInput]:
    tensors = []
    for name, datatype, array in inputs:
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def group_rss(server: LocalTriton) -> dict[str, int]:
    """RSS in bytes of the server and each live stub (keyed by PID and command)."""
    rss = {}
    for pid in server.group_pids():
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            rss[f"{pid}:{process.name()}"] = process.memory_info().rss
        except psutil.Error:
            continue
    return rss


def capacity(address: str, model: str, inputs: list, clients: int, seconds: float) -> float:
    """Requests/s that ``clients`` closed-loop clients get through in ``seconds``."""
    stop = time.monotonic() + seconds
    counts: list[int] = []

    def worker(offset: int) -> None:
        client = grpcclient.InferenceServerClient(address)
        n = 0
        while time.monotonic() < stop:
            client.infer(model, _tensors(distinct(inputs, offset + n)))
            n += 1
        counts.append(n)
        client.close()

    # Far apart offsets: no two requests share a text (the soak itself starts at 0).
    threads = [
        threading.Thread(target=worker, args=(10_000_000 * (k + 1),)) for k in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def soak(args: argparse.Namespace) -> dict[str, object]:
    if args.repository is None:
        from tests.tiny_repository import make_tiny_repository

        repository = make_tiny_repository(Path(tempfile.mkdtemp(prefix="soak-")), delay_s=0.005)
        model = args.model or "add_one"
    else:
        repository, model = Path(args.repository), args.model
    [info] = [m for m in served_models(repository) if m.name == model]
    inputs = valid_inputs(info)
    cache = {} if args.cache_size is None else {"cache_size": args.cache_size}
    with LocalTriton(repository, models=args.serve or None, exit_timeout=5, **cache) as server:
        address = server.grpc_address
        measured = capacity(address, model, inputs, args.clients, args.probe_seconds)
        rate = args.load * measured
        console.print(f"{model}: capacity {measured:.1f}/s → soak at {rate:.1f}/s")
        client = grpcclient.InferenceServerClient(address)
        lock = threading.Lock()
        counts = {"sent": 0, "ok": 0, "errors": 0}
        errors: list[str] = []
        latencies: list[float] = []

        def callback(result: object, error: object, sent: float) -> None:
            with lock:
                if error is None:
                    counts["ok"] += 1
                    latencies.append(time.monotonic() - sent)
                else:
                    counts["errors"] += 1
                    if len(errors) < 10:
                        errors.append(str(error))

        samples: list[tuple[float, int]] = []
        by_process: dict[str, list[int]] = {}

        def sample(at: float) -> None:
            rss = group_rss(server)
            samples.append((at, sum(rss.values())))
            if at >= args.warmup:
                for key, value in rss.items():
                    by_process.setdefault(key, []).append(value)

        duration = args.minutes * 60
        start = time.monotonic()
        next_sample = start
        with progress() as bar:
            task = bar.add_task("soak", total=duration)
            i = 0
            while (now := time.monotonic()) - start < duration:
                if now >= next_sample:
                    sample(now - start)
                    next_sample += args.sample_seconds
                    bar.update(task, completed=now - start)
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                sent = time.monotonic()
                client.async_infer(
                    model,
                    _tensors(distinct(inputs, i)),
                    lambda result, error, s=sent: callback(result, error, s),
                    client_timeout=30,
                )
                counts["sent"] += 1
                i += 1
        deadline = time.monotonic() + 30
        while counts["ok"] + counts["errors"] < counts["sent"] and time.monotonic() < deadline:
            time.sleep(0.1)
        sample(time.monotonic() - start)
        client.close()
        per_process = group_rss(server)

    warm = [rss for t, rss in samples if t >= args.warmup] or [samples[-1][1]]
    baseline, final, peak = warm[0], samples[-1][1], max(warm)
    growth = (final - baseline) / baseline
    ordered = sorted(latencies)
    report = {
        "model": model,
        "repository": str(repository),
        "minutes": args.minutes,
        "capacity_per_s": round(measured, 1),
        "rate_per_s": round(rate, 1),
        "load": args.load,
        **counts,
        "unanswered": counts["sent"] - counts["ok"] - counts["errors"],
        "latency_p50_ms": round(ordered[len(ordered) // 2] * 1e3, 1) if ordered else None,
        "latency_p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1e3, 1)
        if ordered
        else None,
        "rss_after_warmup_mb": round(baseline / 2**20, 1),
        "rss_final_mb": round(final / 2**20, 1),
        "rss_peak_mb": round(peak / 2**20, 1),
        "rss_growth_pct": round(100 * growth, 2),
        "rss_processes_mb": {k: round(v / 2**20, 1) for k, v in per_process.items()},
        # after the warm-up -> end, per process: says which one grew (server, which holds the
        # response cache, or a stub)
        "rss_growth_by_process_mb": {
            k: [round(v[0] / 2**20, 1), round(v[-1] / 2**20, 1)] for k, v in by_process.items()
        },
        "rss_samples_mb": [(round(t, 1), round(r / 2**20, 1)) for t, r in samples],
        "errors_sample": errors,
        "passed": counts["errors"] == 0
        and counts["sent"] == counts["ok"]
        and growth < args.max_growth,
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument(
        "--repository", type=Path, default=None, help="default: the tiny repository"
    )
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--serve",
        nargs="*",
        default=[],
        help="load only these models (an ensemble and its steps); default: all",
    )
    parser.add_argument("--load", type=float, default=0.7, help="fraction of measured capacity")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--probe-seconds", type=float, default=5.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="seconds before the RSS baseline"
    )
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument(
        "--cache-size",
        type=int,
        default=None,
        help="response cache bytes (0: off); default LocalTriton's. Distinct requests fill it, "
        "so the server's RSS grows until the cache is full",
    )
    args = parser.parse_args(argv)
    if args.repository is not None and not args.model:
        parser.error("--model is required with --repository")
    report = soak(args)
    path = reports_dir() / f"soak-{report['model']}.json"
    path.write_text(json.dumps(report, indent=2))
    shown = {k: v for k, v in report.items() if k not in ("rss_samples_mb", "rss_processes_mb")}
    console.print_json(json.dumps(shown))
    verdict = "[green]PASS[/]" if report["passed"] else "[red]FAIL[/]"
    console.print(
        f"{verdict} {report['ok']}/{report['sent']} answered, {report['errors']} errors, "
        f"RSS {report['rss_after_warmup_mb']} → {report['rss_final_mb']} MB "
        f"({report['rss_growth_pct']:+.2f}%) — {path}"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
