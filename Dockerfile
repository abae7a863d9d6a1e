# syntax=docker/dockerfile:1
#
# The serving image: the NGC Triton container that tritonctl.NGC_IMAGE names (Triton 2.51.0, the
# server `tritonctl serve` runs locally), plus the Python backends' dependencies and the model
# repository. Build the repository first, so its weights and model.py copies exist:
#
#   tritonctl build all
#   docker build -t registry.example.com/tritonctl-triton:0.1.0 .
#
# The in-cluster load-test image (Locust with tritonclient and loadtests/):
#
#   docker build --target locust -t registry.example.com/tritonctl-locust:0.1.0 .

ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
ARG LOCUST_IMAGE=locustio/locust:2.47.0

FROM ${LOCUST_IMAGE} AS locust
USER root
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
RUN python3 -m pip install --no-cache-dir -r /tmp/requirements.txt && rm /tmp/requirements.txt
# Read-only for the server: the chart mounts the root filesystem read-only and /tmp writable.
COPY --chown=root:root model_repository/ /models/
RUN chmod -R a+rX /models
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1
# triton-server, the unprivileged user (uid 1000) of the NGC image.
USER 1000:1000
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models"]
