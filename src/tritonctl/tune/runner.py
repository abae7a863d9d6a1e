"""Measuring tuner candidates on the real server, with the load test's own run.

One ``LocalTriton`` in explicit model-control mode serves a staged copy of the pipeline (no
response cache, as the load test's distinct payloads would see). For each candidate the tuner
writes the changed configs into the copy with ``save_config`` and asks Triton to reload just
those models, then runs ``tritonctl loadtest``'s measurement (Locust, the profile's payload
pool, warm-up, window and drain, exact percentiles); each run's report lands in ``runs/``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tritonctl.bench.staging import stage_repository, without_response_cache
from tritonctl.loadtest.locust_runner import Target
from tritonctl.loadtest.run import measure
from tritonctl.loadtest.slo import Figures, SloProfile
from tritonctl.model_config import ModelConfig, config_text, save_config
from tritonctl.server import LocalTriton, new_admin_key
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
        profile: SloProfile,
        runs_dir: Path,
        *,
        start: Candidate,
        paired: bool = True,
    ) -> None:
        self.repository, self.workdir, self.entry_model = repository, workdir, entry_model
        self.configs = dict(configs)
        self.start = dict(start)
        self.profile = profile.with_overrides(model=entry_model)
        self.runs_dir = runs_dir
        self.paired = paired
        self.slots: list[_Slot] = []
        self._runs = itertools.count(1)

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
                    staged,
                    models=[self.entry_model],
                    cache_size=0,
                    exit_timeout=5,
                    model_control="explicit",  # candidates are loaded through the API
                    admin_key=new_admin_key(),
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
        self, incumbent: Candidate, candidate: Candidate, incumbent_first: bool = True
    ) -> tuple[Figures, Figures, dict[str, Any]]:
        """The incumbent and the candidate back to back on the two servers, in the given order."""
        if not self.paired:
            if incumbent_first:
                before, _ = self.measure(incumbent)
                after, extra = self.measure(candidate)
            else:
                after, extra = self.measure(candidate)
                before, _ = self.measure(incumbent)
            return before, after, extra
        home = next((s for s in self.slots if s.candidate == incumbent), self.slots[0])
        other = self.slots[1] if home is self.slots[0] else self.slots[0]
        changed = self.load(other, candidate)  # first: reloading costs CPU the runs must not see
        if incumbent_first:
            before, _ = self._measure_on(home, incumbent)
            after, extra = self._measure_on(other, candidate)
        else:
            after, extra = self._measure_on(other, candidate)
            before, _ = self._measure_on(home, incumbent)
        return before, after, {**extra, "reloaded": changed}

    def _measure_on(self, slot: _Slot, candidate: Candidate) -> tuple[Figures, dict[str, Any]]:
        changed = self.load(slot, candidate)
        folder = self.runs_dir / f"{next(self._runs):03d}"
        result = measure(
            self.profile,
            Target.from_server(slot.server),
            folder,
            show_progress=False,
            with_plots=False,
        )
        (folder / "candidate.txt").write_text(
            "".join(f"{k} = {v}\n" for k, v in sorted(candidate.items()))
        )
        models = result.summary["server"]["models"]
        cpu = result.summary.get("load_generator") or {}
        extra: dict[str, Any] = {
            "reloaded": changed,
            "run": folder.name,
            "load_generator_cores": cpu.get("cpu_cores"),
            "avg_batch_size": {
                n: d["avg_batch_size"] for n, d in models.items() if n in self.configs
            },
        }
        if result.summary["errors"]:
            extra["first_error"] = result.summary["errors"][0]["error"]
        return result.figures, extra
