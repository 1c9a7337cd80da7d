"""Bulkhead: a hard concurrency cap, a bounded FIFO queue, and slots never lost."""

from __future__ import annotations

import asyncio

import pytest

from brickwork.contracts.errors import BulkheadFullError, QueueTimeoutError
from brickwork.contracts.policy import BulkheadPolicy
from brickwork.policies.bulkhead import Bulkhead
from brickwork.testing import FakeClock


def make(
    clock: FakeClock, *, max_concurrency: int = 1, max_queue: int = 8, queue_timeout: float = 10.0
) -> Bulkhead:
    policy = BulkheadPolicy(max_concurrency=max_concurrency, max_queue=max_queue, queue_timeout=queue_timeout)
    return Bulkhead(policy, clock, label="chat@1.0.0")


async def test_peak_never_exceeds_max_concurrency_and_everyone_gets_through() -> None:
    clock = FakeClock()
    bulkhead = make(clock, max_concurrency=3, max_queue=10)
    running = 0
    seen_max = 0
    finished: list[int] = []

    async def job(i: int) -> None:
        nonlocal running, seen_max
        async with bulkhead.slot():
            running += 1
            seen_max = max(seen_max, running)
            await clock.sleep(1.0)
            running -= 1
        finished.append(i)

    tasks = [asyncio.create_task(job(i)) for i in range(10)]
    await clock.settle()
    assert (bulkhead.in_flight, bulkhead.queued) == (3, 7)
    for _ in range(4):  # 10 jobs, 3 at a time, 1s each: 4 rounds
        clock.advance(1.0)
        await clock.settle()
    await asyncio.gather(*tasks)

    assert seen_max == 3
    assert bulkhead.peak == 3
    assert sorted(finished) == list(range(10))
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_full_queue_is_refused_at_once() -> None:
    clock = FakeClock()
    bulkhead = make(clock, max_concurrency=1, max_queue=2)
    await bulkhead.acquire()
    waiters = [asyncio.create_task(bulkhead.acquire()) for _ in range(2)]
    await clock.settle()
    assert bulkhead.queued == 2

    with pytest.raises(BulkheadFullError) as info:
        await bulkhead.acquire()
    assert info.value.code == "bulkhead_full"
    assert info.value.retry_after == 1.0
    assert info.value.plugin == "chat@1.0.0"
    assert "1 running, 2 queued" in info.value.message
    assert (bulkhead.in_flight, bulkhead.queued) == (1, 2)

    for _ in range(3):
        bulkhead.release()
        await clock.settle()
    await asyncio.gather(*waiters)
    assert bulkhead.in_flight == 0


async def test_no_queue_means_refused_when_all_slots_are_busy() -> None:
    clock = FakeClock()
    bulkhead = make(clock, max_concurrency=2, max_queue=0)
    await bulkhead.acquire()
    await bulkhead.acquire()
    with pytest.raises(BulkheadFullError):
        await bulkhead.acquire()
    bulkhead.release()
    await bulkhead.acquire()
    assert bulkhead.in_flight == 2


async def test_queue_timeout_on_fake_time() -> None:
    clock = FakeClock()
    bulkhead = make(clock, max_concurrency=1, max_queue=1, queue_timeout=5.0)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await clock.settle()

    clock.advance(4.999)
    await clock.settle()
    assert not waiter.done()
    clock.advance(0.001)
    await clock.settle()

    with pytest.raises(QueueTimeoutError) as info:
        await waiter
    assert info.value.code == "queue_timeout"
    assert "waited 5s" in info.value.message
    assert (bulkhead.in_flight, bulkhead.queued) == (1, 0)
    bulkhead.release()
    assert bulkhead.in_flight == 0
    await bulkhead.acquire()  # the slot is really free
    assert bulkhead.in_flight == 1


async def test_slots_are_handed_over_in_arrival_order() -> None:
    clock = FakeClock()
    bulkhead = make(clock, max_concurrency=1, max_queue=10)
    order: list[int] = []

    async def job(i: int) -> None:
        await bulkhead.acquire()
        order.append(i)

    await bulkhead.acquire()
    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(job(i)))
        await clock.settle()
    for _ in range(5):
        bulkhead.release()
        await clock.settle()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert bulkhead.in_flight == 1  # the last one still holds its slot


