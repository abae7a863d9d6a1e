"""Measure Triton's response cache on the real server: hit ratio, latency on a hit against a
miss, the cache's own lookup/insert time, and the server's memory.

    .venv/bin/python scripts/measure_cache.py [--model digit_classifier] [--requests 300]

Phase 1 sends ``--requests`` distinct requests (all misses), phase 2 the same ones again (all
hits). Client-side latency per phase, and Triton's ``nv_cache_*`` counters between scrapes.
Memory: the server process group's RSS before and after phase 1 (the local cache stores each
response's tensors). Writes ``reports/cache/cache.json`` and prints a short table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.http as http
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.serving_support import bytes_input, digits_test_images, png  # noqa: E402
from tritonctl import paths  # noqa: E402
from tritonctl.console import console  # noqa: E402
from tritonctl.metrics import scrape  # noqa: E402
from tritonctl.server import LocalTriton  # noqa: E402


def rss_mib(server: LocalTriton) -> float:
    total = 0
    for pid in server.group_pids():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024.0


def payloads(model: str, count: int) -> list[list[http.InferInput]]:
    if model.startswith("digit_classifier"):
        images = [png(image) for image in digits_test_images()]
        # distinct requests: one image, or pairs once the single images run out
        items = [
            [images[i % len(images)]] + ([images[i // len(images)]] if i >= len(images) else [])
            for i in range(count)
        ]
        return [[bytes_input("IMAGE", item)] for item in items]
    from tritonctl.corpus import sentences

    corpus = sentences()
    texts = [
        [corpus[i % len(corpus)] + ("" if i < len(corpus) else f" #{i}")] for i in range(count)
    ]
    return [[bytes_input("TEXT", t)] for t in texts]


def phase(client: http.InferenceServerClient, model: str, requests) -> np.ndarray:
    latencies = []
    for inputs in requests:
        start = time.perf_counter()
        client.infer(model, inputs)
        latencies.append((time.perf_counter() - start) * 1000.0)
    return np.array(latencies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digit_classifier")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--cache-mib", type=int, default=64)
    args = parser.parse_args()
    requests = payloads(args.model, args.requests)
    with LocalTriton(
        paths.model_repository(), cache_size=args.cache_mib * 1024 * 1024, exit_timeout=5
    ) as server:
        client = http.InferenceServerClient(server.http_address)
        rss_before = rss_mib(server)
        m0 = scrape(server.metrics_url)
        misses = phase(client, args.model, requests)
        m1 = scrape(server.metrics_url)
        rss_after = rss_mib(server)
        hits = phase(client, args.model, requests)
        m2 = scrape(server.metrics_url)
        client.close()

    def delta(a, b, name):
        return b.value(name, model=args.model) - a.value(name, model=args.model)

    hit_count = delta(m1, m2, "nv_cache_num_hits_per_model")
    miss_count = delta(m0, m1, "nv_cache_num_misses_per_model")
    result = {
        "model": args.model,
        "requests_per_phase": args.requests,
        "hit_ratio_phase2": hit_count / args.requests,
        "hit_ratio_overall": hit_count
        / (hit_count + miss_count + delta(m1, m2, "nv_cache_num_misses_per_model")),
        "client_ms_miss": {
            "p50": float(np.median(misses)),
            "p95": float(np.percentile(misses, 95)),
        },
        "client_ms_hit": {"p50": float(np.median(hits)), "p95": float(np.percentile(hits, 95))},
        "cache_lookup_us_per_hit": delta(m1, m2, "nv_cache_hit_duration_per_model")
        / max(hit_count, 1),
        "cache_lookup_insert_us_per_miss": delta(m0, m1, "nv_cache_miss_duration_per_model")
        / max(miss_count, 1),
        "server_rss_mib_before": round(rss_before, 1),
        "server_rss_mib_after_filling": round(rss_after, 1),
        "cache_size_mib": args.cache_mib,
    }
    out = paths.reports_dir() / "cache"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"cache_{args.model}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"response cache on {args.model} ({args.requests} requests per phase)")
    table.add_column("figure")
    table.add_column("miss", justify="right")
    table.add_column("hit", justify="right")
    table.add_row(
        "client p50 ms",
        f"{result['client_ms_miss']['p50']:.2f}",
        f"{result['client_ms_hit']['p50']:.2f}",
    )
    table.add_row(
        "client p95 ms",
        f"{result['client_ms_miss']['p95']:.2f}",
        f"{result['client_ms_hit']['p95']:.2f}",
    )
    table.add_row(
        "cache time µs / request",
        f"{result['cache_lookup_insert_us_per_miss']:.1f}",
        f"{result['cache_lookup_us_per_hit']:.1f}",
    )
    table.add_row("hit ratio (phase 2)", "", f"{result['hit_ratio_phase2']:.2f}")
    table.add_row("server RSS MiB", f"{rss_before:.0f}", f"{rss_after:.0f} (after filling)")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
