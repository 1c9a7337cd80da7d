"""Bulkhead: at most N runs at once, a bounded queue, a queue timeout.

Per process by design: it protects this process's event loop, threads and model
context, which replicas do not share.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import BulkheadFullError, QueueTimeoutError
from brickwork.contracts.policy import BulkheadPolicy

__all__ = ["Bulkhead"]


class Bulkhead:
    """Slots are handed over in FIFO order and always given back, whatever fails.

    Attributes:
        in_flight: slots in use now.
        peak: the most slots ever in use at once.
    """

    def __init__(self, policy: BulkheadPolicy, clock: Clock, *, label: str = "") -> None:
        self.policy = policy
        self.clock = clock
        self.label = label
        self.in_flight = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if needed.

        Raises:
            BulkheadFullError: every slot and every queue place is taken.
            QueueTimeoutError: no slot came within ``queue_timeout``.
        """
        if self.in_flight < self.policy.max_concurrency and not self._waiters:
            self._take()
            return
        if self.queued >= self.policy.max_queue:
            raise BulkheadFullError(
                f"{self.label or 'plugin'} is at its concurrency limit "
                f"({self.policy.max_concurrency} running, {self.policy.max_queue} queued)",
                plugin=self.label or None,
                retry_after=1.0,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with self.clock.timeout(self.policy.queue_timeout):
                await waiter
        except BaseException as exc:
            # A slot handed over just as we gave up must go to the next in line.
            if waiter.done() and not waiter.cancelled():
                self.release()
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise QueueTimeoutError(
                    f"waited {self.policy.queue_timeout:g}s for a slot on {self.label or 'plugin'}",
                    plugin=self.label or None,
                    retry_after=1.0,
                ) from None
            raise
        finally:
            with suppress(ValueError):  # release() may have taken it already
                self._waiters.remove(waiter)

    def _take(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def release(self) -> None:
        """Give a slot back: to the first live waiter, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; in_flight is unchanged
                return
        self.in_flight -= 1
