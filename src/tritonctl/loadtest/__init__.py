"""SLO-checked load tests of Triton with Locust: profiles, runs, reports, capacity search.

The library behind ``tritonctl loadtest``; ``make demo`` calls :func:`run_loadtest` directly::

    from tritonctl.loadtest import run_loadtest
    result = run_loadtest("loadtests/slo/text_embedding.yaml", server=server, duration_s=5)
    print(result.passed, result.failed, result.report)

``run_loadtest(..., rate_rps=40)`` sends 40 requests/s open loop; ``mode="closed", users=4``
runs four closed-loop users. ``find_capacity`` searches the arrival rate that holds the SLO.
"""

from __future__ import annotations

from tritonctl.loadtest.capacity import CapacityResult, find_capacity
from tritonctl.loadtest.locust_runner import LoadTestError, Target
from tritonctl.loadtest.run import LoadTestResult, local_server, run_loadtest
from tritonctl.loadtest.slo import (
    CapacitySearch,
    Objectives,
    ProfileError,
    SloProfile,
    load_profile,
)

__all__ = [
    "CapacityResult",
    "CapacitySearch",
    "LoadTestError",
    "LoadTestResult",
    "Objectives",
    "ProfileError",
    "SloProfile",
    "Target",
    "find_capacity",
    "load_profile",
    "local_server",
    "run_loadtest",
]
