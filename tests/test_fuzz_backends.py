"""Property-based fuzzing (hypothesis, bounded) of the Python backends, in-process and through the server.

In-process: the pure helpers of ``python_backends/*/model.py`` (imported without Triton) either
return well-formed results or raise their own, named error, never anything else.
Through the server: random shapes, dtypes and bytes sent to the served models get an answer or a
400 / INVALID_ARGUMENT, and the server stays live and ready with the same processes (a killed
stub stays a zombie in the group, so zombies count as dead), and a valid request with a value
never sent before is answered by the model right after.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.bad_input import live_pids, send
from tests.tiny_repository import make_tiny_repository
from tritonctl.paths import python_backends
from tritonctl.server import LocalTriton

BOUNDED = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _backend(name: str) -> ModuleType:
    path = python_backends() / name / "model.py"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout yet")
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@BOUNDED
@given(data=st.binary(max_size=2048))
def test_image_decode_accepts_or_names_the_problem(data: bytes) -> None:
    module = _backend("image_preprocess")
    try:
        pixels = module.decode(data)
    except module.ImageError as error:
        assert str(error)
        return
    assert pixels.shape == (8, 8) and np.isfinite(pixels).all()


@BOUNDED
@given(
    width=st.integers(1, 64),
    height=st.integers(1, 64),
    mode=st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"]),
    fmt=st.sampled_from(["PNG", "BMP", "GIF", "TIFF"]),
    cut=st.floats(0.1, 1.0, allow_subnormal=False),
)
def test_image_decode_on_real_and_truncated_images(
    width: int, height: int, mode: str, fmt: str, cut: float
) -> None:
    from PIL import Image

    module = _backend("image_preprocess")
    buffer = io.BytesIO()
    try:
        Image.new(mode, (width, height)).save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        return  # that mode cannot be written in that format: nothing to test
    data = buffer.getvalue()
    data = data[: max(1, int(len(data) * cut))]
    try:
        pixels = module.decode(data)
    except module.ImageError as error:
        assert str(error)
        return
    assert pixels.shape == (8, 8) and np.isfinite(pixels).all()


@BOUNDED
@given(
    logits=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 16), st.just(10)),
        # No subnormals: ONNX Runtime or torch, loaded earlier in this process, may set the
        # CPU to flush-to-zero, and hypothesis then refuses to generate them.
        elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=False),
    ),
    k=st.integers(1, 10),
)
def test_top_k_gives_sorted_probabilities(logits: np.ndarray, k: int) -> None:
    module = _backend("classify_postprocess")
    labels, scores = module.top_k(logits, k)
    assert labels.shape == scores.shape == (len(logits), k)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    assert (np.diff(scores, axis=1) <= 1e-7).all()


# Through the server --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    repo = make_tiny_repository(tmp_path_factory.mktemp("fuzz"))
    with LocalTriton(repo, exit_timeout=5) as server:
        yield server


DTYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
}


@pytest.mark.server
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    model=st.sampled_from(["double", "add_one"]),
    protocol=st.sampled_from(["http", "grpc"]),
    datatype=st.sampled_from(sorted(DTYPES)),
    shape=st.lists(st.integers(0, 40), min_size=0, max_size=3),
    name=st.sampled_from(["X", "Y", "x", ""]),
)
def test_random_requests_get_an_answer_or_a_400(
    tiny: LocalTriton, model: str, protocol: str, datatype: str, shape: list[int], name: str
) -> None:
    array = np.ones(shape, dtype=DTYPES[datatype])
    pids = live_pids(tiny)
    address = tiny.http_address if protocol == "http" else tiny.grpc_address
    outcome = send(address, protocol, model, [(name or "_", datatype, array)])
    if outcome.status == "ok":
        assert (name, datatype, shape[1:]) == ("X", "FP32", [4]) and 1 <= shape[0] <= 32
    else:
        assert outcome.status in ("400", "StatusCode.INVALID_ARGUMENT"), outcome
        assert outcome.message
    assert tiny.is_ready() and live_pids(tiny) >= pids
    value = float(next(_FRESH))
    after = send(
        tiny.grpc_address, "grpc", model, [("X", "FP32", np.full((1, 4), value, np.float32))]
    )
    assert after.status == "ok", after
    assert after.outputs["Y"].tolist() == [[value * 2 if model == "double" else value + 1] * 4]


_FRESH = itertools.count(1000)
