"""The state interface: every shared rate window, breaker, cache entry and budget.

Each operation is atomic on its own — check-and-add, reserve/settle — so that a
Redis implementation can do each one in a single round trip (a Lua script) and a
limit of N holds across replicas. No caller ever reads a value and writes it back.

Times passed in are wall-clock seconds from the caller's injected clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from brickwork.contracts.policy import BreakerPolicy

__all__ = [
    "BreakerMode",
    "BreakerOutcome",
    "BreakerPermit",
    "BreakerSnapshot",
    "Reservation",
    "StateBackend",
    "WindowGrant",
    "WindowItem",
]

BreakerMode = Literal["closed", "open", "half_open"]
#: ``ignored``: the call ended for a reason that says nothing about the plugin's
#: health (bad input, cancelled by the caller); a trial slot it held is given back.
BreakerOutcome = Literal["success", "failure", "ignored"]


@dataclass(frozen=True, slots=True)
class WindowItem:
    """Add ``amount`` under ``key`` if the sliding-window sum stays ≤ ``limit``."""

    key: str
    amount: float
    limit: float


@dataclass(frozen=True, slots=True)
class WindowGrant:
    """Result of :meth:`StateBackend.window_acquire`.

    ``entry`` identifies the added entries (to refund or adjust them). When refused,
    ``retry_after`` says when every full window has room again, if nothing else is
    added (``None`` if an amount can never fit), and ``key`` names the full window
    that decides it.
    """

    allowed: bool
    entry: str = ""
    key: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class BreakerPermit:
    """Result of :meth:`StateBackend.breaker_acquire`; hand it back to ``breaker_record``.

    ``generation`` names the breaker period (closed, or one half-open spell) the
    call started in: its outcome counts only while that period lasts.
    """

    allowed: bool
    mode: BreakerMode
    trial: bool = False
    retry_after: float | None = None
    generation: int = 0


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    mode: BreakerMode
    calls: int
    failures: int
    p95: float | None
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class Reservation:
    """Result of :meth:`StateBackend.reserve`: ``id`` is empty when refused."""

    allowed: bool
    id: str
    used: float
    limit: float


class StateBackend(Protocol):
    """Shared state for policies. Implemented by :class:`~brickwork.state.memory.MemoryState`."""

    async def window_acquire(self, items: Sequence[WindowItem], *, window: float, now: float) -> WindowGrant:
        """All or nothing: add every item, or none and say which window is full."""
        ...

    async def window_release(self, keys: Sequence[str], entry: str) -> None:
        """Refund an acquired entry (the request was refused further on)."""
        ...

    async def window_adjust(self, key: str, entry: str, amount: float) -> None:
        """Set the amount of an acquired entry (tokens known after the call)."""
        ...

    async def breaker_acquire(self, key: str, policy: BreakerPolicy, *, now: float) -> BreakerPermit:
        """May a call start? In half-open, hands out exactly ``half_open_trials`` trials."""
        ...

    async def breaker_record(
        self,
        key: str,
        policy: BreakerPolicy,
        *,
        now: float,
        outcome: BreakerOutcome,
        latency: float,
        permit: BreakerPermit,
    ) -> BreakerMode:
        """Record how a permitted call ended; returns the mode after it.

        An outcome from an earlier period than the current one (the breaker opened,
        or reopened, since ``permit`` was given) changes nothing: it was already judged.
        """
        ...

    async def breaker_snapshot(self, key: str, policy: BreakerPolicy, *, now: float) -> BreakerSnapshot: ...

    async def cache_get(self, key: str, *, now: float) -> bytes | None: ...

    async def cache_set(self, key: str, value: bytes, *, ttl: float, now: float) -> None: ...

    async def reserve(self, key: str, amount: float, *, limit: float, ttl: float, now: float) -> Reservation:
        """Reserve ``amount`` if used + reserved + amount ≤ ``limit``."""
        ...

    async def settle(self, key: str, reservation: str, actual: float, *, now: float) -> None:
        """Replace a reservation by what was actually spent (0 to cancel it).

        Idempotent: settling a reservation that is already settled changes nothing.
        """
        ...

    async def aclose(self) -> None: ...
