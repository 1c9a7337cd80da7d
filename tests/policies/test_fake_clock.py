"""FakeClock: the clock every policy test stands on, so it must keep exact time."""

from __future__ import annotations

import asyncio

import pytest

from brickwork.testing import FakeClock


def test_advance_fires_timers_in_time_order_at_their_own_moment() -> None:
    clock = FakeClock(start=100.0)
    fired: list[tuple[str, float]] = []
    clock.call_at(103.0, lambda: fired.append(("c", clock.now())))
    clock.call_at(101.0, lambda: fired.append(("a", clock.now())))
    clock.call_at(102.0, lambda: fired.append(("b", clock.now())))

    clock.advance(2.5)

    assert fired == [("a", 101.0), ("b", 102.0)]
    assert clock.now() == 102.5
    clock.advance(0.5)
    assert fired[-1] == ("c", 103.0)


def test_time_moves_with_now_and_never_backwards() -> None:
    clock = FakeClock(start=10.0)
    wall = clock.time()
    clock.advance(1.5)
    assert clock.now() == 11.5
    assert clock.time() == wall + 1.5
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-0.1)
    assert clock.now() == 11.5


async def test_sleep_waits_for_advance_and_is_recorded() -> None:
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(5.0))
    await clock.settle()
    assert not task.done()

    clock.advance(4.999)
    await clock.settle()
    assert not task.done()

    clock.advance(0.001)
    await clock.settle()
    assert task.done()
    assert clock.sleeps == [5.0]


async def test_autojump_sleep_moves_time_by_exactly_its_length() -> None:
    clock = FakeClock(start=0.0, autojump=True)
    await clock.sleep(1.25)
    await clock.sleep(0.0)
    await clock.sleep(2.0)
    assert clock.now() == 3.25
    assert clock.sleeps == [1.25, 0.0, 2.0]


async def test_timeout_fires_at_its_fake_deadline_only() -> None:
    clock = FakeClock()

    async def body() -> None:
        async with clock.timeout(5.0):
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await clock.settle()
    clock.advance(4.999)
    await clock.settle()
    assert not task.done()

    clock.advance(0.001)
    await clock.settle()
    with pytest.raises(TimeoutError):
        await task


async def test_timeout_none_never_fires() -> None:
    clock = FakeClock()
    done = asyncio.Event()

    async def body() -> str:
        async with clock.timeout(None):
            await done.wait()
        return "finished"

    task = asyncio.create_task(body())
    await clock.settle()
    clock.advance(1e9)
    await clock.settle()
    assert not task.done()
    done.set()
    assert await task == "finished"


@pytest.mark.parametrize("seconds", [0.0, -3.0])
async def test_timeout_of_zero_or_less_fires_without_advancing(seconds: float) -> None:
    # Same as asyncio.timeout(0) and SystemClock: an already-spent deadline
    # times out at the next loop iteration, even if nobody moves fake time.
    clock = FakeClock()

    async def body() -> None:
        async with clock.timeout(seconds):
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await clock.settle()
    assert task.done()
    with pytest.raises(TimeoutError):
        task.result()


async def test_timeout_does_not_fire_after_its_block_exits() -> None:
    clock = FakeClock()
    async with clock.timeout(1.0):
        pass
    clock.advance(2.0)
    # Would be cancelled here by a leftover timer.
    await clock.settle()
    assert clock.now() == 1002.0


async def test_autojump_timeout_stops_time_at_the_deadline_not_at_the_end_of_the_sleep() -> None:
    clock = FakeClock(start=0.0, autojump=True)
    with pytest.raises(TimeoutError):
        async with clock.timeout(5.0):
            await clock.sleep(100.0)
    assert clock.now() == 5.0


async def test_autojump_wakes_concurrent_sleepers_at_their_own_times() -> None:
    clock = FakeClock(start=0.0, autojump=True)
    woke: dict[str, float] = {}

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke[name] = clock.now()

    await asyncio.gather(sleeper("long", 10.0), sleeper("short", 3.0))
    assert woke == {"short": 3.0, "long": 10.0}


async def test_nested_timeouts_only_the_inner_one_fires() -> None:
    clock = FakeClock(start=0.0, autojump=True)
    async with clock.timeout(10.0):
        with pytest.raises(TimeoutError):
            async with clock.timeout(2.0):
                await clock.sleep(5.0)
        await clock.sleep(1.0)
    assert clock.now() == 3.0


async def test_outside_cancellation_is_not_turned_into_a_timeout() -> None:
    clock = FakeClock()

    async def body() -> None:
        async with clock.timeout(5.0):
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await clock.settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
