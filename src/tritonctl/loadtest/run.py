"""``run_loadtest``: one SLO-checked Locust run against a Triton server, and its report."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from tritonctl import paths
from tritonctl.loadtest.locust_runner import (
    LoadTestError,
    Target,
    locustfile,
    run_locust,
    run_seconds,
)
from tritonctl.loadtest.report import (
    latency_block,
    locust_block,
    print_summary,
    server_summary,
    write_report,
)
from tritonctl.loadtest.results import read_measurement
from tritonctl.loadtest.slo import (
    Figures,
    ObjectiveResult,
    SloProfile,
    evaluate,
    load_profile,
    objectives_set,
)
from tritonctl.server import LocalTriton


@dataclass
class LoadTestResult:
    """The outcome of one run: verdict, figures, and where the report is."""

    profile: SloProfile
    figures: Figures
    objectives: list[ObjectiveResult]
    summary: dict[str, Any]
    report_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.objectives)

    @property
    def failed(self) -> list[str]:
        """One line per missed objective, e.g. ``p95 120.3 ms > 50 ms (+141%)``."""
        return [o.message for o in self.objectives if not o.passed]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def report(self) -> Path:
        return self.report_dir / "report.html"


def default_report_dir(profile: SloProfile, label: str = "") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{profile.model}-{profile.protocol}{'-' + label if label else ''}"
    return paths.reports_dir() / "loadtest" / name


def resolve_profile(profile: SloProfile | str | Path | None, **overrides: Any) -> SloProfile:
    """A profile from an object, a YAML path, or defaults, with command-line overrides applied."""
    if profile is None:
        base = SloProfile()
    elif isinstance(profile, SloProfile):
        base = profile
    else:
        base = load_profile(profile)
    return base.with_overrides(**overrides)


def check_reachable(target: Target, protocol: str, timeout: float = 5.0) -> None:
    """Raise ``LoadTestError`` naming the cause when no Triton server answers at ``target``.

    A load test against nothing would otherwise "measure" thousands of connection errors.
    """
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(target.grpc_address)
        try:
            client.is_server_live(client_timeout=timeout)
        except InferenceServerException as error:
            raise LoadTestError(
                f"no Triton server answers over gRPC at {target.grpc_address}: "
                f"{error.message() or error}"
            ) from None
        finally:
            client.close()
        return
    url = f"http://{target.http_address}/v2/health/live"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise LoadTestError(f"{url} answered HTTP {error.code}: the server is not live") from None
    except OSError as error:
        reason = getattr(error, "reason", error)
        raise LoadTestError(f"no Triton server answers over HTTP at {url}: {reason}") from None


def objectives_note(profile: SloProfile) -> str:
    """A sentence for runs without latency or throughput objectives ("" when some are set)."""
    if objectives_set(profile.objectives):
        return ""
    ratio = profile.objectives.max_error_ratio
    errors = (
        "no error objective either"
        if ratio is None
        else f"only the error objective (at most {ratio:.2%} failed) and at least one success"
    )
    where = f"profile {profile.source}" if profile.source else "no SLO profile"
    return (
        f"No latency or throughput objectives were set ({where} for model {profile.model!r}): "
        f"this run checks {errors}."
    )


@contextlib.contextmanager
def local_server(model: str, repository: Path | None = None) -> Iterator[LocalTriton]:
    """The real tritonserver on this machine, loading just ``model`` (and what it runs).

    A model the repository does not have gets a server with an empty repository, so every
    request fails with Triton's own "unknown model" error, as it would in a deployment.
    """
    from tritonctl.repository import sync_python_backends

    repository = repository or paths.model_repository()
    if (repository / model / "config.pbtxt").exists():
        if paths.python_backends().is_dir():
            sync_python_backends(repository, paths.python_backends())
        with LocalTriton(repository, models=[model], exit_timeout=5) as server:
            yield server
        return
    with (
        tempfile.TemporaryDirectory(prefix="tritonctl-empty-") as empty,
        LocalTriton(empty, exit_timeout=5) as server,
    ):
        yield server


def ensemble_steps(http_address: str, model: str) -> list[str]:
    """The models an ensemble runs, in order (empty if not an ensemble or not reachable)."""
    url = f"http://{http_address}/v2/models/{model}/config"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            config = json.loads(response.read())
    except (OSError, ValueError):
        return []
    steps = config.get("ensemble_scheduling", {}).get("step", [])
    return [str(step.get("model_name", "")) for step in steps if step.get("model_name")]


def measure(
    profile: SloProfile,
    target: Target,
    report_dir: Path,
    *,
    workers: int = 0,
    skip_objectives: tuple[str, ...] = (),
    console: Console | None = None,
    address_label: str = "",
    show_progress: bool = True,
    with_plots: bool = True,
) -> LoadTestResult:
    """Run Locust for ``profile`` against ``target``, check the objectives, write the report."""
    from tritonctl.console import progress

    report_dir.mkdir(parents=True, exist_ok=True)
    total = run_seconds(profile, workers)
    if show_progress:
        with progress() as bar:
            task = bar.add_task(
                f"{profile.model} · {profile.load_label} · {profile.protocol}", total=total
            )
            run = run_locust(
                profile,
                target,
                report_dir,
                workers=workers,
                on_tick=lambda s: bar.update(task, completed=min(int(s), total)),
            )
            bar.update(task, completed=total)
    else:
        run = run_locust(profile, target, report_dir, workers=workers)
    measurement = read_measurement(
        report_dir, profile.model, ensemble_steps(target.http_address, profile.model)
    )
    figures = measurement.figures()
    results = evaluate(profile.objectives, figures, skip=skip_objectives)
    address = target.grpc_address if profile.protocol == "grpc" else target.http_address
    cpu = measurement.load_generator()
    summary: dict[str, Any] = {
        "passed": all(r.passed for r in results),
        "failed": [r.message for r in results if not r.passed],
        "note": objectives_note(profile),
        "profile": profile.as_dict(),
        "load": profile.load_label,
        "target": {
            "protocol": profile.protocol,
            "address": address_label or address,
            "metrics_url": target.metrics_url,
        },
        "workers": workers,
        "locustfile": str(locustfile()),
        "locust_exit_code": run.returncode,
        "window": {
            "test_start": measurement.events.get("test_start"),
            "warmup_end": measurement.warmup_end,
            "window_end": measurement.window_end,
            "test_stop": measurement.events.get("test_stop"),
            "measured_s": round(measurement.window_s, 3),
            "drain_s": profile.drain,
        },
        "requests": figures.requests,
        "succeeded": figures.succeeded,
        "failures": figures.failures,
        "unanswered": figures.unanswered,
        "error_ratio": round(figures.error_ratio, 6),
        "rps": round(figures.rps, 3),
        "offered_rps": round(figures.offered_rps, 3),
        "latency_ms": latency_block(measurement),
        "locust_rounded_ms": locust_block(measurement),
        "objectives": [r.as_dict() for r in results],
        "errors": [
            {"error": f["error"], "occurrences": f["occurrences"]} for f in measurement.failures
        ],
        "load_generator": cpu.as_dict() if cpu is not None else None,
        "server": server_summary(measurement, profile.model),
    }
    files = write_report(report_dir, summary, measurement, profile, results, with_plots=with_plots)
    if console is not None:
        print_summary(console, summary)
    return LoadTestResult(profile, figures, results, summary, report_dir, files)


def run_loadtest(
    profile: SloProfile | str | Path | None = None,
    *,
    target: str | None = None,
    server: LocalTriton | None = None,
    metrics_url: str | None = None,
    report_dir: str | Path | None = None,
    workers: int = 0,
    console: Console | None = None,
    show_progress: bool = True,
    **overrides: Any,
) -> LoadTestResult:
    """Load-test a Triton server against an SLO profile and write a report folder.

    ``profile``: an ``SloProfile``, a YAML path, or ``None`` (defaults). ``overrides`` replace
    its fields: ``model``, ``protocol``, ``mode``, ``users``, ``rate_rps`` (sets open loop),
    ``arrivals``, ``spawn_rate``, ``warmup_s``, ``duration_s``, ``drain_s``, ``shape``, and
    objectives ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_error_ratio``, ``min_rps``.
    The server is ``server`` (a running ``LocalTriton``), else ``target`` (a URL, checked to
    answer first: ``LoadTestError`` if nothing does), else a local server started for the run
    and stopped afterwards. ``workers`` > 0 runs Locust distributed.
    """
    resolved = resolve_profile(profile, **overrides)
    folder = Path(report_dir) if report_dir else default_report_dir(resolved)
    if workers < 0:
        raise LoadTestError(f"workers must be 0 or more (got {workers})")
    if server is not None:
        return measure(
            resolved,
            Target.from_server(server),
            folder,
            workers=workers,
            console=console,
            show_progress=show_progress,
        )
    if target is not None:
        remote = Target.from_url(target, metrics_url)
        check_reachable(remote, resolved.protocol)
        return measure(
            resolved,
            remote,
            folder,
            workers=workers,
            console=console,
            show_progress=show_progress,
        )
    with local_server(resolved.model) as local:
        return measure(
            resolved,
            Target.from_server(local),
            folder,
            workers=workers,
            console=console,
            show_progress=show_progress,
            address_label=f"local {local.grpc_address if resolved.protocol == 'grpc' else local.http_address}",
        )
