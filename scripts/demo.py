"""`make demo`: serve the built repository with the real Triton server, send real requests over
gRPC and HTTP, run a short SLO-checked load test, and show where its report is.

Run it after `tritonctl build all` (the Makefile does both). Exit code: the load test's verdict.
"""

from __future__ import annotations

import io
import sys
import time

import numpy as np
from PIL import Image
from rich.panel import Panel
from rich.table import Table

from tritonctl import TRITON_VERSION, paths
from tritonctl.check import check_repository
from tritonctl.client import embed, infer
from tritonctl.commands.infer import show_embeddings
from tritonctl.console import console
from tritonctl.repository import sync_python_backends
from tritonctl.server import LocalTriton
from tritonctl.serving import describe

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply on Monday.",
    "Les marchés financiers ont chuté lundi.",
]


def png(image_0_16: np.ndarray, size: int = 64) -> bytes:
    """A digit as an ordinary dark-on-light PNG, the way a user would send one."""
    pixels = (255 - image_0_16 * 255 / 16).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((size, size), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


def text_demo(server: LocalTriton) -> None:
    console.rule("[bold]1. Sentence embeddings (text_embedding ensemble)")
    started = time.perf_counter()
    over_grpc = embed(SENTENCES, server.grpc_address, protocol="grpc")
    grpc_ms = (time.perf_counter() - started) * 1000
    over_http = embed(SENTENCES, server.http_address, protocol="http")
    show_embeddings(SENTENCES, over_grpc)
    agreement = float(np.min(np.sum(over_grpc * over_http, axis=1)))
    console.print(
        f"gRPC answered in {grpc_ms:.1f} ms; HTTP gives the same vectors (min cosine {agreement:.6f})"
    )


def digits_demo(server: LocalTriton, count: int = 10) -> None:
    import tritonclient.grpc as grpcclient

    from tritonctl.recipes.digits.data import load

    console.rule("[bold]2. Handwritten digits (digit_classifier ensemble, PNG in)")
    test = load().test
    images = [png(test.x[i, 0]) for i in range(count)]
    array = np.array(images, dtype=np.object_).reshape(-1, 1)
    tensor = grpcclient.InferInput("IMAGE", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    out = infer(server.grpc_address, "digit_classifier", [tensor], ["LABELS", "SCORES"])
    table = Table(title=f"{count} held-out digits, sent as {len(images[0])}-byte PNGs")
    for column in ("#", "true", "predicted", "score", "runner-up"):
        table.add_column(column, justify="right")
    correct = 0
    for i in range(count):
        labels = [v.decode() if isinstance(v, bytes) else str(v) for v in out["LABELS"][i]]
        scores = out["SCORES"][i]
        ok = labels[0] == str(test.y[i])
        correct += ok
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        table.add_row(
            str(i),
            str(test.y[i]),
            f"{labels[0]} {mark}",
            f"{scores[0]:.3f}",
            f"{labels[1]} ({scores[1]:.3f})",
        )
    console.print(table)
    console.print(f"{correct}/{count} correct")


def load_test(server: LocalTriton) -> int:
    from tritonctl.loadtest.run import run_loadtest

    slo = paths.project_root() / "loadtests" / "slo" / "text_embedding.yaml"
    if not slo.exists():
        slo = paths.project_root() / "loadtests" / "slo" / "digit_classifier.yaml"
    console.rule(f"[bold]3. SLO load test ({slo.relative_to(paths.project_root())})")
    result = run_loadtest(slo, server=server, console=console, duration_s=10)
    verdict = (
        "[green]SLO met[/]" if result.passed else "[red]SLO missed: " + "; ".join(result.failed)
    )
    console.print(Panel(f"{verdict}\nreport: {result.report}", title="load test"))
    return result.exit_code


def main() -> int:
    repository = paths.model_repository()
    problems = check_repository(repository)
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/] {problem}")
        console.print("run `tritonctl build all` first (`make demo` does)")
        return 1
    sync_python_backends(repository, paths.python_backends())
    server = LocalTriton(repository, exit_timeout=10)
    with console.status(f"starting the real tritonserver {TRITON_VERSION} on the CPU…"):
        started = time.monotonic()
        server.start()
    try:
        console.print(describe(server))
        console.print(
            f"ready in {time.monotonic() - started:.1f} s: HTTP {server.url}  gRPC {server.grpc_address}  "
            f"metrics {server.metrics_url}"
        )
        text_demo(server)
        digits_demo(server)
        return load_test(server)
    finally:
        with console.status("stopping the server (in-flight requests finish first)…"):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
