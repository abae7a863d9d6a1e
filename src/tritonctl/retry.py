"""Retry Triton client calls on transient failures, with exponential backoff and full jitter.

Transient means the server could not take the request *now*: gRPC ``UNAVAILABLE`` (a full
queue, a server starting or draining), HTTP 502/503/504, a refused or reset connection, and a
Python backend stub that died and is being reloaded by the supervisor. A request that failed
for what it *is* (gRPC ``INVALID_ARGUMENT``, HTTP 400, an unknown model) is never retried:
sending it again cannot succeed and only adds load.

Wire it around any client call::

    from tritonctl.retry import RetryPolicy, call_with_retry

    result = call_with_retry(client.infer, "text_embedding", inputs, policy=RetryPolicy())
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from tritonclient.utils import InferenceServerException

T = TypeVar("T")

#: Status strings (as ``InferenceServerException.status()`` gives them) worth another try.
RETRYABLE_STATUSES = frozenset(
    {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED", "502", "503", "504"}
)
#: Never retried, whatever the message says: the request itself is wrong.
BAD_INPUT_STATUSES = frozenset({"StatusCode.INVALID_ARGUMENT", "400"})
#: Messages of transient failures that Triton reports under another status.
RETRYABLE_MESSAGES = (
    "exceeds maximum queue size",
    "is not healthy",  # the Python backend's stub died; the supervisor reloads the model
    "has no available versions",  # a draining server unloads its models: try another replica
    "server is not ready",
    "connection refused",
    "failed to connect",
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; delays grow ``multiplier``× per attempt up to ``max_backoff``."""

    attempts: int = 5
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0
    deadline: float | None = 30.0  # seconds for all attempts together; None: no limit

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The pause before each retry: full jitter, uniform in ``[0, capped backoff]``."""
        rng = rng or random.Random()
        backoff = self.initial_backoff
        for _ in range(max(self.attempts - 1, 0)):
            yield rng.uniform(0, min(backoff, self.max_backoff))
            backoff *= self.multiplier


def is_retryable(error: BaseException) -> bool:
    """Whether ``error`` is transient (see the module docstring)."""
    if isinstance(error, InferenceServerException):
        status = str(error.status() or "")
        if status in BAD_INPUT_STATUSES:
            return False
        message = str(error.message() or "").lower()
        if any(text in message for text in RETRYABLE_MESSAGES):
            return True
        return status in RETRYABLE_STATUSES
    # Refused/reset connections from the HTTP client (geventhttpclient raises plain OSErrors).
    return isinstance(error, (ConnectionError, TimeoutError)) or (
        isinstance(error, OSError) and error.errno is not None
    )


class RetriesExhausted(RuntimeError):
    """Every attempt failed with a transient error; ``last`` holds the final one."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"gave up after {attempts} attempt(s): {last}")
        self.attempts, self.last = attempts, last


def call_with_retry(
    function: Callable[..., T],
    *args: object,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    rng: random.Random | None = None,
    **kwargs: object,
) -> T:
    """``function(*args, **kwargs)``, retried on transient errors; others are raised at once."""
    policy = policy or RetryPolicy()
    started = time.monotonic()
    delays = policy.delays(rng)
    attempt = 0
    while True:
        attempt += 1
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if not is_retryable(error):
                raise
            delay = next(delays, None)
            out_of_time = (
                policy.deadline is not None
                and time.monotonic() - started + (delay or 0) > policy.deadline
            )
            if delay is None or out_of_time:
                raise RetriesExhausted(attempt, error) from error
            if on_retry is not None:
                on_retry(attempt, error, delay)
            sleep(delay)


def retrying(policy: RetryPolicy | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator form of ``call_with_retry``."""

    def wrap(function: Callable[..., T]) -> Callable[..., T]:
        def wrapper(*args: object, **kwargs: object) -> T:
            return call_with_retry(lambda: function(*args, **kwargs), policy=policy)

        wrapper.__wrapped__ = function  # type: ignore[attr-defined]
        wrapper.__doc__ = function.__doc__
        return wrapper

    return wrap
