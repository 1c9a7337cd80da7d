"""The clock every time-dependent part takes as a dependency, and the system's own.

Passing one in (rather than calling :mod:`time` directly) lets tests drive every
policy with :class:`brickwork.testing.FakeClock` and exact numbers;
:class:`SystemClock` is the default wherever none is given.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Monotonic time, wall time, sleeping and timeouts."""

    def now(self) -> float:
        """Monotonic seconds (for windows, deadlines, latency)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for records)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        """Raise :class:`TimeoutError` in the block after ``seconds`` (``None``: never)."""
        ...


class SystemClock:
    """:class:`Clock` on :mod:`time` and the event loop."""

    def now(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(None if seconds is None else max(0.0, seconds))
