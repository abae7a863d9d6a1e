"""``tritonctl top`` against the real server: one table with each model's figures."""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import tritonclient.http as http
from rich.console import Console, RenderableType

from tests.serving_support import bytes_input, digits_test_images, png
from tests.tiny_repository import make_tiny_repository
from tritonctl.cli import main
from tritonctl.console import console
from tritonctl.corpus import sentences
from tritonctl.metrics import scrape
from tritonctl.server import LocalTriton
from tritonctl.top import TopRow, metrics_url, rows, server_pid, snapshots, table, view


def test_metrics_url_accepts_host_port_and_urls() -> None:
    assert metrics_url("localhost:8002") == "http://localhost:8002/metrics"
    assert metrics_url("http://h:1/") == "http://h:1/metrics"
    assert metrics_url("http://h:1/metrics") == "http://h:1/metrics"


def test_top_once_shows_rates_latency_batching_cache_and_drift(
    triton: LocalTriton, capsys: pytest.CaptureFixture[str]
) -> None:
    client = http.InferenceServerClient(triton.http_address)
    nonce = uuid.uuid4().hex  # other tests share the server and its response cache
    images = [png(image, note=f"{nonce}-{i}") for i, image in enumerate(digits_test_images()[:20])]
    before = scrape(triton.metrics_url)
    for image in images + images[:5]:  # the last five are answered from the response cache
        client.infer("digit_classifier", [bytes_input("IMAGE", [image])])
    client.close()
    after = scrape(triton.metrics_url)
    by_model = {row.model: row for row in rows(before, after)}
    row = by_model["digit_classifier"]
    assert row.requests_per_s > 0
    assert 0 < row.p50_ms <= row.p99_ms
    assert row.cache_hit_ratio == pytest.approx(5 / 25)
    # a score, or (a window short of the minimum, as other tests share the server) no score yet
    assert row.warming or not math.isnan(row.drift_psi + row.low_confidence_ratio)
    assert row.drift_samples >= 20
    assert by_model["classify_postprocess"].batch_size >= 1

    console.width = 160  # as in a wide terminal: rich wraps headers in narrow ones
    assert main(["top", "--once", "--url", triton.metrics_url]) == 0
    out = capsys.readouterr().out
    for header in ("req/s", "p99 ms", "queue ms", "cache hit", "drift PSI"):
        assert header in out
    assert "digit_classifier" in out


