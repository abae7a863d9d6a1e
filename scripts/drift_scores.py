"""Score whole samples for drift against the built reference profiles; rewrite the docs' tables.

Digits: the held-out test split the digits build saved (``reports/digits/test_set.npz``) and five
transforms of it. Text: the reference corpus, in-distribution texts (held-out calibration
sentences and corpus variants), the held-out sentences alone, and three shifted samples
(``tests/text_samples.py``). Each is scored by ``tritonctl.drift`` as ``tritonctl drift`` does.
Writes ``reports/drift/scores.json``, and unless ``--no-docs`` the committed snapshot
``docs/drift_scores.json`` and the tables between the ``drift-scores`` markers in
``docs/monitoring.md``.

    .venv/bin/python scripts/drift_scores.py          # under a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import text_samples  # noqa: E402
from tritonctl import drift_scores, paths  # noqa: E402
from tritonctl.console import console  # noqa: E402
from tritonctl.corpus import calibration_sentences, sentences  # noqa: E402
from tritonctl.drift import read_images  # noqa: E402

DOC = ROOT / "docs" / "monitoring.md"
DOC_JSON = ROOT / "docs" / "drift_scores.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-docs", action="store_true", help="write reports/ only")
    args = parser.parse_args()

    repository = paths.model_repository()
    images = read_images(paths.reports_dir() / "digits" / "test_set.npz")
    text = {
        "the reference corpus itself": sentences(),
        "in distribution: held-out calibration sentences + corpus variants": (
            text_samples.in_distribution(512)
        ),
        "held-out calibration sentences alone": calibration_sentences(),
        **{
            f"{name.replace('_', ' ')} (shifted)": make(512)
            for name, make in text_samples.SHIFTED.items()
        },
    }
    with console.status("scoring the samples"):
        report = {
            "command": "scripts/drift_scores.py",
            "digits": drift_scores.score_digits_samples(images, repository),
            "text": drift_scores.score_text_samples(text, repository),
        }
    out = paths.reports_dir() / "drift"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_docs:
        DOC_JSON.write_text(json.dumps(report, indent=2) + "\n")
        source = str(DOC_JSON.relative_to(ROOT))
        DOC.write_text(drift_scores.rewrite(DOC.read_text(encoding="utf-8"), report, source))
    for table in drift_scores.sections(report).values():
        console.print(table + "\n")
    console.print(f"report: {out / 'scores.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
