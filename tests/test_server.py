"""The real tritonserver from the nvidia-pytriton wheel, on a tiny repository made by code."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.tiny_repository import make_tiny_repository
from tritonctl.server import LocalTriton

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    repo = make_tiny_repository(tmp_path_factory.mktemp("tiny"))
    with LocalTriton(repo, exit_timeout=5) as server:
        yield server


def _infer_http(server: LocalTriton, model: str, x: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_address)
    try:
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer(model, [inp]).as_numpy("Y")
    finally:
        client.close()


def _infer_grpc(server: LocalTriton, model: str, x: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        inp = grpcclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer(model, [inp]).as_numpy("Y")
    finally:
        client.close()


@pytest.mark.parametrize("infer", [_infer_http, _infer_grpc], ids=["http", "grpc"])
@pytest.mark.parametrize(
    "model, expected", [("double", lambda x: 2 * x), ("add_one", lambda x: x + 1)]
)
def test_serves_onnx_and_python_models(tiny: LocalTriton, infer, model: str, expected) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    np.testing.assert_allclose(infer(tiny, model, x), expected(x))


def test_models_are_ready_and_listed(tiny: LocalTriton) -> None:
    states = {s.name: s.state for s in tiny.model_states()}
    assert states == {"double": "READY", "add_one": "READY"}


def test_binds_loopback_only(tiny: LocalTriton) -> None:
    assert tiny.host == "127.0.0.1"
    cmd = " ".join(tiny.command(Path("/b"), Path("/c")))
    assert "--http-address=127.0.0.1" in cmd and "--grpc-address=127.0.0.1" in cmd


def test_admin_apis_need_the_key(tiny: LocalTriton) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{tiny.url}/v2/repository/index", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(request, timeout=5)
    assert denied.value.code == 403
    request.add_header("admin-key", tiny.admin_key)
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


@pytest.mark.parametrize("model", ["double", "add_one"])
def test_dynamic_batching_forms_batches(tiny: LocalTriton, model: str) -> None:
    client = grpcclient.InferenceServerClient(tiny.grpc_address)

    def stats() -> tuple[int, int]:
        s = client.get_inference_statistics(model_name=model, as_json=True)["model_stats"][0]
        return int(s["inference_count"]), int(s["execution_count"])

    before = stats()

    def one(i: int) -> np.ndarray:
        return _infer_grpc(tiny, model, np.full((1, 4), i, dtype=np.float32))

    with cf.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    after = stats()
    client.close()
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 64
    assert executions < inferences, f"no batching: {executions} executions for {inferences}"
    for i, y in enumerate(results):
        assert y[0, 0] == (2 * i if model == "double" else i + 1)
