# syntax=docker/dockerfile:1
#
# The serving image: NVIDIA's Triton container, plus the Python backends' dependencies and the
# model repository at /models. The Helm chart deploys it (image.repository); its default command
# (docker/entrypoint.sh) serves the chart's models with the admin APIs restricted. Build the
# repository first, so its weights and model.py copies exist:
#
#   tritonctl build all
#   docker build -t registry.example.com/tritonctl-triton:0.1.0 .
#   docker push registry.example.com/tritonctl-triton:0.1.0
#
# TRITON_IMAGE is NGC 25.08 (Triton 2.60.0), the first release without CVE-2025-23310, -23316,
# -23317, -23319, -23320 and -23334 (SECURITY.md). For exact parity with `tritonctl serve` (the
# 2.51 server from PyPI), build on 24.10 and set the chart's triton.release to "24.10":
#
#   docker build --build-arg TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3@sha256:<digest> ...
#
# Base images are pinned by digest, so a rebuilt tag cannot change what is built. The digests
# below were taken from published pins of these tags (no registry is reachable from where this
# file was written); confirm or refresh them with:
#
#   docker buildx imagetools inspect nvcr.io/nvidia/tritonserver:25.08-py3 --format '{{.Manifest.Digest}}'
#
# The in-cluster load-test image (Locust with tritonclient and loadtests/):
#
#   docker build --target locust -t registry.example.com/tritonctl-locust:0.1.0 .

ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.08-py3@sha256:f836551575df7c9fb71144073845c6b3911de57db91a8c95e0687a4d2ac9f7a5
ARG LOCUST_IMAGE=locustio/locust:2.46.6@sha256:d43616228012a7d79b883e2ecd42f87640469377f2b666c4ab27e5248dfdf35f

FROM ${LOCUST_IMAGE} AS locust
USER 0:0
COPY docker/locust-requirements.txt /tmp/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY --chown=1000:1000 loadtests/ /loadtests/
# The project's text corpus (tritonctl.corpus), importable without installing the package.
COPY --chown=1000:1000 src/tritonctl/__init__.py src/tritonctl/corpus.py /src/tritonctl/
WORKDIR /loadtests
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/src
USER 1000:1000
ENTRYPOINT ["locust"]

# Last stage: what a plain `docker build .` produces.
FROM ${TRITON_IMAGE} AS triton
COPY docker/requirements.txt /tmp/requirements.txt
# Ubuntu 24.04 based images (25.x) mark the system Python as externally managed; 24.10's pip
# ignores the variable.
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
# Read-only for the server: the chart mounts the root filesystem read-only and /tmp writable.
COPY --chown=root:root model_repository/ /models/
COPY --chown=root:root --chmod=0755 docker/entrypoint.sh /usr/local/bin/tritonctl-serve
COPY --chown=root:root --chmod=0644 helm/tritonctl/files/liveness.py /usr/local/lib/tritonctl/liveness.py
RUN chmod -R a+rX /models
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1
# triton-server, the unprivileged user (uid 1000) of the NGC image.
USER 1000:1000
EXPOSE 8000 8001 8002
# The chart's liveness probe: live, and no dead Python backend stub (which Triton neither restarts
# nor reports). Model loads may take minutes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10m --retries=3 \
    CMD ["python3", "/usr/local/lib/tritonctl/liveness.py", "8000"]
# NVIDIA's entrypoint (kept) runs this.
CMD ["/usr/local/bin/tritonctl-serve"]
