"""MemoryState's sliding windows against a reference list of accepted entries.

Two windows are used together, the way the rate limiter uses them: ``req``
(1 per request) and ``tok`` (tokens). The reference model is a plain list;
the window sum at any moment is recomputed from it.
"""

from __future__ import annotations

import math
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from brickwork.state import MemoryState, WindowGrant, WindowItem

T = TypeVar("T")


def now_(coro: Coroutine[Any, Any, T]) -> T:
    """Run a MemoryState operation, which must complete without suspending."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("a MemoryState operation suspended: it would not be atomic")


@dataclass
class Entry:
    id: str
    time: float
    amounts: dict[str, int]
    released: bool = False


class WindowComparison(RuleBasedStateMachine):
    entries: list[Entry]

    @initialize(
        window=st.sampled_from([1.0, 10.0, 60.0]),
        req_limit=st.integers(1, 4),
        tok_limit=st.integers(5, 50),
        start=st.sampled_from([0.0, 0.1, 1_700_000_000.0]),
    )
    def setup(self, window: float, req_limit: int, tok_limit: int, start: float) -> None:
        self.window = window
        self.limits = {"req": req_limit, "tok": tok_limit}
        self.now = start
        self.state = MemoryState()
        self.entries = []
        self.retry: tuple[float, list[WindowItem]] | None = None

    # --- the reference ---------------------------------------------------------

    def used(self, key: str, at: float) -> int:
        return sum(
            e.amounts.get(key, 0) for e in self.entries if not e.released and e.time + self.window > at
        )

    def room(self, items: list[WindowItem], at: float) -> bool:
        return all(self.used(i.key, at) + i.amount <= i.limit for i in items)

    # --- rules -----------------------------------------------------------------

    @rule(dt=st.sampled_from(["window", "half", "almost", "zero"]) | st.floats(0.0, 120.0, allow_nan=False))
    def advance(self, dt: float | str) -> None:
        step = {"window": self.window, "half": self.window / 2, "almost": self.window * 0.999, "zero": 0.0}
        self.now += step[dt] if isinstance(dt, str) else dt
        self.retry = None

    @rule(requests=st.booleans(), tokens=st.none() | st.integers(0, 60))
    def acquire(self, requests: bool, tokens: int | None) -> None:
        items = []
        if requests or tokens is None:
            items.append(WindowItem("req", 1, self.limits["req"]))
        if tokens is not None:
            items.append(WindowItem("tok", tokens, self.limits["tok"]))
        self.retry = None
        grant = self.attempt(items)
        if grant.allowed:
            return
        if any(i.amount > i.limit for i in items):
            assert grant.retry_after is None
            return
        assert grant.retry_after is not None
        assert grant.retry_after >= 0
        assert grant.key in {i.key for i in items}
        assert not self.room([i for i in items if i.key == grant.key], self.now)
        retry_at = self.now + grant.retry_after
        assert self.room(items, retry_at), "waiting retry_after is not enough"
        earlier = retry_at - 4 * math.ulp(retry_at)
        if earlier > self.now:
            assert not self.room(items, earlier), "retry_after is longer than needed"
        self.retry = (retry_at, items)

    @precondition(lambda self: self.retry is not None)
    @rule()
    def retry_exactly_when_told(self) -> None:
        assert self.retry is not None
        self.now, items = self.retry
        self.retry = None
        assert self.attempt(items).allowed

    @precondition(lambda self: any(not e.released for e in self.entries))
    @rule(pick=st.integers(0, 1_000))
    def release(self, pick: int) -> None:
        live = [e for e in self.entries if not e.released]
        entry = live[pick % len(live)]
        now_(self.state.window_release(list(entry.amounts), entry.id))
        entry.released = True
        self.retry = None

    def attempt(self, items: list[WindowItem]) -> WindowGrant:
        expected = self.room(items, self.now)
        grant = now_(self.state.window_acquire(items, window=self.window, now=self.now))
        assert grant.allowed == expected
        if grant.allowed:
            assert grant.entry not in {e.id for e in self.entries}
            self.entries.append(Entry(grant.entry, self.now, {i.key: int(i.amount) for i in items}))
        else:
            assert grant.entry == ""
        return grant

    # --- what a user relies on ------------------------------------------------------

    @invariant()
    def no_window_of_length_w_holds_more_than_the_limit(self) -> None:
        if not hasattr(self, "state"):
            return
        kept = [e for e in self.entries if not e.released]
        for key, limit in self.limits.items():
            for first in kept:
                inside = sum(
                    e.amounts.get(key, 0) for e in kept if first.time <= e.time < first.time + self.window
                )
                assert inside <= limit, f"{inside} {key} accepted within one window of {self.window}s"


WindowComparison.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_windows_match_the_reference = WindowComparison.TestCase


def test_no_double_burst_at_a_window_edge() -> None:
    state = MemoryState()
    item = [WindowItem("req", 1, 3)]
    accepted = [now_(state.window_acquire(item, window=10.0, now=9.5)).allowed for _ in range(4)]
    assert accepted == [True, True, True, False]
    # Just past the edge where a fixed window would reset: still full.
    assert not now_(state.window_acquire(item, window=10.0, now=10.0)).allowed
    assert not now_(state.window_acquire(item, window=10.0, now=19.25)).allowed
    assert now_(state.window_acquire(item, window=10.0, now=19.5)).allowed
