"""The real ``tritonserver`` started exactly as SageMaker or Vertex AI starts it.

``SageMakerTriton`` runs the arguments that SageMaker's own ``serve`` script builds from the
container environment; ``VertexTriton`` runs a Vertex ``ModelContainerSpec``'s command and
arguments with the variables Vertex sets; ``AzureMLTriton`` the serving image's own command
with the deployment's variables. What differs from the cloud is only what a laptop
needs: the backend and cache folders (the image has them at ``/opt/tritonserver``), the model
folder in place of ``/opt/ml/model`` or ``gs://…``, free ports, and a metrics port off 8002.

Both listeners bind 0.0.0.0 (Triton 2.51 has no address flag for them), so on a laptop they are
reachable from the local network while they run.

``shm_limit_bytes`` runs the server in a private mount namespace whose ``/dev/shm`` is a tmpfs of
that size, the way SageMaker's fixed 64 MiB behaves (needs root, or unprivileged user
namespaces). ``region_sizes`` then reads the stubs' regions as the server sees them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from tritonctl.backends import server_distribution
from tritonctl.cloud import azureml, contract, facts, sagemaker, vertex
from tritonctl.cloud.recorder import recorded_argv
from tritonctl.server import LocalTriton, ModelState, free_port


@lru_cache(maxsize=1)
def private_shm_supported() -> str:
    """'' when a private, size-limited /dev/shm can be made here, else why not."""
    if shutil.which("unshare") is None:
        return "the unshare command (util-linux) is not installed"
    probe = _private_shm(["true"], 1024 * 1024)
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare failed: {error}"
    if result.returncode != 0:
        return f"cannot mount a private /dev/shm: {result.stderr.strip() or result.returncode}"
    return ""


def _private_shm(argv: list[str], size: int) -> list[str]:
    prefix = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        prefix.append("--map-root-user")
    script = f'mount -t tmpfs -o size={size},mode=1777 tmpfs /dev/shm && exec "$@"'
    return [*prefix, "sh", "-c", script, "sh", *argv]


class CloudTriton(LocalTriton):
    """A front end of one cloud over ``model_dir``; health at ``endpoint.health_path``."""

    frontend = ""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        shm_limit_bytes: int | None = None,
        log_file: str | os.PathLike[str] | None = None,
        exit_timeout: int = 30,
    ) -> None:
        super().__init__(
            model_dir, log_file=log_file, exit_timeout=exit_timeout, restrict_apis=False
        )
        self.port = port or free_port()
        self.shm_limit_bytes = shm_limit_bytes
        self._workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        """A private folder for this server's scratch files, removed by ``stop``."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"tritonctl-{self.frontend}-"))
        return self._workdir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> contract.Endpoint:
        raise NotImplementedError

    def cloud_args(self) -> list[str]:
        raise NotImplementedError

    def cloud_env(self) -> dict[str, str]:
        raise NotImplementedError

    def command(self, backend_dir: Path, cache_dir: Path) -> list[str]:
        argv = [
            str(server_distribution().binary),
            f"--backend-directory={backend_dir}",
            f"--cache-directory={cache_dir}",
            *self.cloud_args(),
            *self.region_args(),
        ]
        if self.shm_limit_bytes:
            reason = private_shm_supported()
            if reason:
                raise RuntimeError(
                    f"cannot limit /dev/shm to {self.shm_limit_bytes} bytes: {reason}"
                )
            argv = _private_shm(argv, self.shm_limit_bytes)
        return argv

    def region_args(self) -> list[str]:
        """Local only: name the stubs' regions after this start's run folder, as ``LocalTriton``
        does, so a crashed server's regions are found and removed. The Python-based ONNX
        Runtime stand-in takes the ``python`` backend's prefix too (seen with 2.51)."""
        return self.backend_args()

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.update(self.cloud_env())
        return env

    def is_ready(self) -> bool:
        return self.endpoint.healthy()

    def is_live(self) -> bool:
        return self.endpoint.healthy()

    def model_states(self) -> list[ModelState]:
        return []  # the cloud listeners have no repository index (by design: see SECURITY.md)

    def expected_models(self) -> list[str]:
        return []  # readiness (strict) already means every loaded model is ready

    def region_sizes(self, *, stand_in: bool = False) -> list[int]:
        """Sizes of the stubs' ``/dev/shm`` regions as the server sees them (its own tmpfs when
        limited): by default the ``model.py`` stubs', what the NGC image's Python backend holds;
        with ``stand_in`` the local ONNX Runtime stand-in's, which the image does not have.
        Told apart by each stub's command line (model file, then region name): the regions of
        both share one prefix."""
        if self.process is None:
            return []
        root = Path(f"/proc/{self.process.pid}/root/dev/shm")
        sizes = []
        for _, argv in self.stubs():
            if len(argv) < 3 or argv[1].endswith(".py") == stand_in:
                continue
            try:
                sizes.append((root / argv[2]).stat().st_size)
            except OSError:
                continue
        return sizes

    def stop(self) -> int | None:
        try:
            return super().stop()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None


