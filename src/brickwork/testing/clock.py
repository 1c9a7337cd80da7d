"""A clock tests drive by hand: every policy sees exact, repeatable time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

__all__ = ["FakeClock"]


class FakeClock:
    """A :class:`~brickwork.contracts.clock.Clock` whose time moves only when told.

    ``sleep`` and ``timeout`` wait on fake time. Call :meth:`advance` to move it,
    or pass ``autojump=True`` so that each ``sleep`` moves time forward by itself,
    from timer to timer up to its own end (handy for sequential code such as
    retries): a timeout due earlier fires at its own moment and ends the sleep there.

    Attributes:
        sleeps: every duration passed to :meth:`sleep`, in order.
    """

    def __init__(self, start: float = 1_000.0, *, autojump: bool = False) -> None:
        self._now = start
        self._wall_offset = 1_700_000_000.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.autojump = autojump
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), callback))

    def advance(self, seconds: float) -> None:
        """Move time forward, firing due timers in order."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, callback = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            callback()
        self._now = target

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        self.call_at(self._now + seconds, wake)
        if self.autojump:
            await self._jump_until(future)
        await future

    async def _jump_until(self, future: asyncio.Future[None]) -> None:
        # Move from timer to timer rather than straight to our own wake-up, letting
        # ready tasks run before each step: a timeout or another sleeper due earlier
        # then acts at its own moment, and a timeout cancels us here, mid-sleep.
        while not future.done():
            await self.settle()
            if future.done():
                return
            self.advance(max(0.0, self._timers[0][0] - self._now))

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        return _fake_timeout(self, seconds)

    async def settle(self, rounds: int = 20) -> None:
        """Let ready tasks run (several loop iterations) without moving time."""
        for _ in range(rounds):
            await asyncio.sleep(0)


@asynccontextmanager
async def _fake_timeout(clock: FakeClock, seconds: float | None) -> AsyncIterator[None]:
    # Reuse asyncio's own Timeout for correct cancel/uncancel semantics; only the
    # moment it fires comes from fake time.
    async with asyncio.timeout(None) as cm:
        active = True
        loop = asyncio.get_running_loop()
        if seconds is not None and seconds <= 0:
            # Already due, as with asyncio.timeout(0): fires at the next loop
            # iteration, without waiting for anyone to move fake time.
            cm.reschedule(loop.time())
        elif seconds is not None:

            def fire() -> None:
                if active and cm.expired() is False:
                    cm.reschedule(loop.time())

            clock.call_at(clock.now() + seconds, fire)
        try:
            yield
        finally:
            active = False
