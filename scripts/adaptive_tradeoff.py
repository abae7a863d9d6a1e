"""The adaptive models' trade-off per route: latency, throughput and accuracy, on the real server.

    .venv/bin/python scripts/adaptive_tradeoff.py [--models digit_classifier_adaptive text_embedding_adaptive]

Each route is forced with the request parameter ``route`` (accurate / fast). Latency: one
client, sequential requests (p50/p95). Throughput: ``--clients`` closed-loop clients for
``--seconds``. Accuracy: digits, top-1 accuracy on the held-out test split; text, cosine to
the FP32 pipeline's embedding over the evaluation corpus (1.0 = identical). Writes
``reports/adaptive/tradeoff.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as http
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.serving_support import burst, bytes_input, digits_test_images, png  # noqa: E402
from tritonctl import paths  # noqa: E402
from tritonctl.console import console  # noqa: E402
from tritonctl.server import LocalTriton  # noqa: E402


def workload(model: str) -> tuple[str, list[bytes] | list[str]]:
    if model.startswith("digit"):
        return "IMAGE", [png(image) for image in digits_test_images()]
    from tritonctl.corpus import sentences

    return "TEXT", sentences()


def accuracy(client, model: str, route: str, name: str, items) -> tuple[float, float | None]:
    """Digits: (top-1, None). Text: (mean, min) cosine to the FP32 pipeline's embeddings."""
    outputs = []
    for start in range(0, len(items), 32):
        result = client.infer(
            model, [bytes_input(name, items[start : start + 32])], parameters={"route": route}
        )
        outputs.append(result.as_numpy("LABELS" if name == "IMAGE" else "EMBEDDING"))
    if name == "IMAGE":
        labels = np.load(paths.reports_dir() / "digits" / "test_set.npz")["labels"]
        predicted = np.concatenate(outputs)[:, 0].astype(str).astype(int)
        return float(np.mean(predicted == labels)), None
    reference = []
    for start in range(0, len(items), 32):
        result = client.infer("text_embedding", [bytes_input(name, items[start : start + 32])])
        reference.append(result.as_numpy("EMBEDDING"))
    cosine = np.sum(np.concatenate(outputs) * np.concatenate(reference), axis=1)
    return float(np.mean(cosine)), float(np.min(cosine))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["digit_classifier_adaptive", "text_embedding_adaptive"]
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    rows = []
    with LocalTriton(paths.model_repository(), cache_size=0, exit_timeout=5) as server:
        client = http.InferenceServerClient(server.http_address)
        ready = {m.name for m in server.model_states() if m.state == "READY"}
        for model in args.models:
            if model not in ready:
                console.print(f"[yellow]skipping {model}: not loaded (build it first)[/]")
                continue
            name, items = workload(model)
            for route in ("accurate", "fast"):

                def call(i=[0], route=route, model=model, name=name, items=items):  # noqa: B006
                    i[0] += 1
                    one = http.InferenceServerClient(server.http_address)
                    try:
                        return one.infer(
                            model,
                            [bytes_input(name, [items[i[0] % len(items)]])],
                            parameters={"route": route},
                        )
                    finally:
                        one.close()

                single, _ = burst(call, 1, min(args.seconds, 2.0))
                mean, minimum = accuracy(client, model, route, name, items)
                many, _ = burst(call, args.clients, args.seconds)
                rows.append(
                    {
                        "model": model,
                        "route": route,
                        "p50_ms": round(float(np.median(single)), 2),
                        "p95_ms": round(float(np.percentile(single, 95)), 2),
                        "throughput_rps": round(len(many) / args.seconds, 1),
                        "loaded_p95_ms": round(float(np.percentile(many, 95)), 2),
                        "accuracy": round(mean, 4),
                        "min_cosine": None if minimum is None else round(minimum, 4),
                        "accuracy_metric": "top-1 on test split"
                        if name == "IMAGE"
                        else "mean cosine to FP32",
                    }
                )
        client.close()
    out = paths.reports_dir() / "adaptive"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tradeoff.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = Table(title=f"adaptive routes ({args.clients} clients for throughput)")
    for column in ("model", "route", "p50 ms", "p95 ms", "req/s", "loaded p95 ms", "accuracy"):
        table.add_column(column, justify="left" if column in ("model", "route") else "right")
    for r in rows:
        table.add_row(
            r["model"],
            r["route"],
            f"{r['p50_ms']:.2f}",
            f"{r['p95_ms']:.2f}",
            f"{r['throughput_rps']:.0f}",
            f"{r['loaded_p95_ms']:.1f}",
            f"{r['accuracy']:.4f} ({r['accuracy_metric']})"
            + ("" if r["min_cosine"] is None else f", min {r['min_cosine']:.4f}"),
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
