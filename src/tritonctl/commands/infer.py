"""``tritonctl infer PIPELINE ...``: send a request to a running server and show the answer.

Each pipeline is a sub-command registered in ``PIPELINES`` (``text-embedding`` now; e.g.
``digits IMAGE_FILE...`` can be added with its own ``register`` function)::

    tritonctl infer text-embedding "A cat sleeps." "A kitten naps." --protocol http
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import numpy as np

DEFAULT_PORTS = {"grpc": 8001, "http": 8000}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("infer", help="send a request to a pipeline and show the result")
    pipelines = parser.add_subparsers(dest="pipeline", metavar="PIPELINE", required=True)
    for add in PIPELINES.values():
        add(pipelines)


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    parser.add_argument(
        "--url",
        default=None,
        help="host:port of the server (default 127.0.0.1:8001 gRPC / :8000 HTTP)",
    )


def _url(args: argparse.Namespace) -> str:
    return str(args.url or f"127.0.0.1:{DEFAULT_PORTS[args.protocol]}")


# --- text-embedding -------------------------------------------------------------------------


def _register_text_embedding(pipelines: argparse._SubParsersAction) -> None:
    parser = pipelines.add_parser("text-embedding", help="embed sentences; show their similarity")
    parser.add_argument("sentences", nargs="+", help="one or more sentences")
    parser.add_argument("--model", default="text_embedding", help="ensemble to call")
    _connection_arguments(parser)
    parser.set_defaults(func=run_text_embedding)


def run_text_embedding(args: argparse.Namespace) -> int:
    from tritonctl.client import InferenceError, embed
    from tritonctl.console import err_console

    try:
        vectors = embed(args.sentences, _url(args), protocol=args.protocol, model=args.model)
    except (InferenceError, ConnectionError, OSError) as error:
        err_console.print(f"[red]✗[/] {error}", soft_wrap=True)
        return 1
    show_embeddings(args.sentences, vectors)
    return 0


def show_embeddings(sentences: Sequence[str], vectors: np.ndarray) -> None:
    """A summary of each vector and the cosine-similarity matrix, as rich tables."""
    from rich.table import Table

    from tritonctl.client import cosine_matrix
    from tritonctl.console import console

    summary = Table(title=f"{len(vectors)} embedding(s) of dimension {vectors.shape[1]}")
    for column in ("#", "sentence", "norm", "mean", "std", "first values"):
        summary.add_column(column, justify="right" if column not in ("sentence",) else "left")
    for index, (text, vector) in enumerate(zip(sentences, vectors, strict=True)):
        head = " ".join(f"{v:+.3f}" for v in vector[:4])
        summary.add_row(
            str(index), _short(text), f"{np.linalg.norm(vector):.4f}", f"{vector.mean():+.4f}",
            f"{vector.std():.4f}", f"{head} …",
        )  # fmt: skip
    console.print(summary)
    matrix = cosine_matrix(vectors)
    similarity = Table(title="cosine similarity")
    similarity.add_column("")
    for index in range(len(vectors)):
        similarity.add_column(str(index), justify="right")
    for index, row in enumerate(matrix):
        cells = [_cell(value, index == other) for other, value in enumerate(row)]
        similarity.add_row(f"{index} {_short(sentences[index], 30)}", *cells)
    console.print(similarity)


def _cell(value: float, diagonal: bool) -> str:
    if diagonal:
        return f"[dim]{value:.3f}[/]"
    style = "green" if value >= 0.7 else "yellow" if value >= 0.4 else "white"
    return f"[{style}]{value:.3f}[/]"


def _short(text: str, width: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


#: pipeline name -> function registering its sub-command
PIPELINES: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "text-embedding": _register_text_embedding,
}
