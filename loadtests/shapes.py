"""Load shapes chosen with ``LOADTEST_SHAPE`` (``constant``, the default, needs no shape class).

Both read the usual ``-u`` (peak users), ``-r`` (spawn rate) and ``-t`` (run time) options, so
``LOADTEST_SHAPE=step locust -f loadtests/locustfile.py -u 16 -t 60s ...`` just works. Only the
selected class is concrete: Locust refuses a locustfile offering several shapes.

- ``step``: ``LOADTEST_STEPS`` equal stairs (default 4) from peak/steps users up to the peak.
- ``ramp``: users rise linearly from 1 to the peak over ``LOADTEST_RAMP_FRACTION`` (default
  0.8) of the run, then hold.
"""

from __future__ import annotations

import math
import os

from locust import LoadTestShape

SHAPE = os.environ.get("LOADTEST_SHAPE", "constant").lower()
if SHAPE not in ("constant", "step", "ramp"):
    raise ValueError(f"LOADTEST_SHAPE={SHAPE!r}: use constant, step or ramp")


class _OptionsShape(LoadTestShape):
    abstract = True
    use_common_options = True

    def _options(self) -> tuple[int, float, float]:
        """Peak users, spawn rate and run time (s) from Locust's command line."""
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        users = int(getattr(options, "num_users", None) or 1)
        rate = float(getattr(options, "spawn_rate", None) or users)
        run_time = float(getattr(options, "run_time", None) or 60)
        return users, rate, run_time


class StepLoadShape(_OptionsShape):
    abstract = SHAPE != "step"

    def tick(self) -> tuple[int, float] | None:
        users, rate, run_time = self._options()
        now = self.get_run_time()
        if now >= run_time:
            return None
        steps = max(1, min(int(os.environ.get("LOADTEST_STEPS", "4")), users))
        stair = min(int(now / (run_time / steps)), steps - 1) + 1
        return max(1, math.ceil(users * stair / steps)), rate


class RampLoadShape(_OptionsShape):
    abstract = SHAPE != "ramp"

    def tick(self) -> tuple[int, float] | None:
        users, rate, run_time = self._options()
        now = self.get_run_time()
        if now >= run_time:
            return None
        ramp = run_time * float(os.environ.get("LOADTEST_RAMP_FRACTION", "0.8"))
        return max(1, math.ceil(users * min(1.0, now / ramp))), max(rate, users / ramp)