async def test_a_newcomer_does_not_jump_a_waiter_being_handed_a_slot() -> None:
    clock = FakeClock()
    bulkhead = make(clock, max_concurrency=1)
    order: list[str] = []

    async def job(name: str) -> None:
        async with bulkhead.slot():
            order.append(name)

    await bulkhead.acquire()
    first = asyncio.create_task(job("queued"))
    await clock.settle()
    bulkhead.release()  # handed to "queued", which has not run yet
    late = asyncio.create_task(job("newcomer"))
    await asyncio.gather(first, late)
    assert order == ["queued", "newcomer"]
    assert bulkhead.peak == 1
    assert bulkhead.in_flight == 0


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    clock = FakeClock()
    bulkhead = make(clock, max_concurrency=1)
    await bulkhead.acquire()
    doomed = asyncio.create_task(bulkhead.acquire())
    await clock.settle()
    heir = asyncio.create_task(bulkhead.acquire())
    await clock.settle()

    bulkhead.release()  # the slot goes to `doomed`...
    doomed.cancel()  # ...which is cancelled before it runs again
    await clock.settle()

    assert doomed.cancelled()
    assert heir.done()
    assert heir.exception() is None
    assert (bulkhead.in_flight, bulkhead.queued) == (1, 0)
    bulkhead.release()
    assert bulkhead.in_flight == 0


async def test_a_waiter_timing_out_as_it_is_handed_a_slot_passes_it_on() -> None:
    clock = FakeClock()
    bulkhead = make(clock, max_concurrency=1, queue_timeout=5.0)
    await bulkhead.acquire()
    late = asyncio.create_task(bulkhead.acquire())
    await clock.settle()
    heir = asyncio.create_task(bulkhead.acquire())
    clock.advance(2.0)
    await clock.settle()

    clock.advance(3.0)  # `late` times out...
    bulkhead.release()  # ...and gets the slot in the same instant
    await clock.settle()

    # Whichever wins, no slot is lost or doubled.
    holders = sum(1 for t in (late, heir) if t.done() and t.exception() is None)
    assert holders == bulkhead.in_flight == 1
    assert isinstance(late.exception(), QueueTimeoutError)
    bulkhead.release()  # the heir's turn ends
    assert bulkhead.in_flight == 0


async def test_in_flight_returns_to_zero_after_errors_timeouts_and_cancellations() -> None:
    clock = FakeClock()
    bulkhead = make(clock, max_concurrency=2, max_queue=3, queue_timeout=5.0)
    outcomes: dict[str, str] = {}
    tasks: dict[str, asyncio.Task[None]] = {}

    async def job(name: str, body: str) -> None:
        try:
            async with bulkhead.slot():
                if body == "error":
                    raise RuntimeError("plugin bug")
                await clock.sleep(10.0 if body == "slow" else 1.0)
        except BaseException as exc:
            outcomes[name] = type(exc).__name__
            raise
        outcomes[name] = "ok"

    async def start(name: str, body: str) -> None:
        tasks[name] = asyncio.create_task(job(name, body))
        await clock.settle()

    await start("slow-1", "slow")  # t=0: these two hold both slots for 10s
    await start("slow-2", "slow")
    await start("queued-cancelled", "fast")
    await start("times-out-1", "fast")
    await start("times-out-2", "fast")
    await start("refused", "fast")  # queue of 3 is full
    tasks["queued-cancelled"].cancel()
    await clock.settle()
    clock.advance(5.0)  # t=5: both remaining waiters time out
    await clock.settle()
    assert (bulkhead.in_flight, bulkhead.queued) == (2, 0)

    await start("error", "error")
    await start("fast", "fast")
    tasks["slow-1"].cancel()  # a holder cancelled mid-run: its slot goes to "error"...
    await clock.settle()  # ...whose failure hands it on to "fast"
    clock.advance(1.0)
    await clock.settle()
    clock.advance(4.0)  # t=10: slow-2 ends
    await clock.settle()

    await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert outcomes == {
        "slow-1": "CancelledError",
        "slow-2": "ok",
        "queued-cancelled": "CancelledError",
        "times-out-1": "QueueTimeoutError",
        "times-out-2": "QueueTimeoutError",
        "refused": "BulkheadFullError",
        "error": "RuntimeError",
        "fast": "ok",
    }
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    assert bulkhead.peak == 2
