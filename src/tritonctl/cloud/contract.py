"""Requests over the SageMaker and Vertex AI contracts: KServe v2 bodies, JSON or binary.

A JSON body is the KServe v2 inference request; ``BYTES`` elements travel as UTF-8 strings, so
binary data (a PNG) needs the binary form: a JSON header followed by the raw tensors, announced
by ``application/vnd.sagemaker-triton.binary+json;json-header-size=N`` (SageMaker) or
``application/vnd.vertex-ai-triton.binary+json;json-header-size=N`` (Vertex AI).

Each cloud's front door refuses a body over its limit before the container sees it; Triton does
not enforce those limits itself. ``Endpoint.invoke`` refuses such a body locally with
``PayloadTooLarge``, naming the limit, so a client learns about it here rather than in the cloud.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tritonclient.http as http

from tritonctl.cloud import facts
from tritonctl.cloud.vertex import BINARY_CONTENT_TYPE as VERTEX_BINARY
from tritonctl.cloud.vertex import REDIRECT_HEADER

SAGEMAKER_BINARY = "application/vnd.sagemaker-triton.binary+json;json-header-size="

_NP_TO_TRITON = {
    np.dtype("float32"): "FP32",
    np.dtype("float64"): "FP64",
    np.dtype("int64"): "INT64",
    np.dtype("int32"): "INT32",
    np.dtype("uint8"): "UINT8",
    np.dtype("bool"): "BOOL",
    np.dtype("object"): "BYTES",
}


class PayloadTooLarge(ValueError):
    """A body over the cloud's limit: the cloud would refuse it before the model sees it."""


class ContractError(RuntimeError):
    """The endpoint answered with an error; ``status`` and ``message`` are what it said."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(f"HTTP {status}: {message}")


def _datatype(array: np.ndarray) -> str:
    try:
        return _NP_TO_TRITON[array.dtype]
    except KeyError:
        raise TypeError(f"no KServe v2 datatype for numpy dtype {array.dtype}") from None


def json_body(inputs: Mapping[str, np.ndarray]) -> bytes:
    """A KServe v2 JSON request. ``BYTES`` items must be valid UTF-8 (JSON carries text)."""
    tensors = []
    for name, array in inputs.items():
        data: list[object]
        if array.dtype == object:
            data = [
                item.decode("utf-8") if isinstance(item, bytes) else str(item)
                for item in array.ravel()
            ]
        else:
            data = array.ravel().tolist()
        tensors.append(
            {"name": name, "shape": list(array.shape), "datatype": _datatype(array), "data": data}
        )
    return json.dumps({"inputs": tensors}).encode()


def binary_body(
    inputs: Mapping[str, np.ndarray], outputs: list[str] | None = None
) -> tuple[bytes, int]:
    """(body, JSON header size) with every tensor, inputs and outputs, in binary form."""
    tensors = []
    for name, array in inputs.items():
        tensor = http.InferInput(name, list(array.shape), _datatype(array))
        tensor.set_data_from_numpy(array, binary_data=True)
        tensors.append(tensor)
    requested = [http.InferRequestedOutput(name, binary_data=True) for name in outputs or []]
    body, header = http.InferenceServerClient.generate_request_body(tensors, requested or None)
    return body, int(header or len(body))


def parse_response(
    body: bytes, headers: Mapping[str, str], binary_prefix: str
) -> dict[str, np.ndarray]:
    """Every output of a KServe v2 response, JSON or binary (``headers`` named in lower case).

    SageMaker's listener announces a binary response in its content type; Vertex AI's (and
    plain HTTP's) in an ``Inference-Header-Content-Length`` header.
    """
    header = None
    content_type = headers.get("content-type", "")
    if binary_prefix and content_type.startswith(binary_prefix):
        header = int(content_type[len(binary_prefix) :])
    elif headers.get("inference-header-content-length"):
        header = int(headers["inference-header-content-length"])
    result = http.InferenceServerClient.parse_response_body(body, header_length=header)
    outputs = result.get_response().get("outputs", [])
    return {item["name"]: result.as_numpy(item["name"]) for item in outputs}


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]  # names in lower case

    @property
    def error(self) -> str:
        """The ``error`` text of a JSON error body (the body itself otherwise)."""
        return _error_text(self.body)


@dataclass
class Endpoint:
    """One managed-cloud contract on ``url``: where to predict, where to check health, the limit."""

    url: str
    predict_path: str
    health_path: str
    binary_prefix: str
    payload_limit: int
    cloud: str
    timeout: float = 60.0

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> Reply:
        """A raw POST: no payload check, errors returned rather than raised."""
        return self.request("POST", path, body, headers)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        request = urllib.request.Request(
            self.url + path, data=body, headers=dict(headers or {}), method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Reply(
                    response.status,
                    response.read(),
                    {k.lower(): v for k, v in response.headers.items()},
                )
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.read(), {k.lower(): v for k, v in error.headers.items()})

    def healthy(self) -> bool:
        try:
            return self.request("GET", self.health_path).status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def check_payload(self, size: int) -> None:
        if size > self.payload_limit:
            raise PayloadTooLarge(
                f"the request body is {size:,} bytes, over {self.cloud}'s limit of "
                f"{self.payload_limit:,} bytes: the cloud refuses it before the model sees it. "
                "Send fewer items per request"
                + (
                    ", or use an asynchronous endpoint (input from S3, up to 1 GB)"
                    if self.cloud.startswith("SageMaker")
                    else ""
                )
            )

    def invoke(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        binary: bool = False,
        outputs: list[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Send ``inputs`` to the predict route; return the outputs by name."""
        extra = dict(headers or {})
        if binary:
            body, header = binary_body(inputs, outputs)
            if self.binary_prefix:
                extra["Content-Type"] = f"{self.binary_prefix}{header}"
            else:  # Triton's own HTTP listener
                extra["Inference-Header-Content-Length"] = str(header)
        else:
            body = json_body(inputs)
            extra["Content-Type"] = "application/json"
        self.check_payload(len(body))
        reply = self.post(self.predict_path, body, extra)
        if reply.status != 200:
            raise ContractError(reply.status, reply.error)
        return parse_response(reply.body, reply.headers, self.binary_prefix)


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", body.decode(errors="replace")))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")


def sagemaker(url: str, *, serverless: bool = False) -> Endpoint:
    return Endpoint(
        url=url,
        predict_path="/invocations",
        health_path="/ping",
        binary_prefix=SAGEMAKER_BINARY,
        payload_limit=(
            facts.SAGEMAKER_SERVERLESS_PAYLOAD if serverless else facts.SAGEMAKER_REALTIME_PAYLOAD
        ),
        cloud="SageMaker serverless" if serverless else "SageMaker real-time",
    )


def vertex(url: str, predict_route: str, health_route: str) -> Endpoint:
    return Endpoint(
        url=url,
        predict_path=predict_route,
        health_path=health_route,
        binary_prefix=VERTEX_BINARY,
        payload_limit=facts.VERTEX_PAYLOAD,
        cloud="Vertex AI",
    )


def azureml(url: str, model: str) -> Endpoint:
    """Triton's own HTTP API, which Azure ML's scoring route passes through."""
    return Endpoint(
        url=url,
        predict_path=f"/v2/models/{model}/infer",
        health_path="/v2/health/ready",
        binary_prefix="",
        payload_limit=facts.AZUREML_PAYLOAD,
        cloud="Azure ML",
    )


def redirect(target: str) -> dict[str, str]:
    """Headers that send a Vertex AI predict request on to another Triton route."""
    return {REDIRECT_HEADER: target.lstrip("/")}
