"""When each request of an open-loop run is meant to be sent.

Open loop means the schedule never waits for answers: request ``i`` is due at its time whether
or not earlier ones came back, and its latency is counted from that time. A slow server then
shows up as growing latency instead of as a client that quietly sends less (coordinated
omission).

- ``poisson``: independent arrivals, exponential gaps with mean ``1 / rate`` (many independent
  clients, the usual model of web traffic);
- ``constant``: one request every ``1 / rate`` seconds, after a random phase so that several
  processes do not send in lockstep.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

KINDS = ("poisson", "constant")


def send_times(rate: float, kind: str, start: float, rng: random.Random) -> Iterator[float]:
    """Absolute send times (same clock as ``start``) of an endless schedule at ``rate``/s."""
    if rate <= 0:
        raise ValueError(f"arrival rate must be positive (got {rate})")
    if kind == "poisson":
        at = start
        while True:
            at += rng.expovariate(rate)
            yield at
    elif kind == "constant":
        phase = rng.random()
        for index in itertools.count():
            yield start + (index + phase) / rate
    else:
        raise ValueError(f"arrivals {kind!r}: use {' or '.join(KINDS)}")
