#!/usr/bin/env python
"""Build the digits models into model_repository/ (same as ``tritonctl build digits``).

python scripts/build_digits.py [--force]
"""

from __future__ import annotations

import sys

from tritonctl.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", "digits", *sys.argv[1:]]))
