"""Knob edits, staged repositories and config writes go through the protobuf schema."""

from __future__ import annotations

from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tests.tiny_repository import make_tiny_repository
from tritonctl.bench.staging import (
    chain,
    composing_models,
    stage_repository,
    without_dynamic_batching,
    without_response_cache,
)
from tritonctl.model_config import load_config, save_config
from tritonctl.tune import knobs, write_configs


def _with_ensemble(root: Path) -> Path:
    make_tiny_repository(root)
    ensemble = mc.ModelConfig(name="pipe", platform="ensemble", max_batch_size=8)
    ensemble.input.add(name="X", data_type=mc.TYPE_FP32, dims=[4])
    ensemble.output.add(name="Y", data_type=mc.TYPE_FP32, dims=[4])
    first = ensemble.ensemble_scheduling.step.add(model_name="add_one", model_version=-1)
    first.input_map["X"] = "X"
    first.output_map["Y"] = "mid"
    second = ensemble.ensemble_scheduling.step.add(model_name="double", model_version=-1)
    second.input_map["X"] = "mid"
    second.output_map["Y"] = "Y"
    save_config(ensemble, root / "pipe")
    (root / "pipe" / "1").mkdir()
    double = load_config(root / "double")
    double.response_cache.enable = True
    save_config(double, root / "double")
    return root


def test_knobs_read_and_write_every_setting(tmp_path: Path) -> None:
    repo = _with_ensemble(tmp_path / "repo")
    configs = {n: load_config(repo / n) for n in composing_models(repo, "pipe")}
    assert sorted(configs) == ["add_one", "double"]
    space = knobs.default_knobs(configs, ensemble_batch=8)
    names = [k.name for k in space]
    assert names[0].startswith("double.")  # ONNX model first
    assert "add_one.instances" in names and "double.intra_op_threads" in names
    start = knobs.current(configs, space)
    assert start["double.max_queue_delay_us"] == 20000

    candidate = {
        **start,
        "double.max_queue_delay_us": 500,
        "double.preferred_batch_size": 16,
        "double.max_batch_size": 16,
        "double.instances": 2,
        "double.intra_op_threads": 1,
        "add_one.instances": 2,
    }
    tuned = knobs.apply(configs, candidate)
    double = tuned["double"]
    assert double.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(double.dynamic_batching.preferred_batch_size) == [16]
    assert double.max_batch_size == 16
    assert double.instance_group[0].count == 2
    assert double.instance_group[0].kind == mc.ModelInstanceGroup.KIND_AUTO  # left for Triton
    assert double.parameters["intra_op_thread_count"].string_value == "1"
    assert tuned["add_one"].instance_group[0].count == 2
    assert configs["double"].max_batch_size == 32  # the originals are untouched
    # A preferred size above the max batch size is dropped rather than written invalid.
    clamped = knobs.apply(configs, {"double.preferred_batch_size": 32, "double.max_batch_size": 16})
    assert list(clamped["double"].dynamic_batching.preferred_batch_size) == []


def test_write_configs_shows_a_diff_and_keeps_a_backup(tmp_path: Path) -> None:
    repo = _with_ensemble(tmp_path / "repo")
    configs = {n: load_config(repo / n) for n in ("double", "add_one")}
    original = (repo / "double" / "config.pbtxt").read_text()
    diffs, written = write_configs(repo, configs, {"double.max_queue_delay_us": 1000}, apply=True)
    assert list(diffs) == ["double"]
    assert "-  max_queue_delay_microseconds: 20000" in diffs["double"]
    assert "+  max_queue_delay_microseconds: 1000" in diffs["double"]
    assert written == [repo / "double" / "config.pbtxt"]
    assert (repo / "double" / "config.pbtxt.bak").read_text() == original
    reread = load_config(repo / "double")
    assert reread.dynamic_batching.max_queue_delay_microseconds == 1000
    assert reread.response_cache.enable  # everything the tuner does not own is kept

    diffs, written = write_configs(repo, configs, {"double.instances": 2}, apply=False)
    assert diffs and not written


