"""tritonctl: serve models with the real NVIDIA Triton Inference Server, locally and on Kubernetes."""

__version__ = "0.1.0"

#: The Triton release that the nvidia-pytriton wheel ships and the Helm chart deploys.
TRITON_VERSION = "2.51.0"
#: The NGC container holding that same server (the chart's triton.release "24.10", for parity).
NGC_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
#: The chart's and the Dockerfile's default: the first NGC release free of CVE-2025-23310,
#: -23316, -23317, -23319, -23320 and -23334 (SECURITY.md), which PyPI does not ship.
CHART_NGC_RELEASE = "25.08"
CHART_TRITON_VERSION = "2.60.0"
CHART_NGC_IMAGE = f"nvcr.io/nvidia/tritonserver:{CHART_NGC_RELEASE}-py3"

__all__ = [
    "CHART_NGC_IMAGE",
    "CHART_NGC_RELEASE",
    "CHART_TRITON_VERSION",
    "NGC_IMAGE",
    "TRITON_VERSION",
    "__version__",
]
