"""In-process state: the default for one machine.

Every operation runs to completion under one lock without awaiting, so it is
atomic for coroutines on the event loop and for threads alike.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from brickwork.contracts.policy import BreakerPolicy
from brickwork.state.algorithms import BreakerMachine, SlidingLog
from brickwork.state.base import (
    BreakerMode,
    BreakerOutcome,
    BreakerPermit,
    BreakerSnapshot,
    Reservation,
    WindowGrant,
    WindowItem,
)

__all__ = ["MemoryState"]


@dataclass
class _Budget:
    expires_at: float
    used: float = 0.0
    reserved: dict[str, float] = field(default_factory=dict)


class MemoryState:
    """The :class:`~brickwork.state.base.StateBackend` for a single process.

    Args:
        max_cache_entries: least recently used entries are dropped past this, per
            kind of entry: the part of the key before its first ``:`` (``cache:``
            for responses, ``idem:`` for the gateway's idempotent replies), so a
            burst of one kind never evicts the other.
    """

    def __init__(self, *, max_cache_entries: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._windows: dict[str, SlidingLog] = {}
        self._breakers: dict[str, BreakerMachine] = {}
        #: kind (the key's part before its first ":") → its entries, least recent first
        self._cache: dict[str, OrderedDict[str, tuple[float, bytes]]] = {}
        self._max_cache = max_cache_entries
        self._budgets: dict[str, _Budget] = {}

    # --- sliding windows -------------------------------------------------------

    async def window_acquire(self, items: Sequence[WindowItem], *, window: float, now: float) -> WindowGrant:
        with self._lock:
            logs = []
            full: list[tuple[str, float | None]] = []
            for item in items:
                log = self._windows.setdefault(item.key, SlidingLog())
                log.expire(now, window)
                if log.fits(item.amount, item.limit):
                    logs.append((log, item.amount))
                else:
                    full.append((item.key, log.retry_after(item.amount, item.limit, now, window)))
            if full:
                # Every full window must have room again before a retry can pass.
                key, wait = max(full, key=lambda kw: math.inf if kw[1] is None else kw[1])
                return WindowGrant(False, key=key, retry_after=wait)
            entry = f"w{next(self._ids)}"
            for log, amount in logs:
                log.add(now, amount, entry)
            return WindowGrant(True, entry=entry)

    async def window_release(self, keys: Sequence[str], entry: str) -> None:
        with self._lock:
            for key in keys:
                log = self._windows.get(key)
                if log is not None:
                    log.remove(entry)

    async def window_adjust(self, key: str, entry: str, amount: float) -> None:
        with self._lock:
            log = self._windows.get(key)
            if log is not None:
                log.adjust(entry, amount)

    # --- circuit breakers ------------------------------------------------------

    async def breaker_acquire(self, key: str, policy: BreakerPolicy, *, now: float) -> BreakerPermit:
        with self._lock:
            return self._breakers.setdefault(key, BreakerMachine()).acquire(now, policy)

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
        with self._lock:
            machine = self._breakers.setdefault(key, BreakerMachine())
            return machine.record(now, policy, outcome, latency, permit.generation)

    async def breaker_snapshot(self, key: str, policy: BreakerPolicy, *, now: float) -> BreakerSnapshot:
        with self._lock:
            return self._breakers.setdefault(key, BreakerMachine()).snapshot(now, policy)

    # --- cache -----------------------------------------------------------------

    async def cache_get(self, key: str, *, now: float) -> bytes | None:
        with self._lock:
            entries = self._cache.get(_kind(key))
            hit = None if entries is None else entries.get(key)
            if entries is None or hit is None:
                return None
            if hit[0] <= now:
                del entries[key]
                return None
            entries.move_to_end(key)
            return hit[1]

    async def cache_set(self, key: str, value: bytes, *, ttl: float, now: float) -> None:
        with self._lock:
            entries = self._cache.setdefault(_kind(key), OrderedDict())
            entries[key] = (now + ttl, value)
            entries.move_to_end(key)
            while len(entries) > self._max_cache:
                entries.popitem(last=False)

    # --- budgets ---------------------------------------------------------------

    def _budget(self, key: str, ttl: float, now: float) -> _Budget:
        budget = self._budgets.get(key)
        if budget is None or budget.expires_at <= now:
            budget = self._budgets[key] = _Budget(expires_at=now + ttl)
        return budget

    async def reserve(self, key: str, amount: float, *, limit: float, ttl: float, now: float) -> Reservation:
        with self._lock:
            budget = self._budget(key, ttl, now)
            used = budget.used + sum(budget.reserved.values())
            if used + amount > limit + 1e-12:
                return Reservation(False, "", used, limit)
            rid = f"r{next(self._ids)}"
            budget.reserved[rid] = amount
            return Reservation(True, rid, used + amount, limit)

    async def settle(self, key: str, reservation: str, actual: float, *, now: float) -> None:
        with self._lock:
            budget = self._budgets.get(key)
            if budget is None:
                return
            if budget.reserved.pop(reservation, None) is None:
                return  # settled already (a retried call): count it once
            budget.used += actual

    async def aclose(self) -> None:
        return None


def _kind(key: str) -> str:
    """A cache key's kind: its part before the first ``:`` (none: ``""``)."""
    head, colon, _ = key.partition(":")
    return head if colon else ""