def test_a_second_tune_keeps_the_first_backup(tmp_path: Path) -> None:
    repo = _with_ensemble(tmp_path / "repo")
    original = (repo / "double" / "config.pbtxt").read_text()
    write_configs(
        repo, {"double": load_config(repo / "double")}, {"double.max_queue_delay_us": 1000}, True
    )
    first = (repo / "double" / "config.pbtxt").read_text()
    write_configs(
        repo, {"double": load_config(repo / "double")}, {"double.max_queue_delay_us": 0}, True
    )
    assert (repo / "double" / "config.pbtxt").read_text() != first
    assert (repo / "double" / "config.pbtxt.bak").read_text() == original  # not the first tune's


def test_staged_copy_without_batching_or_cache(tmp_path: Path) -> None:
    repo = _with_ensemble(tmp_path / "repo")
    staged = stage_repository(
        repo,
        tmp_path / "staged",
        ["pipe"],
        edit=chain(without_response_cache, without_dynamic_batching),
    )
    assert sorted(p.name for p in staged.iterdir()) == ["add_one", "double", "pipe"]
    double = load_config(staged / "double")
    assert not double.HasField("dynamic_batching") and not double.HasField("response_cache")
    assert (staged / "double" / "1" / "model.onnx").is_symlink()
    assert load_config(repo / "double").HasField("dynamic_batching")  # the source is untouched


def test_unchanged_knobs_keep_settings_they_read_only_in_part(tmp_path: Path) -> None:
    repo = _with_ensemble(tmp_path / "repo")
    double = load_config(repo / "double")
    double.dynamic_batching.preferred_batch_size.extend([8, 16])
    save_config(double, repo / "double")
    configs = {"double": load_config(repo / "double")}
    space = [k for k in knobs.default_knobs(configs) if k.name.startswith("double.")]
    start = knobs.current(configs, space)
    assert start["double.preferred_batch_size"] == 8
    same = knobs.apply(configs, start, base=start)["double"]
    assert list(same.dynamic_batching.preferred_batch_size) == [8, 16]
    diffs, _ = write_configs(repo, configs, start, apply=False, base=start)
    assert diffs == {}
    moved = knobs.apply(configs, {**start, "double.instances": 2}, base=start)["double"]
    assert list(moved.dynamic_batching.preferred_batch_size) == [8, 16]
    assert moved.instance_group[0].count == 2


def test_knobs_search_spinning_lone_request_threads_and_buckets(tmp_path: Path) -> None:
    repo = _with_ensemble(tmp_path / "repo")
    configs = {n: load_config(repo / n) for n in composing_models(repo, "pipe")}
    tokenizer = configs["add_one"]
    tokenizer.parameters["length_buckets"].string_value = "16,32,64,128,256"
    names = [k.name for k in knobs.default_knobs(configs, ensemble_batch=8)]
    assert {"double.spinning", "double.solo_threads", "add_one.length_buckets"} <= set(names)
    start = knobs.current(configs, knobs.default_knobs(configs, ensemble_batch=8))
    assert start["double.spinning"] == "1" and start["double.solo_threads"] == 0  # ORT defaults
    tuned = knobs.apply(
        configs,
        {
            "double.spinning": "0",
            "double.solo_threads": 2,
            "add_one.length_buckets": knobs.BUCKET_SETS[1],
        },
    )
    parameters = tuned["double"].parameters
    assert parameters["session.intra_op.allow_spinning"].string_value == "0"
    assert parameters["solo_intra_op_thread_count"].string_value == "2"
    buckets = tuned["add_one"].parameters["length_buckets"].string_value
    assert buckets.split(",")[:3] == ["8", "16", "24"] and buckets.endswith("256")
    cleared = knobs.apply(tuned, {"double.solo_threads": 0})
    assert "solo_intra_op_thread_count" not in cleared["double"].parameters
