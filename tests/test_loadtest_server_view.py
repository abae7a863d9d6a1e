"""The server-side breakdown of a load test: restarts, mixed servers, and who served the load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonctl.loadtest.results import different_servers, read_server_view
from tritonctl.metrics import Metrics, diff


def exposition(model: str, success: int, queue_us: int, exec_count: int | None = None) -> str:
    execs = success if exec_count is None else exec_count
    return "\n".join(
        [
            f'nv_inference_request_success{{model="{model}",version="1"}} {success}',
            f'nv_inference_request_failure{{model="{model}",version="1"}} 0',
            f'nv_inference_count{{model="{model}",version="1"}} {success}',
            f'nv_inference_exec_count{{model="{model}",version="1"}} {execs}',
            f'nv_inference_request_duration_us{{model="{model}",version="1"}} {queue_us * 2}',
            f'nv_inference_queue_duration_us{{model="{model}",version="1"}} {queue_us}',
        ]
    )


def test_a_restart_is_detected_per_model_not_per_counter() -> None:
    # Before: 100 requests that queued 6 ms each. The server restarts; after it, 150 requests
    # queue 2 ms each. The request count never went below 100, the queue total did.
    before = Metrics.parse(exposition("m", 100, 600_000), 0.0)
    after = Metrics.parse(exposition("m", 150, 300_000), 10.0)
    delta = diff(before, after)["m"]
    assert delta.restarted
    assert delta.success == 150
    assert delta.avg_queue_ms == pytest.approx(2.0)  # per counter it read 300000 / 50 = 6.0


def test_a_model_that_did_not_restart_is_a_plain_difference() -> None:
    before = Metrics.parse(exposition("m", 100, 200_000), 0.0)
    after = Metrics.parse(exposition("m", 150, 300_000), 10.0)
    delta = diff(before, after)["m"]
    assert not delta.restarted and delta.success == 50
    assert delta.avg_queue_ms == pytest.approx(2.0)


def _scrapes(folder: Path, before: dict, after: dict, text_after: str | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics_before.prom").write_text(exposition("m", 100, 200_000))
    (folder / "metrics_after.prom").write_text(text_after or exposition("m", 400, 800_000))
    events = {
        "metrics_before_at": 0.0,
        "metrics_after_at": 10.0,
        "metrics_before_server": before,
        "metrics_after_server": after,
    }
    (folder / "events.json").write_text(json.dumps(events))
    return events


def test_scrapes_from_two_servers_give_no_breakdown(tmp_path: Path) -> None:
    events = _scrapes(tmp_path, {"address": "10.0.0.1:8002"}, {"address": "10.0.0.2:8002"})
    view = read_server_view(tmp_path, events, "m")
    assert view.models == {}
    assert "10.0.0.1:8002" in view.error and "10.0.0.2:8002" in view.error
    assert "load balancer" in view.error


def test_a_local_server_that_restarted_gives_no_breakdown(tmp_path: Path) -> None:
    same = "127.0.0.1:8002"
    events = _scrapes(
        tmp_path,
        {"address": same, "pid": 41, "started_at": 100.0},
        {"address": same, "pid": 57, "started_at": 160.0},
    )
    view = read_server_view(tmp_path, events, "m")
    assert view.models == {} and "restarted" in view.error


def test_the_same_server_gives_its_breakdown_and_the_identities(tmp_path: Path) -> None:
    server = {"address": "127.0.0.1:8002", "pid": 41, "started_at": 100.0}
    events = _scrapes(tmp_path, server, dict(server))
    view = read_server_view(tmp_path, events, "m")
    assert view.error == "" and view.models["m"].success == 300
    assert view.servers == {"before": server, "after": server}
    assert different_servers(server, dict(server)) == ""


def test_a_model_reset_between_scrapes_is_named(tmp_path: Path) -> None:
    server = {"address": "127.0.0.1:8002"}
    events = _scrapes(tmp_path, server, server, text_after=exposition("m", 50, 100_000))
    view = read_server_view(tmp_path, events, "m")
    assert view.models["m"].success == 50
    (warning,) = view.warnings
    assert warning.startswith("m: a counter went down between the scrapes")
