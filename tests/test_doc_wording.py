"""The docs state the hardware a figure was measured on, never the circumstances of the machine.

A reader cannot rerun "a machine shared with other jobs at load average 11": the docs say "2-core
x86 VM, no GPU" and give the spread of repeated runs. Generated sections (the bench run's own
header, which records its load average as data) are left out.
"""

from __future__ import annotations

import re

import pytest

from tests.test_doc_commands import DOCS, ROOT

FILES = [*DOCS, *sorted((ROOT / "loadtests" / "slo").glob("*.yaml"))]
#: Where a generated section starts: what follows it is written by a tool, not by hand.
GENERATED = ("<!-- tritonctl bench: latest run -->",)
CIRCUMSTANCES = re.compile(
    r"other engineers|other jobs|other people|this machine|this VM|shared (?:machine|VM)"
    r"|shared with other|no GPU here|none here|(?:quiet|idle|loaded|busy) (?:machine|VM)"
    r"|neighbours|load average (?:of |near |at )?[~≈\d]",
    re.IGNORECASE,
)


def circumstances(text: str) -> list[str]:
    for marker in GENERATED:
        text = text.split(marker)[0]
    return [
        f"{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), 1)
        if CIRCUMSTANCES.search(line)
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_name_no_machine_circumstances(path) -> None:
    found = circumstances(path.read_text(encoding="utf-8"))
    assert not found, "say '2-core x86 VM, no GPU' instead:\n" + "\n".join(found)


def test_the_phrases_are_caught() -> None:
    for line in (
        "measured on the shared machine",
        "(4 users, machine shared with other jobs)",
        "while other engineers' jobs held the 2-core machine at load average ≈ 8",
        "No GPU here.",
        "at a load average of 9-13",
    ):
        assert circumstances(line), line
    assert not circumstances("2-core x86 VM, no GPU; the run's header records its load average")
