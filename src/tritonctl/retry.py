"""Retry Triton client calls on transient failures, with exponential backoff and full jitter.

Transient means the server could not take the request *now*: gRPC ``UNAVAILABLE`` (a full
queue, a server starting or draining), HTTP 502/503/504, a refused or reset connection, and a
Python backend stub that died and is being reloaded by the supervisor. A request that failed
for what it *is* (gRPC ``INVALID_ARGUMENT``, HTTP 400, an unknown model) is never retried:
sending it again cannot succeed and only adds load.

Wire it around any client call::

    from tritonctl.retry import RetryPolicy, call_with_retry

    result = call_with_retry(
        grpc_client.infer, "text_embedding", inputs,
        policy=RetryPolicy(), timeout_keyword="client_timeout",
    )
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


#: The shortest timeout an attempt is given; with less time left, the call gives up instead.
MIN_ATTEMPT_S = 0.05


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry; delays grow ``multiplier``× per attempt up to ``max_backoff``.

    The defaults ride out what ``tritonctl serve`` recovers from without a restart: replacing a
    model whose backend stub died takes 2-10 s on a 2-core VM (the watchdog checks every second,
    Triton loads the new instances, then swaps them in), so a call keeps trying for up to 30 s,
    each attempt bounded by the time left (``call_with_retry(timeout_keyword=...)``). A server
    restart of the whole repository takes longer than that; set ``deadline`` to match.
    """

    attempts: int | None = None  # None: as many as the deadline allows
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    deadline: float | None = 30.0  # seconds for all attempts together; None: no limit

    def __post_init__(self) -> None:
        if self.attempts is None and self.deadline is None:
            raise ValueError("a RetryPolicy needs a number of attempts, a deadline, or both")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The pause before each retry: full jitter, uniform in ``[0, capped backoff]``."""
        rng = rng or random.Random()
        backoff = self.initial_backoff
        retries = 0
        while self.attempts is None or retries < self.attempts - 1:
            yield rng.uniform(0, min(backoff, self.max_backoff))
            backoff *= self.multiplier
            retries += 1


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
    timeout_keyword: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    **kwargs: object,
) -> T:
    """``function(*args, **kwargs)``, retried on transient errors; others are raised at once.

    With ``timeout_keyword`` (e.g. ``"client_timeout"`` for ``tritonclient.grpc``), each attempt
    gets the time left before the policy's deadline as that argument, so that no attempt can
    outlive the deadline.
    """
    policy = policy or RetryPolicy()
    started = clock()
    delays = policy.delays(rng)
    attempt = 0

    def left() -> float | None:
        return None if policy.deadline is None else policy.deadline - (clock() - started)

    while True:
        attempt += 1
        call_kwargs = kwargs
        remaining = left()
        if timeout_keyword is not None and remaining is not None:
            call_kwargs = {**kwargs, timeout_keyword: max(remaining, MIN_ATTEMPT_S)}
        try:
            return function(*args, **call_kwargs)
        except Exception as error:
            if not is_retryable(error):
                raise
            delay = next(delays, None)
            remaining = left()
            if delay is None or (remaining is not None and remaining - delay < MIN_ATTEMPT_S):
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
