"""The real clock."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager

__all__ = ["SystemClock"]


class SystemClock:
    """:class:`~brickwork.contracts.clock.Clock` on :mod:`time` and the event loop."""

    def now(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(None if seconds is None else max(0.0, seconds))