class SageMakerTriton(CloudTriton):
    """SageMaker's ``serve`` over ``model_dir`` (the unpacked ``model.tar.gz``) with ``env``."""

    frontend = "sagemaker"

    def __init__(
        self, model_dir: str | os.PathLike[str], env: Mapping[str, str], **options: Any
    ) -> None:
        super().__init__(model_dir, **options)
        self.container_env = dict(env)

    @property
    def endpoint(self) -> contract.Endpoint:
        return contract.sagemaker(self.url)

    def cloud_env(self) -> dict[str, str]:
        env = {**self.container_env, "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        return sagemaker.localize(env, self.model_repository)

    def cloud_args(self) -> list[str]:
        return sagemaker.serve_command(self.model_repository, self.cloud_env(), self.workdir)


class VertexTriton(CloudTriton):
    """A Vertex ``ModelContainerSpec`` (REST field names) over ``model_dir`` as the artifact."""

    frontend = "vertex"

    def __init__(
        self, model_dir: str | os.PathLike[str], spec: Mapping[str, Any], **options: Any
    ) -> None:
        super().__init__(model_dir, **options)
        self.spec = dict(spec)
        self.local_metrics_port = free_port()

    @property
    def endpoint(self) -> contract.Endpoint:
        return contract.vertex(self.url, self.spec["predictRoute"], self.spec["healthRoute"])

    def cloud_env(self) -> dict[str, str]:
        return vertex.environment(self.spec, port=self.port, storage_uri=str(self.model_repository))

    def cloud_args(self) -> list[str]:
        command = self.spec.get("command") or []
        if command and command != ["tritonserver"]:
            raise ValueError(f"the container command must be tritonserver, not {command}")
        return [
            *vertex.expand(self.spec.get("args", []), self.cloud_env()),
            # Local only: the metrics listener (8002 in the container) on a free loopback port.
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.local_metrics_port}",
        ]


class AzureMLTriton(CloudTriton):
    """The serving image's own command (``docker/entrypoint.sh``) over ``model_dir`` mounted as
    ``/models``, with the deployment's ``environment_variables``: what Azure ML runs."""

    frontend = "azureml"

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        env: Mapping[str, str],
        model: str,
        **options: Any,
    ) -> None:
        super().__init__(model_dir, **options)
        self.deployment_env = dict(env)
        self.model = model
        self.local_ports = {
            f"--{name}-port={port}": f"--{name}-port={free_port()}"
            for name, port in (("grpc", 8001), ("metrics", 8002))
        }

    @property
    def endpoint(self) -> contract.Endpoint:
        return contract.azureml(self.url, self.model)

    @property
    def lock_key(self) -> str:
        """The key the command drew (inside the container only its own processes can read it)."""
        return (self.workdir / "tritonctl-admin-key").read_text().strip()

    def cloud_env(self) -> dict[str, str]:
        return {}

    def cloud_args(self) -> list[str]:
        from tritonctl import paths

        script = (paths.project_root() / azureml.ENTRYPOINT).read_text()
        args = recorded_argv(script, self.deployment_env, self.workdir, what=azureml.ENTRYPOINT)
        local = {
            f"--model-repository={facts.AZUREML_MODEL_DIR}": f"--model-repository={self.model_repository}",
            f"--http-port={facts.AZUREML_PORT}": f"--http-port={self.port}",
            **self.local_ports,
        }
        # Local only: loopback (the container listens on all addresses for Azure's proxy).
        loopback = [f"--{n}-address=127.0.0.1" for n in ("http", "grpc", "metrics")]
        return [local.get(a, a) for a in args] + loopback
