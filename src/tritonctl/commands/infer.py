"""``tritonctl infer TARGET ...``: send a request to a running server and show the answer.

TARGET is a pipeline, whose arguments are its items, or the name of any served model, whose
inputs are ``--input NAME=VALUE`` / ``--input NAME=@FILE`` (typed and shaped from the model's
metadata, see ``tritonctl.invoke``)::

    tritonctl infer text-embedding "A cat sleeps." "A kitten naps." --protocol http
    tritonctl infer digits seven.png three.jpg
    tritonctl infer tokenizer --input TEXT="A cat sleeps."
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
MODEL = "model"  # the sub-command any name that is not a pipeline's goes to
EPILOG = """\
any other TARGET is a served model's name, called with --input NAME=VALUE|NAME=@FILE:
  tritonctl infer tokenizer --input TEXT="A cat sleeps."
  tritonctl infer digits_student --input INPUT=@image.npy
  tritonctl infer image_preprocess --input IMAGE=@seven.png

exit status: 0 answered; 2 the request is wrong (bad input, unknown model, or input the
server refused); 1 the server could not be reached or failed.
"""


class _PipelineOrModel(argparse._SubParsersAction):
    """Sub-commands for the pipelines; any other name is a model's, parsed by the ``model``
    sub-command (so ``infer tokenizer --input ...`` works as ``infer model tokenizer ...``)."""

    class _AnyName(dict):
        """The pipelines' names (for listing), and ``in`` true for any name: argparse checks
        ``choices`` before it calls the action, which sends unknown names to ``model``."""

        def __contains__(self, name: object) -> bool:
            return True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = self._AnyName()

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = super().add_parser(name, **kwargs)
        dict.__setitem__(self.choices, name, parser)
        return parser

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if not dict.__contains__(self._name_parser_map, values[0]):
            values = [MODEL, *values]
        super().__call__(parser, namespace, values, option_string)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="send a request to a pipeline or any served model and show the result",
        description="Send a request to a running server and show the answer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    targets = parser.add_subparsers(
        dest="target", metavar="TARGET", required=True, action=_PipelineOrModel
    )
    text = targets.add_parser("text-embedding", help="embed sentences; show their similarity")
    text.add_argument("items", nargs="+", metavar="SENTENCE", help="one or more sentences")
    text.add_argument("--model", default="text_embedding", help="ensemble to call")
    text.set_defaults(pipeline=run_text_embedding)
    digits = targets.add_parser("digits", help="label and top-k scores of PNG/JPEG digits")
    digits.add_argument("items", nargs="+", metavar="IMAGE", help="image files")
    digits.add_argument("--model", default="digit_classifier", help="ensemble to call")
    digits.add_argument("--top-k", type=int, default=None, help="labels to show (default all)")
    digits.set_defaults(pipeline=run_digits)
    model = targets.add_parser(
        MODEL,
        help="any served model (or give its name as TARGET): tritonctl infer MODEL --input ...",
    )
    model.add_argument("name", metavar="MODEL", help="a served model's name")
    model.add_argument("stray", nargs="*", help=argparse.SUPPRESS)  # named in the error
    model.add_argument(
        "--input",
        "-i",
        dest="inputs",
        action="append",
        default=[],
        metavar="NAME=VALUE|NAME=@FILE",
        help="one of the model's inputs (repeat for each)",
    )
    model.set_defaults(pipeline=run_model)
    for sub in (text, digits, model):
        sub.add_argument("--json", action="store_true", help="print the result as JSON")
        sub.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
        sub.add_argument(
            "--url",
            default=None,
            help="host:port of the server (default 127.0.0.1:8001 gRPC / :8000 HTTP)",
        )
    parser.set_defaults(func=run)


def _url(args: argparse.Namespace) -> str:
    return str(args.url or f"127.0.0.1:{DEFAULT_PORTS[args.protocol]}")


def run(args: argparse.Namespace) -> int:
    from tritonctl.client import InferenceError, RequestError
    from tritonctl.console import err_console
    from tritonctl.invoke import InputError

    # 2: the request is wrong (caught here or refused by the server); 1: the server failed.
    try:
        return int(args.pipeline(args))
    except (InputError, RequestError) as error:
        err_console.print(f"[red]error:[/] {error}", soft_wrap=True)
        return 2
    except (InferenceError, ConnectionError, OSError) as error:
        err_console.print(f"[red]✗[/] {error}", soft_wrap=True)
        return 1


# --- text-embedding -------------------------------------------------------------------------


def run_text_embedding(args: argparse.Namespace) -> int:
    from tritonctl.client import RequestError, embed
    from tritonctl.invoke import argv_bytes, signature

    model = args.model
    spec = signature(_url(args), model, args.protocol)
    if [i.name for i in spec.inputs] != ["TEXT"] or "EMBEDDING" not in {
        o.name for o in spec.outputs
    }:
        raise RequestError(f"model '{model}' is not a text-embedding pipeline: {spec.usage()}")
    items = [argv_bytes(item) for item in args.items]
    vectors = embed(items, _url(args), protocol=args.protocol, model=model)
    if args.json:
        print(json.dumps({"model": model, "embeddings": vectors.tolist()}))
    else:
        show_embeddings(args.items, vectors)
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


# --- digits ---------------------------------------------------------------------------------


def run_digits(args: argparse.Namespace) -> int:
    from rich.table import Table

    from tritonctl.console import console
    from tritonctl.invoke import InputError, classify_images, read_images

    model = args.model
    labels, scores = classify_images(read_images(args.items), _url(args), args.protocol, model)
    k = labels.shape[1] if args.top_k is None else args.top_k
    if not 1 <= k <= labels.shape[1]:
        raise InputError(f"--top-k must be 1..{labels.shape[1]} ({model} returns that many)")
    if args.json:
        results = [
            {
                "file": f,
                "label": ls[0],
                "top_k": [[lab, float(sc)] for lab, sc in zip(ls[:k], ss[:k], strict=True)],
            }
            for f, ls, ss in zip(args.items, labels.tolist(), scores, strict=True)
        ]
        print(json.dumps({"model": model, "results": results}))
        return 0
    table = Table(title=f"{model}: {len(args.items)} image(s)")
    for column in ("file", "label", "score", f"top {k}"):
        table.add_column(column, justify="left" if column in ("file", f"top {k}") else "right")
    for file, row_labels, row_scores in zip(args.items, labels, scores, strict=True):
        ranked = "  ".join(
            f"{lab} {sc:.3f}" for lab, sc in zip(row_labels[:k], row_scores[:k], strict=True)
        )
        table.add_row(str(file), f"[bold]{row_labels[0]}[/]", f"{row_scores[0]:.3f}", ranked)
    console.print(table)
    return 0


# --- any model ------------------------------------------------------------------------------


def run_model(args: argparse.Namespace) -> int:
    from rich.table import Table

    from tritonctl.console import console
    from tritonctl.invoke import InputError, call, jsonable, parse_inputs, signature

    if args.stray:
        raise InputError(
            f"'{args.name}' is not a pipeline (text-embedding, digits), so it is taken as a "
            f"model's name; give its inputs with --input NAME=VALUE, not as arguments "
            f"({' '.join(args.stray)[:60]!r})"
        )
    spec = signature(_url(args), args.name, args.protocol)
    if not args.inputs:
        raise InputError(f"give the inputs of '{spec.model}': {spec.usage()}")
    outputs = call(_url(args), spec, parse_inputs(spec, args.inputs), args.protocol)
    if args.json:
        print(
            json.dumps(
                {"model": spec.model, "outputs": {k: jsonable(v) for k, v in outputs.items()}}
            )
        )
        return 0
    table = Table(title=f"{spec.model}: {len(outputs)} output(s)")
    for column in ("output", "type", "shape", "values"):
        table.add_column(column, justify="left", overflow="fold")
    types = {o.name: o.datatype for o in spec.outputs}
    for name, array in outputs.items():
        table.add_row(
            name, types.get(name, str(array.dtype)), str(list(array.shape)), _values(array)
        )
    console.print(table)
    return 0


def _values(array: np.ndarray, items: int = 8) -> str:
    """The first values of an output, text for BYTES, with the count of the rest."""
    from tritonctl.invoke import jsonable

    flat = array.reshape(-1)
    head = jsonable(flat[:items])
    if array.dtype.kind == "f":
        head = ["nan" if v is None else f"{v:.4g}" for v in head]
        text = ", ".join(head)
    else:
        text = ", ".join(
            json.dumps(v, ensure_ascii=False) if isinstance(v, str) else str(v) for v in head
        )
    more = flat.size - min(items, flat.size)
    return text + (f", … ({more} more)" if more else "")
