"""MemoryState: each operation atomic and exact, as every policy relies on."""

from __future__ import annotations

import asyncio

import pytest

from brickwork.contracts.policy import BreakerPolicy
from brickwork.state import MemoryState, WindowItem
from brickwork.state.algorithms import SlidingLog, p95


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([3.0], 3.0),
        ([float(v) for v in range(1, 21)], 19.0),  # rank ⌈0.95·20⌉ = 19
        ([float(v) for v in range(1, 101)], 95.0),
        ([float(v) for v in range(1, 22)], 20.0),  # rank ⌈19.95⌉ = 20
        ([5.0, 1.0, 3.0], 5.0),
    ],
)
def test_p95_is_nearest_rank(values: list[float], expected: float | None) -> None:
    assert p95(values) == expected


def test_sliding_log_entries_count_for_exactly_one_window() -> None:
    log = SlidingLog()
    log.add(10.0, 3.0, "a")
    log.add(12.0, 2.0, "b")
    log.expire(19.999, 10.0)
    assert log.total == 5.0
    log.expire(20.0, 10.0)
    assert log.total == 2.0
    log.expire(22.0, 10.0)
    assert (log.total, len(log.entries)) == (0.0, 0)


# --- windows -----------------------------------------------------------------


async def test_window_acquire_is_all_or_nothing_across_keys() -> None:
    state = MemoryState()
    items = [WindowItem("req", 1, 5), WindowItem("tok", 40, 100)]
    assert (await state.window_acquire(items, window=60.0, now=0.0)).allowed
    assert (await state.window_acquire(items, window=60.0, now=0.0)).allowed

    refused = await state.window_acquire(
        [WindowItem("req", 1, 5), WindowItem("tok", 40, 100)], window=60.0, now=1.0
    )
    assert not refused.allowed
    assert refused.key == "tok"
    assert refused.entry == ""
    # The refused request did not take a request place: three more fit.
    for _ in range(3):
        assert (await state.window_acquire([WindowItem("req", 1, 5)], window=60.0, now=1.0)).allowed
    assert not (await state.window_acquire([WindowItem("req", 1, 5)], window=60.0, now=1.0)).allowed


async def test_window_retry_after_is_when_enough_expires() -> None:
    state = MemoryState()
    for now, amount in ((0.0, 30), (10.0, 30), (20.0, 30)):
        await state.window_acquire([WindowItem("tok", amount, 100)], window=60.0, now=now)
    grant = await state.window_acquire([WindowItem("tok", 50, 100)], window=60.0, now=30.0)
    # 90 in the window; 50 more needs 40 freed: the first two entries, gone at t=70.
    assert (grant.allowed, grant.retry_after) == (False, 40.0)
    assert not (await state.window_acquire([WindowItem("tok", 50, 100)], window=60.0, now=69.9)).allowed
    assert (await state.window_acquire([WindowItem("tok", 50, 100)], window=60.0, now=70.0)).allowed


async def test_window_retry_after_is_none_when_it_can_never_fit() -> None:
    state = MemoryState()
    grant = await state.window_acquire(
        [WindowItem("req", 1, 5), WindowItem("tok", 101, 100)], window=60.0, now=0.0
    )
    assert (grant.allowed, grant.key, grant.retry_after) == (False, "tok", None)


async def test_window_release_and_adjust_touch_only_their_entry() -> None:
    state = MemoryState()
    first = await state.window_acquire(
        [WindowItem("r", 1, 2), WindowItem("t", 50, 100)], window=60.0, now=0.0
    )
    second = await state.window_acquire(
        [WindowItem("r", 1, 2), WindowItem("t", 50, 100)], window=60.0, now=0.0
    )
    await state.window_release(["r", "t"], first.entry)
    await state.window_release(["r", "t"], first.entry)  # twice: no double refund
    await state.window_adjust("t", second.entry, 80)
    assert not (await state.window_acquire([WindowItem("t", 21, 100)], window=60.0, now=0.0)).allowed
    assert (
        await state.window_acquire([WindowItem("r", 1, 2), WindowItem("t", 20, 100)], window=60.0, now=0.0)
    ).allowed
    assert not (await state.window_acquire([WindowItem("r", 1, 2)], window=60.0, now=0.0)).allowed


async def test_concurrent_acquires_never_pass_the_limit() -> None:
    state = MemoryState()

    async def one() -> bool:
        await asyncio.sleep(0)
        return (await state.window_acquire([WindowItem("k", 1, 7)], window=60.0, now=0.0)).allowed

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert sum(results) == 7


# --- cache -------------------------------------------------------------------


async def test_cache_expires_at_its_ttl() -> None:
    state = MemoryState()
    await state.cache_set("k", b"v", ttl=10.0, now=100.0)
    assert await state.cache_get("k", now=109.999) == b"v"
    assert await state.cache_get("k", now=110.0) is None
    assert await state.cache_get("missing", now=0.0) is None


