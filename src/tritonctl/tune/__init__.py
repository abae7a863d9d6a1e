"""``tritonctl tune``: find the batching and instance configuration with the highest throughput
that still meets an SLO profile, write it into ``config.pbtxt`` and report how it was found.

The flow: read the SLO profile (``loadtests/slo/*.yaml``), list the knobs of the model (or of
an ensemble's steps), and measure every candidate with ``tritonctl loadtest``'s own run (the
same Locust users, payload pool, warm-up, window and exact percentiles as the profile's load
test, closed loop at the profile's users). Coordinate descent pairs each candidate with a
fresh measurement of the best so far, alternating which goes first. Then each knob the search
changed is confirmed on its own in ABBA rounds and kept only by :func:`keep_change`: it meets
the SLO in every round, never loses throughput beyond noise, and gains beyond noise (or fixes
an SLO the incumbent misses in most rounds). The result is written with the first backup of
each ``config.pbtxt`` kept (a second run never overwrites it), and reported as JSON, PNG and a
self-contained HTML page.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonctl.bench.staging import composing_models
from tritonctl.loadtest.slo import SloProfile, load_profile
from tritonctl.model_config import ModelConfig, config_text, load_config, save_config
from tritonctl.tune import knobs as knob_edits
from tritonctl.tune.search import (
    Candidate,
    Knob,
    SearchResult,
    Trial,
    Verdict,
    confirm_knobs,
    coordinate_descent,
    grid_size,
)


@dataclass
class TuneOptions:
    model: str
    slo: Path
    repository: Path
    out_dir: Path
    warmup_s: float | None = None  # default: the SLO profile's, as loadtest runs it
    duration_s: float | None = None  # default: the SLO profile's
    max_trials: int = 24
    max_passes: int = 2
    min_gain: float = 0.10  # noise margin: a 2-core machine swings more than 3% between runs
    confirm_rounds: int = 2  # per changed knob, in ABBA order
    apply: bool = True
    paired: bool = True  # measure the incumbent next to each candidate (two servers)
    concurrency: int | None = None  # default: the SLO profile's users
    knobs: list[Knob] | None = None  # default: knobs.default_knobs
    knob_names: list[str] | None = None  # search only these of the default knobs


@dataclass
class TuneOutcome:
    profile: SloProfile
    search: SearchResult
    chosen: Candidate
    confirmation: list[dict[str, Any]]
    diffs: dict[str, str]
    written: list[Path]
    report_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)


def targets(repository: Path, model: str, profile: SloProfile) -> tuple[str, list[str]]:
    """The model that receives load and the models whose configs are tuned."""
    config = load_config(repository / model)
    if config.platform == "ensemble":
        return model, composing_models(repository, model)
    entry = profile.model
    if entry != model and model not in composing_models(repository, entry):
        raise ValueError(
            f"{model} is not a step of {entry} (the SLO profile's model): "
            f"tune the ensemble, or pass a profile for {model}"
        )
    return entry, [model]


def write_configs(
    repository: Path,
    configs: dict[str, ModelConfig],
    chosen: Candidate,
    apply: bool,
    base: Candidate | None = None,
) -> tuple[dict[str, str], list[Path]]:
    """The chosen candidate's diff per model, written when ``apply``.

    The first run keeps each original as ``config.pbtxt.bak``; later runs never overwrite it
    (the diff in their report is the way back to the config they started from).
    """
    from tritonctl.tune.report import config_diff

    tuned = knob_edits.apply(configs, chosen, base=base)
    diffs: dict[str, str] = {}
    written: list[Path] = []
    for name, config in tuned.items():
        before, after = config_text(configs[name]), config_text(config)
        if before == after:
            continue
        diffs[name] = config_diff(before, after, name)
        if apply:
            first_backup = not (repository / name / "config.pbtxt.bak").exists()
            written.append(save_config(config, repository / name, backup=first_backup))
    return diffs, written


def tune(
    options: TuneOptions,
    on_trial: Callable[[Trial], None] | None = None,
    on_knob: Callable[[str, Verdict], None] | None = None,
) -> TuneOutcome:
    from tritonctl.tune import report
    from tritonctl.tune.runner import TritonTrials

    base_profile = load_profile(options.slo)
    entry, tuned_models = targets(options.repository, options.model, base_profile)
    # The profile's workload, closed loop: the search is for throughput at its users.
    profile = base_profile.with_overrides(
        mode="closed",
        users=options.concurrency,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
    )
    configs = {name: load_config(options.repository / name) for name in tuned_models}
    entry_config = load_config(options.repository / entry)
    ensemble_batch = entry_config.max_batch_size if entry_config.platform == "ensemble" else 0
    knobs = options.knobs or knob_edits.default_knobs(configs, ensemble_batch)
    if options.knob_names:
        unknown = sorted(set(options.knob_names) - {k.name for k in knobs})
        if unknown:
            raise ValueError(
                f"unknown knob(s) {', '.join(unknown)}; known: {', '.join(k.name for k in knobs)}"
            )
        knobs = [k for k in knobs if k.name in options.knob_names]
    start = knob_edits.current(configs, knobs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report_dir = options.out_dir / f"{options.model}-{stamp}"
    report_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tritonctl-tune-") as tmp:
        trials = TritonTrials(
            options.repository,
            Path(tmp) / "repository",
            entry,
            configs,
            profile,
            report_dir / "runs",
            start=start,
            paired=options.paired,
        )
        with trials:
            search = coordinate_descent(
                knobs,
                start,
                trials.measure,
                profile.objectives,
                max_passes=options.max_passes,
                max_trials=options.max_trials,
                min_gain=options.min_gain,
                on_trial=on_trial,
                measure_pair=trials.measure_pair if options.paired else None,
            )
            chosen, confirmation = confirm_knobs(
                trials.measure_pair,
                search.baseline.candidate,
                search.best.candidate,
                [k.name for k in knobs],
                profile.objectives,
                rounds=options.confirm_rounds,
                min_gain=options.min_gain,
                on_knob=on_knob,
            )
    diffs, written = write_configs(options.repository, configs, chosen, options.apply, base=start)

    summary = {
        "model": options.model,
        "load_model": entry,
        "slo": str(options.slo),
        "objectives": {k: v for k, v in vars(profile.objectives).items() if v is not None},
        "workload": {
            "load": profile.load_label,
            "protocol": profile.protocol,
            "warmup_s": profile.warmup_s,
            "duration_s": profile.duration_s,
            "drain_s": profile.drain,
            "runs": "tritonctl loadtest's Locust users and payload pool (runs/ holds each report)",
        },
        "paired": options.paired,
        "min_gain": options.min_gain,
        "knobs": {k.name: list(k.values) for k in knobs},
        "full_grid_runs": grid_size(knobs),
        "runs": len(search.trials),
        "baseline": search.baseline.candidate,
        "best_found": search.best.candidate,
        "chosen": chosen,
        "confirmation": confirmation,
        "written": [str(p) for p in written],
        "search": search.as_dict(),
    }
    (report_dir / "tune.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    png = report.plot(search, profile.objectives, report_dir / "trials.png")
    all_diffs = "".join(diffs.values())
    (report_dir / "report.html").write_text(report.html_report(summary, search, png, all_diffs))
    return TuneOutcome(profile, search, chosen, confirmation, diffs, written, report_dir, summary)
