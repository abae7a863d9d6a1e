"""The bad-input matrix against real servers, over HTTP and gRPC, for every served model.

Every case must get a clear error naming the problem (HTTP 400 / gRPC INVALID_ARGUMENT; 404 /
NOT_FOUND for an unknown model or version; 500 for a body that is not JSON, which is what Triton
2.51 answers). After each case the server is live and ready, no backend stub has died, and a valid
request sent at the same time got the same answer as before the matrix.

Two things keep those last checks able to fail. A SIGKILLed stub stays a zombie in the server's
process group (Triton does not reap it) while live/ready stay true, so processes in state Z count
as dead. And the valid request carries bytes never sent before (``fresh``), with the same answer:
the cached pipelines would otherwise answer it from the response cache without the model.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.bad_input import (
    Case,
    Outcome,
    cases_for,
    fresh,
    live_pids,
    send,
    served_models,
    unknown_model_case,
    valid_inputs,
)
from tests.tiny_repository import make_tiny_repository
from tritonctl.paths import model_repository
from tritonctl.server import LocalTriton

pytestmark = pytest.mark.server

PROTOCOLS = ("http", "grpc")
#: The tiny repository's add_one is a test double (Y = X + 1), not a served pipeline model.
NAN_EXEMPT = frozenset({"add_one"})
#: Models served through the adaptive BLS router take routing inputs; they have their own tests.
SKIP = frozenset({"text_embedding_adaptive", "digit_classifier_adaptive"})


def _table(repository: Path, source: str) -> list[tuple[str, Case]]:
    rows = []
    for model in served_models(repository):
        if model.name in SKIP:
            continue
        for protocol in PROTOCOLS:
            rows += [(source, c) for c in cases_for(model, protocol, nan_exempt=NAN_EXEMPT)]
    return rows


_TINY = make_tiny_repository(Path(__import__("tempfile").mkdtemp(prefix="tiny-matrix-")))
atexit.register(shutil.rmtree, _TINY, True)  # made at import: the cases are built from it
TABLE = (
    _table(_TINY, "tiny")
    + [("tiny", unknown_model_case(p)) for p in PROTOCOLS]
    + _table(model_repository(), "project")
)


@pytest.fixture(scope="module")
def tiny_server() -> Iterator[LocalTriton]:
    with LocalTriton(_TINY, exit_timeout=5) as server:
        yield server


@pytest.fixture(scope="module")
def servers(request: pytest.FixtureRequest, tiny_server: LocalTriton) -> dict[str, object]:
    return {"tiny": tiny_server, "project": None, "_request": request}


@pytest.fixture(scope="module")
def references() -> dict[tuple[str, str], Outcome]:
    return {}


def _server(source: str, servers: dict[str, object]) -> LocalTriton:
    if servers[source] is None:
        servers[source] = servers["_request"].getfixturevalue("triton")  # type: ignore[attr-defined]
    return servers[source]  # type: ignore[return-value]


def _reference(server: LocalTriton, source: str, model: str, refs: dict) -> tuple[str, list]:
    """A valid request for the case's model (or a served one) and its answer before any case."""
    [info] = [m for m in served_models(server.model_repository) if m.name == model] or [
        next(m for m in served_models(server.model_repository) if m.name not in SKIP)
    ]
    inputs = valid_inputs(info)
    key = (source, info.name)
    if key not in refs:
        refs[key] = send(server.grpc_address, "grpc", info.name, inputs)
        assert refs[key].status == "ok", refs[key]
    return info.name, inputs


@pytest.mark.parametrize(
    "number, source, case",
    [(n, s, c) for n, (s, c) in enumerate(TABLE)],
    ids=[f"{s}:{c.id}" for s, c in TABLE],
)
def test_bad_input(
    number: int, source: str, case: Case, servers: dict[str, object], references: dict
) -> None:
    server = _server(source, servers)
    model, inputs = _reference(server, source, case.model, references)
    inputs = fresh(inputs, number + 1)
    pids = live_pids(server)
    with cf.ThreadPoolExecutor(2) as pool:
        bad = pool.submit(case.request, server.http_address, server.grpc_address)
        good = pool.submit(send, server.grpc_address, "grpc", model, inputs)
        outcome, answer = bad.result(timeout=120), good.result(timeout=120)
    case.check(outcome)
    assert server.is_live() and server.is_ready(), f"{case.id}: server not live/ready"
    assert live_pids(server) >= pids, f"{case.id}: a process of the server died"
    expected = references[(source, model)]
    assert answer.status == "ok", answer
    for name, value in expected.outputs.items():
        if value.dtype == np.object_:
            assert (answer.outputs[name] == value).all(), name
        else:
            np.testing.assert_allclose(answer.outputs[name], value, rtol=1e-5, atol=1e-6)


def test_matrix_covers_every_served_model_and_protocol() -> None:
    covered = {(s, c.model, c.protocol) for s, c in TABLE}
    for model in served_models(model_repository()):
        if model.name not in SKIP:
            assert {("project", model.name, p) for p in PROTOCOLS} <= covered
    kinds = {c.kind for _, c in TABLE}
    for kind in ("wrong-dtype", "wrong-rank", "wrong-shape", "batch-over-max", "zero-batch",
                 "missing-input", "extra-input", "unknown-model", "unknown-version",
                 "malformed-json", "large-body-3.75MiB"):  # fmt: skip
        assert kind in kinds, kind
