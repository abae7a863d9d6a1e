"""Locate the server in the nvidia-pytriton wheel and assemble a backend directory for it.

The backend directory holds Triton's Python backend (with the stub built for the running
interpreter) and every folder of ``python_backends/`` that has a ``model.py`` and no
``config.pbtxt`` next to it (``onnxruntime`` among them). Such folders are Python-based
backends: ``platform: "onnxruntime_onnx"`` models then serve on a CPU-only machine, while
the NGC container's native ONNX Runtime backend serves the very same files in the cluster.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tritonctl.paths import cache_dir, python_backends

#: Python-based backends that ``python_backends/`` provides as Triton backends.
PYTHON_BASED_BACKENDS = ("onnxruntime",)


@dataclass(frozen=True)
class ServerDistribution:
    root: Path  # .../pytriton/tritonserver
    library_dirs: tuple[Path, ...]

    @property
    def binary(self) -> Path:
        return _executable(self.root / "bin" / "tritonserver")

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    @property
    def caches(self) -> Path:
        return self.root / "caches"

    def stub(self, version: str | None = None) -> Path:
        version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
        path = self.root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not path.exists():
            raise FileNotFoundError(
                f"nvidia-pytriton ships no Python backend stub for Python {version}: {path}"
            )
        return path


@lru_cache(maxsize=1)
def server_distribution() -> ServerDistribution:
    """The ``tritonserver`` that the installed nvidia-pytriton wheel ships."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nvidia-pytriton is not installed: pip install nvidia-pytriton==0.7.0")
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise RuntimeError(f"no tritonserver binary in {root}")
    libs = [package.parent / "nvidia_pytriton.libs", root / "external_libs"]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        libs.append(Path(libdir))  # libpython for the stub
    return ServerDistribution(root=root, library_dirs=tuple(p for p in libs if p.is_dir()))


def _executable(path: Path) -> Path:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in sorted(paths):
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def assemble_backends(backends_source: Path | None = None) -> tuple[Path, Path]:
    """Build (once per content) ``backends/`` and ``caches/`` folders; return their paths."""
    dist = server_distribution()
    source = backends_source or python_backends()
    stub = dist.stub()
    based = [
        source / name for name in PYTHON_BASED_BACKENDS if (source / name / "model.py").exists()
    ]
    files = [stub, dist.python_backend / "libtriton_python.so"]
    files += [f for folder in based for f in folder.glob("*.py")]
    target = cache_dir() / f"server-{_fingerprint(files)}"
    done = target / ".complete"
    if done.exists():
        return target / "backends", dist.caches
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    python_dir = tmp / "backends" / "python"
    shutil.copytree(dist.python_backend, python_dir)
    shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    _executable(python_dir / "triton_python_backend_stub")
    for folder in based:
        dest = tmp / "backends" / folder.name
        dest.mkdir(parents=True)
        for file in folder.glob("*.py"):
            shutil.copy2(file, dest / file.name)
        shutil.copy2(stub, dest / "triton_python_backend_stub")
        _executable(dest / "triton_python_backend_stub")
    (tmp / ".complete").touch()
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "backends", dist.caches
