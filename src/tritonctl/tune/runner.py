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


class _Slot:
    """One server over its own staged copy, and what is loaded in it."""

    def __init__(self, server: LocalTriton, staged: Path, loaded: dict[str, str]) -> None:
        self.server, self.staged, self.loaded = server, staged, loaded
        self.candidate: Candidate | None = None


class TritonTrials:
    """Runs candidates against real servers; use as a context manager.

    With ``paired`` it keeps two servers: the incumbent stays loaded in one while candidates are
    loaded into the other, so ``measure_pair`` measures both back to back without reloading.
    """

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
        paired: bool = True,
    ) -> None:
        self.repository, self.workdir, self.entry_model = repository, workdir, entry_model
        self.configs = dict(configs)
        self.start = dict(start)
        self.texts = texts
        self.concurrency, self.warmup_s, self.duration_s = concurrency, warmup_s, duration_s
        self.protocol = protocol
        self.paired = paired
        self.slots: list[_Slot] = []

    def __enter__(self) -> TritonTrials:
        try:
            for index in range(2 if self.paired else 1):
                staged = stage_repository(
                    self.repository,
                    self.workdir / f"slot{index}",
                    [self.entry_model],
                    edit=without_response_cache,
                )
                server = LocalTriton(
                    staged, models=[self.entry_model], cache_size=0, exit_timeout=5
                )
                server.start()
                loaded = {n: (staged / n / "config.pbtxt").read_text() for n in self.configs}
                self.slots.append(_Slot(server, staged, loaded))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for slot in self.slots:
            slot.server.stop()
        self.slots = []

    def load(self, slot: _Slot, candidate: Candidate) -> list[str]:
        """Write the candidate's configs and reload the models whose config changed."""
        import tritonclient.http as httpclient

        edited = knob_edits.apply(self.configs, candidate, base=self.start)
        for config in edited.values():
            without_response_cache(config)
        changed = [n for n, c in edited.items() if config_text(c) != slot.loaded.get(n)]
        slot.candidate = dict(candidate)
        if not changed:
            return []
        for name in changed:
            save_config(edited[name], slot.staged / name)
        server = slot.server
        client = httpclient.InferenceServerClient(server.http_address, network_timeout=300)
        try:
            for name in changed:
                client.load_model(name, headers=server.admin_headers)
                slot.loaded[name] = config_text(edited[name])
            # Reloading a step may unload the ensemble that uses it: load it (a no-op if ready).
            client.load_model(self.entry_model, headers=server.admin_headers)
        finally:
            client.close()
        return changed

    def measure(self, candidate: Candidate) -> tuple[Figures, dict[str, Any]]:
        """Measure ``candidate`` on the first server."""
        return self._measure_on(self.slots[0], candidate)

    def measure_pair(
        self, incumbent: Candidate, candidate: Candidate
    ) -> tuple[Figures, Figures, dict[str, Any]]:
        """The incumbent, then the candidate, back to back on the two servers."""
        if not self.paired:
            before, _ = self.measure(incumbent)
            after, extra = self.measure(candidate)
            return before, after, extra
        home = next((s for s in self.slots if s.candidate == incumbent), self.slots[0])
        other = self.slots[1] if home is self.slots[0] else self.slots[0]
        changed = self.load(other, candidate)  # first: reloading costs CPU the runs must not see
        before, _ = self._measure_on(home, incumbent)
        after, extra = self._measure_on(other, candidate)
        return before, after, {**extra, "reloaded": changed}

    def _measure_on(self, slot: _Slot, candidate: Candidate) -> tuple[Figures, dict[str, Any]]:
        changed = self.load(slot, candidate)
        server = slot.server
        if self.protocol == "http":
            target: Any = TritonHttpTarget(server.http_address, self.entry_model)
        else:
            target = TritonGrpcTarget(server.grpc_address, self.entry_model)
        window = StatsWindow(server.metrics_url)
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
