"""docs/monitoring.md's drift-score tables are the committed report's figures, not typed by hand.

``scripts/drift_scores.py`` writes ``docs/drift_scores.json`` and the tables together; an edit to
either alone (or a rerun that did not rewrite the docs) fails here.
"""

from __future__ import annotations

import json

import pytest

from tests.test_doc_commands import ROOT
from tritonctl import drift_scores

DOC = ROOT / "docs" / "monitoring.md"
REPORT = ROOT / "docs" / "drift_scores.json"


def test_the_tables_are_the_reports() -> None:
    report = json.loads(REPORT.read_text())
    text = DOC.read_text(encoding="utf-8")
    assert drift_scores.rewrite(text, report, str(REPORT.relative_to(ROOT))) == text


def test_the_report_scores_every_sample_and_a_shift_is_caught() -> None:
    from tritonctl.drift_window import MIN_SAMPLES

    report = json.loads(REPORT.read_text())
    # the verdicts depend on the minimum window: a new N needs a new report
    assert {s["min_samples"] for k in ("digits", "text") for s in report[k].values()} == {
        MIN_SAMPLES
    }
    assert list(report["digits"]) == list(drift_scores.DIGITS_SAMPLES)
    assert report["text"]["german (shifted)"]["verdict"] == "significant shift"
    assert report["digits"]["+2 brightness"]["verdict"] == "significant shift"


def test_a_figure_typed_by_hand_is_caught() -> None:
    report = json.loads(REPORT.read_text())
    text = DOC.read_text(encoding="utf-8")
    table = drift_scores.sections(report)["text"]
    edited = text.replace(table, table.replace("| 0.034 |", "| 0.030 |"))
    assert edited != text
    assert drift_scores.rewrite(edited, report, str(REPORT.relative_to(ROOT))) != edited
    with pytest.raises(ValueError, match="drift-scores:digits:begin"):
        drift_scores.rewrite("no markers here", report, "x")
