"""tritonctl: serve models with the real NVIDIA Triton Inference Server, locally and on Kubernetes."""

__version__ = "0.1.0"

#: The Triton release that the nvidia-pytriton wheel ships and the Helm chart deploys.
TRITON_VERSION = "2.51.0"
#: The NGC container holding that same server.
NGC_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"

__all__ = ["NGC_IMAGE", "TRITON_VERSION", "__version__"]
