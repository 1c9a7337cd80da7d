"""Retry with exponential backoff and full jitter, only on retryable errors."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import BrickworkError, RetriesExhaustedError
from brickwork.contracts.policy import RetryPolicy
from brickwork.policies.timeout import Deadline

__all__ = ["Retry", "backoff"]

T = TypeVar("T")


def backoff(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max_delay, base · 2^(attempt-1))]."""
    cap = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
    return rng.uniform(0.0, cap)


class Retry:
    """Call a function again while it fails with a retryable error.

    Stops at ``max_attempts``, at the deadline, or when a ``Retry-After`` is longer
    than ``max_retry_after``. A non-retryable error is raised at once, unchanged.
    """

    def __init__(self, policy: RetryPolicy, clock: Clock, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.clock = clock
        self.rng = rng or random.Random()

    async def call(self, fn: Callable[[int], Awaitable[T]], *, deadline: Deadline | None = None) -> T:
        """Run ``fn(attempt)`` (attempt counts from 1) under this policy."""
        attempt = 1
        while True:
            try:
                return await fn(attempt)
            except BrickworkError as exc:
                delay = self.delay_after(exc, attempt, deadline)
            await self.clock.sleep(delay)
            attempt += 1

    def delay_after(self, exc: BrickworkError, attempt: int, deadline: Deadline | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` after ``exc``; raises instead
        when there is none: ``exc`` itself if not retryable or after one attempt, else
        :class:`RetriesExhaustedError`."""
        if not exc.retryable:
            raise exc
        delay = self._delay(exc, attempt)
        last_attempt = attempt >= self.policy.max_attempts
        too_late = delay is None or (deadline is not None and delay >= deadline.remaining())
        if last_attempt or too_late:
            if attempt == 1:
                raise exc
            raise RetriesExhaustedError(
                f"gave up after {attempt} attempts: {exc.message}",
                attempts=attempt,
                plugin=exc.plugin,
                retry_after=exc.retry_after,
                details={"last_error": exc.to_dict()},
            ) from exc
        assert delay is not None
        return delay

    def _delay(self, exc: BrickworkError, attempt: int) -> float | None:
        delay = backoff(self.policy, attempt, self.rng)
        if self.policy.respect_retry_after and exc.retry_after is not None:
            if exc.retry_after > self.policy.max_retry_after:
                return None
            delay = max(delay, exc.retry_after)
        return delay
