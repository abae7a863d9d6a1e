"""Measuring tuner candidates on the real server.

One ``LocalTriton`` in explicit model-control mode serves a staged copy of the pipeline (no
response cache: the corpus repeats). For each candidate the tuner writes the changed configs
into the copy with ``save_config`` and asks Triton to reload just those models, then runs the
load generator at the SLO profile's concurrency for a short window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tritonctl.bench.loadgen import TritonGrpcTarget, TritonHttpTarget, run_point
from tritonctl.bench.profile import StatsWindow
from tritonctl.bench.staging import stage_repository, without_response_cache
from tritonctl.loadtest.slo import Figures
from tritonctl.model_config import ModelConfig, config_text, save_config
from tritonctl.server import LocalTriton
from tritonctl.tune import knobs as knob_edits
from tritonctl.tune.search import Candidate


class TritonTrials:
    """Runs candidates against one server; use as a context manager."""

    def __init__(
        self,
        repository: Path,
        workdir: Path,
        entry_model: str,
        configs: Mapping[str, ModelConfig],
        texts: Sequence[str],
        *,
        start: Candidate,
        concurrency: int,
        warmup_s: float,
        duration_s: float,
        protocol: str = "grpc",
    ) -> None:
        self.repository, self.workdir, self.entry_model = repository, workdir, entry_model
        self.configs = dict(configs)
        self.start = dict(start)
        self.texts = texts
        self.concurrency, self.warmup_s, self.duration_s = concurrency, warmup_s, duration_s
        self.protocol = protocol
        self.server: LocalTriton | None = None
        self._loaded: dict[str, str] = {}

    def __enter__(self) -> TritonTrials:
        staged = stage_repository(
            self.repository, self.workdir, [self.entry_model], edit=without_response_cache
        )
        self.staged = staged
        self.server = LocalTriton(staged, models=[self.entry_model], cache_size=0, exit_timeout=5)
        self.server.start()
        for name in self.configs:
            self._loaded[name] = self._staged_text(name)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _staged_text(self, name: str) -> str:
        return (self.staged / name / "config.pbtxt").read_text()

    def load(self, candidate: Candidate) -> list[str]:
        """Write the candidate's configs and reload the models whose config changed."""
        import tritonclient.http as httpclient

        assert self.server is not None
        edited = knob_edits.apply(self.configs, candidate, base=self.start)
        for config in edited.values():
            without_response_cache(config)
        changed = [n for n, c in edited.items() if config_text(c) != self._loaded.get(n)]
        if not changed:
            return []
        for name in changed:
            save_config(edited[name], self.staged / name)
        client = httpclient.InferenceServerClient(self.server.http_address, network_timeout=300)
        try:
            for name in changed:
                client.load_model(name, headers=self.server.admin_headers)
                self._loaded[name] = config_text(edited[name])
            # Reloading a step may unload the ensemble that uses it: load it (a no-op if ready).
            client.load_model(self.entry_model, headers=self.server.admin_headers)
        finally:
            client.close()
        return changed

    def measure(self, candidate: Candidate) -> tuple[Figures, dict[str, Any]]:
        assert self.server is not None
        changed = self.load(candidate)
        if self.protocol == "http":
            target: Any = TritonHttpTarget(self.server.http_address, self.entry_model)
        else:
            target = TritonGrpcTarget(self.server.grpc_address, self.entry_model)
        window = StatsWindow(self.server.metrics_url)
        point = run_point(
            target,
            self.texts,
            self.concurrency,
            warmup_s=self.warmup_s,
            duration_s=self.duration_s,
            on_window_start=window.start,
            on_window_end=window.end,
        )
        figures = Figures(
            requests=point.requests + point.errors,
            failures=point.errors,
            rps=point.throughput,
            p50_ms=point.p50_ms,
            p95_ms=point.p95_ms,
            p99_ms=point.p99_ms,
            avg_ms=point.mean_ms,
        )
        stats = window.deltas()
        extra: dict[str, Any] = {
            "reloaded": changed,
            "client_cpu_share": round(point.client_cpu_share, 3),
            "avg_batch_size": {
                n: d["avg_batch_size"] for n, d in stats.items() if n in self.configs
            },
        }
        if point.first_error:
            extra["first_error"] = point.first_error
        return figures, extra