async def test_cache_drops_the_least_recently_used_past_its_size() -> None:
    state = MemoryState(max_cache_entries=2)
    await state.cache_set("a", b"1", ttl=60.0, now=0.0)
    await state.cache_set("b", b"2", ttl=60.0, now=0.0)
    assert await state.cache_get("a", now=1.0) == b"1"  # "a" is now the most recent
    await state.cache_set("c", b"3", ttl=60.0, now=1.0)
    assert await state.cache_get("b", now=1.0) is None
    assert await state.cache_get("a", now=1.0) == b"1"
    assert await state.cache_get("c", now=1.0) == b"3"


async def test_one_kind_of_entry_never_evicts_another() -> None:
    # The gateway's idempotent replies ("idem:") must outlive a burst of cached
    # responses ("cache:"): each kind has its own least-recently-used bound.
    state = MemoryState(max_cache_entries=2)
    await state.cache_set("idem:first", b"answer", ttl=60.0, now=0.0)
    for n in range(5):
        await state.cache_set(f"cache:{n}", b"x", ttl=60.0, now=0.0)
    assert await state.cache_get("idem:first", now=1.0) == b"answer"
    assert [await state.cache_get(f"cache:{n}", now=1.0) for n in range(5)] == [None, None, None, b"x", b"x"]


# --- budgets -----------------------------------------------------------------


async def test_reserve_refuses_past_the_limit_and_reports_what_is_used() -> None:
    state = MemoryState()
    first = await state.reserve("b", 0.7, limit=1.0, ttl=60.0, now=0.0)
    assert (first.allowed, first.used, first.limit) == (True, 0.7, 1.0)
    refused = await state.reserve("b", 0.4, limit=1.0, ttl=60.0, now=0.0)
    assert (refused.allowed, refused.id, refused.used) == (False, "", 0.7)
    await state.settle("b", first.id, 0.1, now=1.0)
    assert (await state.reserve("b", 0.9, limit=1.0, ttl=60.0, now=1.0)).allowed


async def test_reserve_starts_over_when_the_budget_expires() -> None:
    state = MemoryState()
    hold = await state.reserve("b", 1.0, limit=1.0, ttl=60.0, now=0.0)
    await state.settle("b", hold.id, 1.0, now=1.0)
    assert not (await state.reserve("b", 0.5, limit=1.0, ttl=60.0, now=59.9)).allowed
    assert (await state.reserve("b", 0.5, limit=1.0, ttl=60.0, now=60.0)).allowed


async def test_settle_of_an_unknown_budget_or_reservation_changes_nothing() -> None:
    state = MemoryState()
    await state.settle("nothing-here", "r1", 5.0, now=0.0)
    await state.reserve("b", 0.5, limit=1.0, ttl=60.0, now=0.0)
    await state.settle("b", "r-unknown", 5.0, now=0.0)
    assert (await state.reserve("b", 0.5, limit=1.0, ttl=60.0, now=0.0)).allowed


# --- breakers and counters ------------------------------------------------------


async def test_breakers_are_separate_per_key() -> None:
    state = MemoryState()
    policy = BreakerPolicy(min_calls=1, failure_ratio=1.0, open_for=30.0)
    permit = await state.breaker_acquire("a", policy, now=0.0)
    mode = await state.breaker_record("a", policy, now=0.0, outcome="failure", latency=0.1, permit=permit)
    assert mode == "open"
    assert not (await state.breaker_acquire("a", policy, now=1.0)).allowed
    assert (await state.breaker_acquire("b", policy, now=1.0)).allowed
    snap = await state.breaker_snapshot("a", policy, now=10.0)
    assert (snap.mode, snap.retry_after) == ("open", 20.0)


# --- waiting exactly retry_after is enough --------------------------------------------

# Found by a search: with these times, now + ((first + 60) - now) < first + 60 in
# floating point, so a retry_after computed as a plain difference lands one ulp early.
FIRST, LATER = 0.8130848008845462, 18.592962537384697


async def test_window_retry_after_survives_float_rounding() -> None:
    state = MemoryState()
    item = [WindowItem("k", 1, 1)]
    assert (await state.window_acquire(item, window=60.0, now=FIRST)).allowed
    grant = await state.window_acquire(item, window=60.0, now=LATER)
    assert grant.retry_after is not None
    assert grant.retry_after == pytest.approx(FIRST + 60.0 - LATER)
    assert (await state.window_acquire(item, window=60.0, now=LATER + grant.retry_after)).allowed


async def test_breaker_retry_after_survives_float_rounding() -> None:
    state = MemoryState()
    policy = BreakerPolicy(min_calls=1, open_for=60.0)
    permit = await state.breaker_acquire("k", policy, now=FIRST)
    await state.breaker_record("k", policy, now=FIRST, outcome="failure", latency=0.1, permit=permit)
    refused = await state.breaker_acquire("k", policy, now=LATER)
    assert refused.retry_after is not None
    assert refused.retry_after == pytest.approx(FIRST + 60.0 - LATER)
    trial = await state.breaker_acquire("k", policy, now=LATER + refused.retry_after)
    assert (trial.allowed, trial.mode) == (True, "half_open")
