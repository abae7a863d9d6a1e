"""``helm upgrade --install`` of the chart, or a dry run that renders it in-process."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonctl.k8s import chart as chart_mod


class DeployError(RuntimeError):
    """The release could not be installed or upgraded; the message says why."""


@dataclass(frozen=True)
class Release:
    name: str = "tritonctl"
    namespace: str = "default"
    chart: Path | None = None

    @property
    def chart_path(self) -> Path:
        return self.chart or chart_mod.chart_dir()


def helm_binary() -> str | None:
    return shutil.which("helm")


def helm_command(
    release: Release,
    values_files: Sequence[str | Path] = (),
    sets: Sequence[str] = (),
    *,
    wait: bool = True,
    timeout: str = "15m",
    helm: str = "helm",
) -> list[str]:
    """The ``helm upgrade --install`` command line (the timeout covers slow model loads)."""
    command = [
        helm,
        "upgrade",
        "--install",
        release.name,
        str(release.chart_path),
        "--namespace",
        release.namespace,
        "--create-namespace",
    ]
    for file in values_files:
        command += ["--values", str(file)]
    for expression in sets:
        command += ["--set", expression]
    if wait:
        command += ["--wait", "--timeout", timeout]
    return command


def dry_run(
    release: Release,
    values: Mapping[str, Any],
    output: Path | None = None,
) -> tuple[str, str]:
    """Render with Helm's engine, no cluster: (manifests as YAML, NOTES). Writes ``output`` if given."""
    rendered = chart_mod.render(
        values, release=release.name, namespace=release.namespace, chart=release.chart_path
    )
    text = chart_mod.to_yaml(rendered)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    return text, chart_mod.notes(rendered)


def deploy(
    release: Release,
    values_files: Sequence[str | Path] = (),
    sets: Sequence[str] = (),
    *,
    wait: bool = True,
    timeout_s: int = 900,
) -> str:
    """Install or upgrade the release; returns what helm reported.

    Uses the ``helm`` binary when there is one, else the Helm SDK inside helm-python-sdk, which
    talks to the cluster of the current kubeconfig the same way.
    """
    values = chart_mod.load_values(values_files, sets)
    chart_mod.render(
        values, release=release.name, namespace=release.namespace, chart=release.chart_path
    )
    helm = helm_binary()
    if helm:
        command = helm_command(
            release, values_files, sets, wait=wait, timeout=f"{timeout_s}s", helm=helm
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DeployError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
        return result.stdout
    return _deploy_with_sdk(release, values, wait=wait, timeout_s=timeout_s)


def _deploy_with_sdk(
    release: Release, values: dict[str, Any], *, wait: bool, timeout_s: int
) -> str:
    import helm_python

    try:
        with helm_python.Config(namespace=release.namespace) as config:
            config.check_reachable()
            try:
                config.status(release.name)
                exists = True
            except helm_python.HelmNotFoundError:
                exists = False
            action = config.upgrade if exists else config.install
            kwargs: dict[str, Any] = {"namespace": release.namespace, "timeout": timeout_s}
            if wait:
                kwargs["wait"] = "watcher"
            if not exists:
                kwargs["create_namespace"] = True
            result = action(str(release.chart_path), release.name, values, **kwargs)
    except helm_python.HelmError as error:
        raise DeployError(
            f"helm upgrade --install {release.name} (namespace {release.namespace}) failed: "
            f"{str(error).strip()}"
        ) from error
    info = result.get("info", {}) if isinstance(result, dict) else {}
    return f"{release.name}: {'upgraded' if exists else 'installed'} ({info.get('status', 'done')})"
