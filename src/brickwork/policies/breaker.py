"""Circuit breaker around a call, its state kept in the shared state backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import (
    BrickworkError,
    CircuitOpenError,
    ContextLengthExceededError,
    DeadlineExceededError,
    FallbacksExhaustedError,
    OutputValidationError,
    PluginFailedError,
    ProviderError,
    ProviderRejectedError,
    ProviderUnsupportedError,
    RetriesExhaustedError,
)
from brickwork.contracts.policy import BreakerPolicy
from brickwork.state.base import BreakerMode, BreakerOutcome, BreakerPermit, StateBackend

__all__ = ["CircuitBreaker", "outcome_of"]

T = TypeVar("T")

#: Errors that say the protected thing is unhealthy. Anything else a Brickwork
#: error stands for (bad input, a quota, a breaker further in) says nothing about it.
_FAILURES: tuple[type[BrickworkError], ...] = (
    ProviderError,
    DeadlineExceededError,
    RetriesExhaustedError,
    PluginFailedError,
    OutputValidationError,
    FallbacksExhaustedError,
)


#: Provider errors the request caused, not the provider's health.
_CALLERS_FAULT: tuple[type[BrickworkError], ...] = (
    ContextLengthExceededError,
    ProviderRejectedError,
    ProviderUnsupportedError,
)


def outcome_of(exc: BaseException | None) -> BreakerOutcome:
    """How a call's ending counts for the breaker."""
    if exc is None:
        return "success"
    if isinstance(exc, asyncio.CancelledError):
        return "ignored"
    if isinstance(exc, _CALLERS_FAULT):
        return "ignored"  # one tenant's too-long input must not open it for everyone
    if isinstance(exc, BrickworkError):
        return "failure" if isinstance(exc, _FAILURES) else "ignored"
    return "failure"  # an unexpected exception, or a raw TimeoutError


class CircuitBreaker:
    """One breaker, named by ``key`` (e.g. ``plugin:sentiment@1.0.0`` or
    ``model:sentiment@2.0.0:local:qwen``), shared by every replica using the same state.
    """

    def __init__(
        self, key: str, policy: BreakerPolicy, state: StateBackend, clock: Clock, *, label: str
    ) -> None:
        self.key = key
        self.policy = policy
        self.state = state
        self.clock = clock
        self.label = label

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        # (acquire(), written out: one coroutine less on every request)
        permit = await self.state.breaker_acquire(self.key, self.policy, now=self.clock.time())
        if not permit.allowed:
            raise self._refusal(permit)
        started = self.clock.now()
        error: BaseException | None = None
        try:
            return await fn()
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self.record(permit, started, error)

    async def acquire(self) -> BreakerPermit:
        """A permit for one call, for what :meth:`call` cannot wrap (a stream being
        read); raises :class:`CircuitOpenError` when the breaker refuses. Pair it
        with :meth:`record`."""
        permit = await self.state.breaker_acquire(self.key, self.policy, now=self.clock.time())
        if not permit.allowed:
            raise self._refusal(permit)
        return permit

    def record(
        self,
        permit: BreakerPermit,
        started: float,
        error: BaseException | None,
        *,
        latency: float | None = None,
    ) -> Awaitable[BreakerMode]:
        """Count how the call of ``permit`` ended (``error``: ``None`` for success),
        ``started`` at ``clock.now()``; await it. Recorded even while being cancelled.

        ``latency``: what the latency objective judges, if not the time since
        ``started`` (a stream's is the time to its first chunk).
        """
        recording = self.state.breaker_record(
            self.key,
            self.policy,
            now=self.clock.time(),
            outcome=outcome_of(error),
            latency=self.clock.now() - started if latency is None else latency,
            permit=permit,
        )
        if isinstance(error, asyncio.CancelledError):
            return asyncio.shield(recording)
        return recording  # no extra task on the hot path

    def _refusal(self, permit: BreakerPermit) -> CircuitOpenError:
        return CircuitOpenError(
            f"circuit for {self.label} is {permit.mode.replace('_', '-')}",
            plugin=self.label,
            retry_after=permit.retry_after,
        )
