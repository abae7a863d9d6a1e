"""Regenerate the README's build-result tables from the current build reports.

Copies ``reports/text_embedding/build_report.json`` and ``reports/digits/build_report.json``
(written only by builds whose fatal gates passed) and ``reports/edge/build_report.json`` to
``docs/build_reports/`` and rewrites the README's generated sections from them;
``tests/test_readme_tables.py`` keeps the two in step. The edge table has LiteRT rows only when
the build ran with the ``edge`` extra installed (``pip install -e '.[edge]'``).

    .venv/bin/tritonctl build all && .venv/bin/python scripts/update_readme_tables.py
"""

from __future__ import annotations

from tritonctl.recipes.readme import snapshot_dir, update

if __name__ == "__main__":
    print(f"updated {update()} from {snapshot_dir()}")
