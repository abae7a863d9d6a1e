"""benchmarks/RESULTS.md quotes its bench run: every "median (min–max)" the prose cites is a row
of the table ``tritonctl bench`` generated below the marker.

``make bench`` rewrites only the generated section; prose that still quotes the previous run
fails here until it is brought up to date (or stops quoting figures).
"""

from __future__ import annotations

import re

from tests.test_doc_commands import ROOT

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
MARKER = "<!-- tritonctl bench: latest run -->"
GOALS = "## Goals: where the latest run stands"
#: A median followed, within a few words, by its interval: "0.73 (short; 0.71–1.02)".
CITED = re.compile(r"(-?\d+\.\d+)[^\d–]{0,20}?(-?\d+\.\d+)–(-?\d+\.\d+)")


def generated_rows(text: str) -> set[tuple[str, str]]:
    rows = set()
    for line in text.split(MARKER, 1)[1].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"-?\d+\.\d+", cells[2]):
            rows.add((cells[2], cells[3]))
    return rows


def cited(text: str) -> list[tuple[str, str]]:
    """(median, interval) pairs quoted in the goal-by-goal section."""
    start = text.index(GOALS)
    end = text.index("\n#", start + len(GOALS))
    prose = " ".join(text[start:end].split())
    return [(m[1], f"{m[2]}–{m[3]}") for m in CITED.finditer(prose)]


def test_the_prose_quotes_the_generated_run() -> None:
    text = RESULTS.read_text(encoding="utf-8")
    rows, quotes = generated_rows(text), cited(text)
    assert rows, "no generated table below the marker"
    assert len(quotes) >= 2, "the prose no longer quotes the run: drop this test with it"
    stale = [q for q in quotes if q not in rows]
    assert not stale, f"quoted but not in the generated table (median, min–max): {stale}"


def test_a_stale_quote_is_caught() -> None:
    text = RESULTS.read_text(encoding="utf-8")
    median, interval = cited(text)[0]
    start = text.index(GOALS)
    edited = text[:start] + re.sub(re.escape(median), "9.99", text[start:], count=1)
    assert ("9.99", interval) in cited(edited)
    assert ("9.99", interval) not in generated_rows(edited)
