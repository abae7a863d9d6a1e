"""What each managed cloud gives a serving container, with where each figure comes from.

Payload limits are in decimal megabytes: the stricter reading of the clouds' "MB".
"""

from __future__ import annotations

from tritonctl import (
    CHART_NGC_RELEASE,
    CHART_TRITON_VERSION,
    NGC_IMAGE,
    TRITON_VERSION,
    __version__,
)

MB = 1_000_000
MIB = 1024 * 1024

#: InvokeEndpoint's body limit for real-time endpoints (AWS SageMaker endpoint quotas).
SAGEMAKER_REALTIME_PAYLOAD = 6 * MB
#: Serverless endpoints accept less (SageMaker serverless inference: 4 MB).
SAGEMAKER_SERVERLESS_PAYLOAD = 4 * MB
#: Asynchronous endpoints read the input from S3 (up to 1 GB).
SAGEMAKER_ASYNC_PAYLOAD = 1000 * MB
#: Vertex AI online prediction (``gcloud ai endpoints predict``: "payload limit size (currently,
#: 1.5MB)").
VERTEX_PAYLOAD = 1_500_000

#: Azure ML documents no body limit for managed online endpoints; none is checked here.
AZUREML_PAYLOAD = 1 << 62

#: SageMaker hosting gives containers Docker's default /dev/shm and offers no ``--shm-size``
#: (aws/sagemaker-python-sdk#2801, triton-inference-server/server#4675).
SAGEMAKER_SHM_BYTES = 64 * MIB
#: Vertex AI sets /dev/shm from ``ModelContainerSpec.shared_memory_size_mb``.
VERTEX_DEFAULT_SHM_MB = 256

#: Both front ends default to 8080, as the platforms do.
SAGEMAKER_PORT = 8080
VERTEX_PORT = 8080
#: Triton's HTTP port in the Azure ML container (the ``inference_config`` routes point at it).
AZUREML_PORT = 8000

#: Where SageMaker unpacks ``model.tar.gz`` in the container (the ``serve`` script reads it).
SAGEMAKER_MODEL_DIR = "/opt/ml/model/"
#: Where the Azure ML deployment mounts the registered model (``model_mount_path``).
AZUREML_MODEL_DIR = "/models"

#: The image each cloud runs: the project's serving image (``Dockerfile``: the NGC image with
#: the Python backends' packages), tagged with the NGC release it is built on.
IMAGE_NAME = "tritonctl-triton"
#: NGC release -> Triton version. The chart's default (25.08: the six 2025 CVEs fixed,
#: SECURITY.md) is the packages' default; 24.10 is the server `tritonctl serve` runs locally.
RELEASES = {
    NGC_IMAGE.rsplit(":", 1)[1].removesuffix("-py3"): TRITON_VERSION,
    CHART_NGC_RELEASE: CHART_TRITON_VERSION,
}
DEFAULT_RELEASE = CHART_NGC_RELEASE


def image_tag(release: str = DEFAULT_RELEASE) -> str:
    return f"{release}-{__version__}"


def ngc_image(release: str = DEFAULT_RELEASE) -> str:
    return f"nvcr.io/nvidia/tritonserver:{release}-py3"


__all__ = [
    "AZUREML_MODEL_DIR",
    "AZUREML_PAYLOAD",
    "AZUREML_PORT",
    "DEFAULT_RELEASE",
    "IMAGE_NAME",
    "MB",
    "MIB",
    "NGC_IMAGE",
    "RELEASES",
    "SAGEMAKER_ASYNC_PAYLOAD",
    "SAGEMAKER_MODEL_DIR",
    "SAGEMAKER_PORT",
    "SAGEMAKER_REALTIME_PAYLOAD",
    "SAGEMAKER_SERVERLESS_PAYLOAD",
    "SAGEMAKER_SHM_BYTES",
    "TRITON_VERSION",
    "VERTEX_DEFAULT_SHM_MB",
    "VERTEX_PAYLOAD",
    "VERTEX_PORT",
    "image_tag",
    "ngc_image",
]
