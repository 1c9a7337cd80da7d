"""The per-model worker: one job at a time, first come first served, cancellable,
with its queue visible. No model here: jobs are plain functions."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from brickwork.contracts.errors import ProviderUnavailableError
from brickwork.providers.local import SerialWorker


async def wait_until(condition: object, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def test_jobs_run_one_at_a_time_in_submission_order() -> None:
    worker = SerialWorker("test")
    active = 0
    overlap = False
    order: list[int] = []
    threads: set[int] = set()
    lock = threading.Lock()

    def job(n: int) -> int:
        nonlocal active, overlap
        with lock:
            active += 1
            overlap = overlap or active > 1
        threads.add(threading.get_ident())
        time.sleep(0.01)
        order.append(n)
        with lock:
            active -= 1
        return n * n

    tasks = [asyncio.create_task(worker.run(lambda _c, n=n: job(n))) for n in range(8)]
    await asyncio.sleep(0.005)
    seen = worker.stats()
    assert seen.running == 1
    assert seen.waiting >= 5

    assert await asyncio.gather(*tasks) == [n * n for n in range(8)]
    assert order == list(range(8))
    assert not overlap
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    stats = worker.stats()
    assert (stats.waiting, stats.running, stats.completed, stats.cancelled) == (0, 0, 8, 0)
    worker.close()


async def test_an_exception_reaches_its_caller_and_the_worker_goes_on() -> None:
    worker = SerialWorker("test")

    def boom(_cancel: threading.Event) -> int:
        raise ValueError("bad job")

    with pytest.raises(ValueError, match="bad job"):
        await worker.run(boom)
    assert await worker.run(lambda _c: 42) == 42
    worker.close()


async def test_cancelling_a_queued_call_drops_it_and_a_running_one_is_asked_to_stop() -> None:
    worker = SerialWorker("test")
    started = threading.Event()
    ran: list[str] = []

    def long(cancel: threading.Event) -> str:
        started.set()
        for _ in range(500):  # 5 s unless cancelled
            if cancel.wait(0.01):
                ran.append("stopped")
                return "stopped"
        ran.append("finished")
        return "finished"

    first = asyncio.create_task(worker.run(long))
    second = asyncio.create_task(worker.run(lambda _c: ran.append("second")))
    await wait_until(started.is_set)
    await wait_until(lambda: worker.waiting == 1)

    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert worker.waiting == 0  # dropped at once, not when its turn comes

    began = time.monotonic()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await wait_until(lambda: worker.running == 0)
    assert time.monotonic() - began < 1.0
    assert ran == ["stopped"]  # the dropped job never ran
    assert worker.stats().cancelled == 2
    assert await worker.run(lambda _c: "free") == "free"
    worker.close()


async def test_close_refuses_new_calls_and_fails_queued_ones() -> None:
    worker = SerialWorker("test")
    gate = threading.Event()

    def blocked(cancel: threading.Event) -> str:
        gate.wait(5)
        return "done"

    running = asyncio.create_task(worker.run(blocked))
    queued = asyncio.create_task(worker.run(lambda _c: "never"))
    await wait_until(lambda: worker.waiting == 1)

    closing = asyncio.create_task(asyncio.to_thread(worker.close, 5.0))
    await wait_until(lambda: worker.waiting == 0)
    gate.set()
    assert await closing is True
    assert await running == "done"
    with pytest.raises(ProviderUnavailableError, match="closed before this call ran"):
        await queued
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await worker.run(lambda _c: "late")


def test_jobs_from_different_event_loops_share_one_queue() -> None:
    worker = SerialWorker("test")
    assert asyncio.run(worker.run(lambda _c: 1)) == 1
    assert asyncio.run(worker.run(lambda _c: 2)) == 2
    assert worker.stats().completed == 2
    worker.close()
