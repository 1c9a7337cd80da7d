"""The circuit breaker per plugin + provider around each model operation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from brickwork.contracts.clock import Clock
from brickwork.policies.breaker import CircuitBreaker
from brickwork.policies.model.base import Ended, Item, Model, ModelCall, ModelRun, WrapperModel
from brickwork.state.base import BreakerPermit

__all__ = ["BreakerModel"]


@dataclass(slots=True)
class _Pass:
    permit: BreakerPermit
    opened: float
    latency: float | None = None


class BreakerModel(WrapperModel):
    """An open breaker refuses before anything is sent (``circuit_open``; a fallback
    chain moves on). The latency it judges is the time to the first item (a long
    stream is no slow model); how the items ended is its outcome, and a reader that
    stopped early is no failure."""

    def __init__(self, inner: Model, *, breaker: CircuitBreaker, clock: Clock) -> None:
        super().__init__(inner)
        self.breaker = breaker
        self.clock = clock

    async def enter(self, call: ModelCall, run: ModelRun) -> _Pass:
        return _Pass(await self.breaker.acquire(), self.clock.now())

    async def first(
        self, call: ModelCall, run: ModelRun, state: _Pass
    ) -> tuple[AsyncIterator[Item], Item | None]:
        opened = await super().first(call, run, state)
        state.latency = self.clock.now() - state.opened
        return opened

    async def exit(self, call: ModelCall, run: ModelRun, state: _Pass, ended: Ended) -> None:
        await self.breaker.record(state.permit, state.opened, ended.error, latency=state.latency)

    def __repr__(self) -> str:
        return f"BreakerModel({self.breaker.key!r})"
