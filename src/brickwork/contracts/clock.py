"""The clock every time-dependent part takes as a dependency."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

__all__ = ["Clock"]


class Clock(Protocol):
    """Monotonic time, wall time, sleeping and timeouts.

    Passing one in (rather than calling :mod:`time` directly) lets tests drive
    every policy with :class:`brickwork.testing.FakeClock` and exact numbers.
    """

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
