"""The Prometheus parser and per-model diff of ``tritonctl.metrics``.

``fixtures/triton_metrics_digits.prom`` is a real scrape of tritonserver 2.51 (summaries on)
after a digit_classifier load test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tritonctl.metrics import Metrics, MetricsError, diff, parse_samples

REAL = Path(__file__).parent / "fixtures" / "triton_metrics_digits.prom"


def counters(model: str, **values: float) -> str:
    names = {
        "success": "nv_inference_request_success",
        "count": "nv_inference_count",
        "execs": "nv_inference_exec_count",
        "request": "nv_inference_request_duration_us",
        "queue": "nv_inference_queue_duration_us",
        "input": "nv_inference_compute_input_duration_us",
        "infer": "nv_inference_compute_infer_duration_us",
        "output": "nv_inference_compute_output_duration_us",
        "hits": "nv_cache_num_hits_per_model",
    }
    lines = [f'{names[k]}{{model="{model}",version="1"}} {v}' for k, v in values.items()]
    return "\n".join(lines) + "\n"


def test_parses_a_real_triton_scrape() -> None:
    metrics = Metrics.parse(REAL.read_text())
    models = metrics.models()
    assert {
        "digit_classifier",
        "image_preprocess",
        "digits_student",
        "classify_postprocess",
    } <= set(models)
    student = metrics.model("digits_student")
    assert student.request_success > 0
    assert student.inference_count >= student.exec_count > 0
    assert student.compute_infer_duration_us > 0
    # Failure counters come per reason; the model's total sums them.
    assert student.request_failure == metrics.value(
        "nv_inference_request_failure", model="digits_student"
    )
    assert set(student.request_summary_us) == {0.5, 0.9, 0.95, 0.99, 0.999}
    assert student.request_summary_us[0.5] <= student.request_summary_us[0.99]


def test_labels_escapes_comments_and_special_values() -> None:
    text = (
        "# HELP x a help line\n# TYPE x gauge\n"
        'x{path="C:\\\\dir",msg="say \\"hi\\"\\n", empty=""} 1.5e3\n'
        "y +Inf\nz NaN 1700000000000\n"
    )
    samples = list(parse_samples(text))
    assert samples[0].labels == {"path": "C:\\dir", "msg": 'say "hi"\n', "empty": ""}
    assert samples[0].value == 1500.0
    assert math.isinf(samples[1].value)
    assert math.isnan(samples[2].value)


@pytest.mark.parametrize("line", ["x{a=1} 2", "x 1 2 3", '{a="b"} 1', "x abc"])
def test_malformed_lines_name_the_line(line: str) -> None:
    with pytest.raises(MetricsError, match="line 2"):
        list(parse_samples(f"ok 1\n{line}\n"))


def test_diff_gives_per_request_times_and_batch_size() -> None:
    before = Metrics.parse(
        counters("m", success=10, count=10, execs=10, request=10_000, queue=1_000, infer=5_000),
        taken_at=100.0,
    )
    after = Metrics.parse(
        counters(
            "m",
            success=110,
            count=110,
            execs=35,
            request=310_000,
            queue=51_000,
            input=2_000,
            infer=205_000,
            output=10_000,
            hits=0,
        )
        + counters("idle", success=5),
        taken_at=110.0,
    )
    before_idle = Metrics.parse(counters("idle", success=5), taken_at=100.0)
    deltas = diff(Metrics(before.samples + before_idle.samples, 100.0), after)
    assert list(deltas) == ["m"]  # a model that served nothing in between is left out
    m = deltas["m"]
    assert m.success == 100 and m.seconds == 10.0
    assert m.avg_request_ms == pytest.approx(3.0)
    assert m.avg_queue_ms == pytest.approx(0.5)
    assert m.avg_compute_input_ms == pytest.approx(0.02)
    assert m.avg_compute_infer_ms == pytest.approx(2.0)
    assert m.avg_compute_output_ms == pytest.approx(0.1)
    assert m.avg_batch_size == pytest.approx(100 / 25)
    assert m.throughput == pytest.approx(10.0)


def test_cache_hits_do_not_dilute_compute_times() -> None:
    before = Metrics.parse(counters("m"), taken_at=0.0)
    after = Metrics.parse(
        counters("m", success=100, count=40, execs=40, queue=10_000, infer=40_000, hits=60),
        taken_at=1.0,
    )
    m = diff(before, after)["m"]
    assert m.computed == 40
    assert m.avg_compute_infer_ms == pytest.approx(1.0)  # 40 ms over the 40 that ran
    assert m.avg_queue_ms == pytest.approx(0.1)  # queue time covers every request


def test_a_restarted_server_counts_from_zero() -> None:
    before = Metrics.parse(counters("m", success=1000, count=1000, execs=500), taken_at=0.0)
    after = Metrics.parse(counters("m", success=30, count=30, execs=10), taken_at=5.0)
    m = diff(before, after)["m"]
    assert m.success == 30 and m.avg_batch_size == pytest.approx(3.0)