def test_top_names_an_unreachable_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--once", "--url", "127.0.0.1:9"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_top_says_when_it_was_given_the_http_port(
    triton: LocalTriton, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["top", "--once", "--url", triton.http_address]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "HTTP Error 404" in err and "give Triton's metrics port" in err, err
    for interval in ("0", "-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            main(["top", "--once", "--interval", interval, "--url", triton.metrics_url])
        assert "--interval" in capsys.readouterr().err


def test_top_shows_the_text_pipelines_drift(
    triton: LocalTriton, capsys: pytest.CaptureFixture[str]
) -> None:
    client = http.InferenceServerClient(triton.http_address)
    texts = [f"{text} (top {index})" for index, text in enumerate(sentences()[:40])]
    before = scrape(triton.metrics_url)
    client.infer("text_embedding", [bytes_input("TEXT", texts)])  # distinct: no cache hit
    client.close()
    after = scrape(triton.metrics_url)
    row = {row.model: row for row in rows(before, after)}["text_embedding"]
    assert row.requests_per_s > 0
    assert row.drift_samples >= 40

    console.width = 160
    assert main(["top", "--once", "--url", triton.metrics_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(
        x for x in lines if x.split("│")[1:2] and x.split("│")[1].strip() == "text_embedding"
    )
    if row.warming:  # the window is short of the minimum: no score, and top says so
        assert math.isnan(row.drift_psi) and math.isnan(row.low_confidence_ratio)
        assert f"warming ({row.drift_samples:.0f}/{row.drift_min_samples:.0f})" in line
    else:
        assert row.drift_psi >= 0 and 0 <= row.low_confidence_ratio <= 1
        assert f"{row.low_confidence_ratio:.3f}" in line


# --- fits the terminal; processes (issue 15 item 2, issue 22) --------------------------------


def render(view: RenderableType, width: int) -> list[str]:
    narrow = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    narrow.print(view)
    return narrow.export_text().splitlines()


def test_top_at_80_columns_shows_every_model_name_whole(
    triton: LocalTriton, capsys: pytest.CaptureFixture[str]
) -> None:
    client = http.InferenceServerClient(triton.http_address)
    nonce = uuid.uuid4().hex
    image = png(digits_test_images()[0], note=nonce)
    for model in ("digit_classifier", "digit_classifier_pruned_channels", "digit_classifier_int8"):
        client.infer(model, [bytes_input("IMAGE", [image])])  # the longest names served
    client.infer("text_embedding", [bytes_input("TEXT", [f"top at 80 columns {nonce}"])])
    client.close()
    snapshot = next(snapshots(triton.metrics_url, 0.5))
    served = [row.model for row in rows(snapshot.before, snapshot.after)]
    assert "digit_classifier_pruned_channels" in served and "tokenizer" in served

    lines = render(view(snapshot, width=80), 80)
    assert max(map(len, lines)) <= 80
    cells = {cell.strip() for line in lines for cell in line.split("│")}
    for model in served:
        assert model in cells, f"{model} is cut at 80 columns"
    assert any("req/s" in line for line in lines) and any("PSI" in line for line in lines)

    # the process view: the server and each stub by the model it serves, CPU and memory
    start = next(i for i, line in enumerate(lines) if "process (model)" in line)
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines[start:] if "│" in line]
    procs = {row[0]: row[1:] for row in cells}
    assert {"tritonserver", "pooling", "tokenizer", "text_encoder"} <= set(procs), procs
    count, cpu, rss = procs["tritonserver"]
    assert count == "1" and float(cpu) >= 0 and float(rss) > 10  # MiB: the real server
    assert int(procs["text_encoder"][0]) >= 1 and float(procs["text_encoder"][2]) > 90  # the
    # encoder's stub holds the 90 MB ONNX model
    assert any("Triton: machine CPU" in line for line in lines)

    # wider terminals get the full headers
    wide = render(view(snapshot, width=160), 160)
    assert any("cache hit" in line and "drift PSI" in line for line in wide)


def test_narrow_terminals_drop_columns_not_names() -> None:
    long = "a_model_with_a_rather_long_name_indeed"
    row = TopRow(long, 12.5, 3.1, 9.9, 0.2, 4.0, 0.5, 0.04, 0.01, 1200.0)
    warming = TopRow("pooling_like", 0.0, math.nan, math.nan, math.nan, math.nan, math.nan,
                     math.nan, math.nan, 3.0, drift_samples=3, drift_min_samples=416)  # fmt: skip
    for width in (80, 60, 45):
        lines = render(table([row, warming], width=width), width)
        assert max(map(len, lines)) <= width, (width, lines)
        assert any(long in line for line in lines)
    assert any("warming (3/416)" in line for line in render(table([row, warming], width=80), 80))
    assert not any("req/s" in line for line in render(table([row], width=45), 45))


def test_a_remote_server_has_no_process_view() -> None:
    assert server_pid("http://10.0.0.1:8002/metrics") is None
    assert server_pid("127.0.0.1:9") is None  # nothing local serves metrics there


def test_live_top_outlasts_a_server_restart(tmp_path: Path) -> None:
    """`serve` restarts a dead server (--max-restarts 3 by default) and `top` follows the new
    process, but the scrape made while the server was down used to end `top` (exit 2, 1 s
    after a SIGKILL of tritonserver). It now says so on stderr and keeps polling."""
    repo = make_tiny_repository(tmp_path / "repo")
    first = LocalTriton(repo, models=["double"], exit_timeout=5)
    first.start()
    ports = {"http_port": first.http_port, "grpc_port": first.grpc_port}
    ports["metrics_port"] = first.metrics_port
    out = (tmp_path / "top.txt").open("w")
    top = subprocess.Popen(
        [sys.executable, "-m", "tritonctl", "top", "--url", first.metrics_url, "--interval", "0.3"],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    second: LocalTriton | None = None
    try:
        time.sleep(3)
        assert top.poll() is None, (tmp_path / "top.txt").read_text()
        first.stop()
        time.sleep(2)  # several scrapes find nothing
        assert top.poll() is None, (
            "top exited when the server went away: " + (tmp_path / "top.txt").read_text()
        )
        second = LocalTriton(repo, models=["double"], exit_timeout=5, **ports)
        second.start()
        time.sleep(2)
        assert top.poll() is None
    finally:
        top.send_signal(signal.SIGINT)
        try:
            top.wait(30)
        finally:
            if top.poll() is None:
                top.kill()
            out.close()
            first.stop()
            if second is not None:
                second.stop()
    text = " ".join((tmp_path / "top.txt").read_text().split())
    assert top.returncode in (0, 130), text
    assert "not answering" in text and "answering again" in text, text
    assert "double" in text  # the view of the restarted server
