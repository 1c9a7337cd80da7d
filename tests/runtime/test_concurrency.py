"""The concurrency promises, with exact counts: the bulkhead bound, slots always
given back, refused requests costing no quota, and breaker trials counted exactly."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import pytest
from pydantic import Field

from brickwork.contracts.errors import (
    BrickworkError,
    BulkheadFullError,
    CircuitOpenError,
    InputValidationError,
    PluginFailedError,
    QueueTimeoutError,
    RateLimitExceededError,
)
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import (
    BulkheadPolicy,
    Policy,
    TimeoutPolicy,
)
from brickwork.contracts.request import Envelope
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.testing import FakeClock

Build = Callable[..., Orchestrator]


class JobIn(PluginInput):
    mode: str = Field(default="ok", pattern="^(ok|fail|hang|sleep)$")
    n: int = 0


class JobOut(PluginOutput):
    n: int


class Worker(Plugin[JobIn, JobOut]):
    """Measures its own concurrency; waits on ``gate`` (or fake time) before answering."""

    name = "worker"
    version = "1.0.0"
    description = "Does slow work on request."
    policy = Policy(
        bulkhead=BulkheadPolicy(max_concurrency=10, max_queue=500, queue_timeout=1_000),
        breaker=None,
        retry=None,
        timeout=TimeoutPolicy(total=5),
    )

    def __init__(self) -> None:
        self.clock: FakeClock | None = None  # for "sleep" jobs
        self.gate = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.started = 0

    async def run(self, input: JobIn, ctx: Context) -> JobOut:
        self.started += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if input.mode == "sleep":
                assert self.clock is not None
                await self.clock.sleep(1)
            elif input.mode == "hang":
                await asyncio.Event().wait()
            else:
                await self.gate.wait()
                await asyncio.sleep(0)  # interleave with the others still running
            if input.mode == "fail":
                raise ValueError("injected failure")
            return JobOut(n=input.n)
        finally:
            self.running -= 1


def worker_class(**policy: Any) -> type[Worker]:
    return type("CustomWorker", (Worker,), {"policy": Worker.policy.merged(policy)})


def plugin(orch: Orchestrator) -> Worker:
    instance = orch.registry.resolve("worker").instance
    assert isinstance(instance, Worker)
    return instance


async def gather(tasks: list[asyncio.Task[Envelope]]) -> list[Envelope | BaseException]:
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def job(mode: str = "ok", n: int = 0, **extra: Any) -> dict[str, Any]:
    return {"plugin": "worker", "input": {"mode": mode, "n": n}, **extra}


# --- the bulkhead bound --------------------------------------------------------------


async def test_200_requests_with_room_to_queue_never_run_more_than_10_at_once(
    build: Build, clock: FakeClock
) -> None:
    orch = build(Worker)
    worker = plugin(orch)
    bulkhead = orch.bulkhead(orch.registry.resolve("worker"))
    assert bulkhead is not None

    tasks = [asyncio.create_task(orch.handle(job(n=i))) for i in range(200)]
    await clock.settle(50)
    assert (worker.running, bulkhead.in_flight, bulkhead.queued) == (10, 10, 190)

    worker.gate.set()
    results = await gather(tasks)

    assert all(isinstance(r, Envelope) for r in results)
    assert sorted(r.output["n"] for r in results if isinstance(r, Envelope)) == list(range(200))
    assert worker.started == 200
    assert worker.peak == 10
    assert bulkhead.peak == 10
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_200_requests_with_a_short_queue_refuse_the_overflow_at_once(
    build: Build, clock: FakeClock
) -> None:
    orch = build(worker_class(bulkhead={"max_queue": 50}))
    worker = plugin(orch)
    bulkhead = orch.bulkhead(orch.registry.resolve("worker"))
    assert bulkhead is not None

    tasks = [asyncio.create_task(orch.handle(job(n=i))) for i in range(200)]
    await clock.settle(50)
    refused = [t for t in tasks if t.done()]
    assert len(refused) == 140
    assert all(isinstance(t.exception(), BulkheadFullError) for t in refused)
    assert (worker.running, bulkhead.in_flight, bulkhead.queued) == (10, 10, 50)

    worker.gate.set()
    results = await gather(tasks)

    answered = [r for r in results if isinstance(r, Envelope)]
    assert len(answered) == 60
    # FIFO: the first 60 requests are the ones admitted.
    assert sorted(r.output["n"] for r in answered) == list(range(60))
    assert worker.started == 60
    assert worker.peak == 10
    assert bulkhead.peak == 10
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_slots_come_back_after_deadlines_errors_and_cancellations(
    build: Build, clock: FakeClock
) -> None:
    orch = build(Worker)
    worker = plugin(orch)
    worker.clock = clock
    entry = orch.registry.resolve("worker")
    bulkhead = orch.bulkhead(entry)
    assert bulkhead is not None
    modes = itertools.cycle(["sleep", "hang", "fail", "sleep", "hang"])
    worker.gate.set()  # "fail" jobs fail as soon as they run

    tasks = [asyncio.create_task(orch.handle(job(next(modes), i))) for i in range(200)]
    await clock.settle(50)
    # Cancel some running and some queued requests.
    cancelled = {i for i in range(200) if i % 7 == 3 and tasks[i].cancel()}
    assert len(cancelled) == 29
    while not all(t.done() for t in tasks):
        clock.advance(0.5)
        await clock.settle(50)
        assert worker.running <= 10
        assert bulkhead.in_flight <= 10

    outcomes: Counter[str] = Counter()
    for i, t in enumerate(tasks):
        if t.cancelled():
            outcomes["cancelled"] += 1
            assert i in cancelled
        elif t.exception() is not None:
            error = t.exception()
            assert isinstance(error, BrickworkError), f"raw exception escaped: {error!r}"
            outcomes[error.code] += 1
        else:
            outcomes["ok"] += 1

    expected: Counter[str] = Counter()
    for i in range(200):
        mode = ["sleep", "hang", "fail", "sleep", "hang"][i % 5]
        key = {"sleep": "ok", "hang": "deadline_exceeded", "fail": "plugin_failed"}[mode]
        expected["cancelled" if i in cancelled else key] += 1
    assert outcomes == expected
    assert worker.peak == 10
    assert bulkhead.peak == 10
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    health = await orch.health(entry)
    assert (health.in_flight, health.queued) == (0, 0)

    # Nothing leaked: ten fresh requests all run at once again.
    worker.gate = asyncio.Event()
    fresh = [asyncio.create_task(orch.handle(job("ok", i))) for i in range(10)]
    await clock.settle(50)
    assert worker.running == 10
    worker.gate.set()
    assert all(isinstance(r, Envelope) for r in await gather(fresh))


async def test_a_queued_request_cancelled_as_its_slot_arrives_passes_the_slot_on(
    build: Build, clock: FakeClock
) -> None:
    orch = build(worker_class(bulkhead={"max_concurrency": 1}))
    worker = plugin(orch)
    bulkhead = orch.bulkhead(orch.registry.resolve("worker"))
    assert bulkhead is not None
    first = asyncio.create_task(orch.handle(job(n=1)))
    second = asyncio.create_task(orch.handle(job(n=2)))
    third = asyncio.create_task(orch.handle(job(n=3)))
    await clock.settle()
    assert bulkhead.queued == 2

    worker.gate.set()
    # Let ``first`` finish and hand its slot to ``second``, then cancel ``second``
    # before it wakes up to take it. Polling one loop step at a time is the point:
    # a done-callback would run only after ``second`` had woken.
    while not first.done():  # noqa: ASYNC110 - see above
        await asyncio.sleep(0)
    second.cancel()
    results = await gather([first, second, third])

    assert isinstance(results[0], Envelope)
    assert isinstance(results[1], asyncio.CancelledError)
    assert isinstance(results[2], Envelope)
    assert results[2].output == {"n": 3}
    assert worker.started == 2  # ``second`` never ran: the slot went on to ``third``
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


async def test_queue_timeout_refuses_a_request_that_waited_too_long(build: Build, clock: FakeClock) -> None:
    orch = build(worker_class(bulkhead={"max_concurrency": 1, "queue_timeout": 2}))
    worker = plugin(orch)
    first = asyncio.create_task(orch.handle(job(n=1)))
    second = asyncio.create_task(orch.handle(job(n=2)))
    await clock.settle()

    clock.advance(2)
    await clock.settle()

    assert isinstance(second.exception(), QueueTimeoutError)
    worker.gate.set()
    assert (await first).output == {"n": 1}


# --- refused requests cost no quota --------------------------------------------------


async def test_requests_refused_after_admission_give_their_quota_back(build: Build, clock: FakeClock) -> None:
    orch = build(
        worker_class(
            rate_limit={"requests": 5, "window": 60},
            bulkhead={"max_concurrency": 1, "max_queue": 0},
        )
    )
    worker = plugin(orch)
    holder = asyncio.create_task(orch.handle(job(n=0)))  # takes 1 of 5, holds the only slot
    await clock.settle()

    for _ in range(4):
        with pytest.raises(BulkheadFullError):
            await orch.handle(job(n=1))
    for _ in range(3):
        with pytest.raises(InputValidationError):
            await orch.handle({"plugin": "worker", "input": {"mode": "dance"}})
    worker.gate.set()
    await holder

    answered = [await orch.handle(job(n=i)) for i in range(4)]  # 2nd…5th of 5
    with pytest.raises(RateLimitExceededError) as caught:
        await orch.handle(job(n=9))

    assert len(answered) == 4
    assert worker.started == 5
    assert caught.value.retry_after == pytest.approx(60)


async def test_requests_refused_in_the_queue_give_their_quota_back(build: Build, clock: FakeClock) -> None:
    orch = build(
        worker_class(
            rate_limit={"requests": 4, "window": 60},
            bulkhead={"max_concurrency": 1, "max_queue": 5, "queue_timeout": 1},
        )
    )
    worker = plugin(orch)
    holder = asyncio.create_task(orch.handle(job(n=0)))
    await clock.settle()
    timed_out = [asyncio.create_task(orch.handle(job(n=1))) for _ in range(2)]
    cancelled = asyncio.create_task(orch.handle(job(n=2)))
    await clock.settle()
    cancelled.cancel()
    clock.advance(1)
    await clock.settle()
    assert all(isinstance(t.exception(), QueueTimeoutError) for t in timed_out)
    worker.gate.set()
    await holder

    # All four were taken while they waited; only the holder still counts.
    for n in range(3):
        await orch.handle(job(n=n))
    with pytest.raises(RateLimitExceededError):
        await orch.handle(job(n=5))
    assert cancelled.cancelled()


async def test_requests_refused_by_an_open_breaker_give_their_quota_back(
    build: Build, clock: FakeClock
) -> None:
    orch = build(
        worker_class(
            rate_limit={"requests": 4, "window": 60},
            breaker={"min_calls": 2, "failure_ratio": 1.0, "open_for": 10, "half_open_trials": 1},
        )
    )
    worker = plugin(orch)
    worker.gate.set()
    for _ in range(2):  # 2 of 4, and the breaker opens
        with pytest.raises(PluginFailedError):
            await orch.handle(job("fail"))
    for _ in range(5):
        with pytest.raises(CircuitOpenError):
            await orch.handle(job())

    clock.advance(10)
    await orch.handle(job())  # the trial closes the breaker: 3 of 4
    await orch.handle(job())  # 4 of 4
    with pytest.raises(RateLimitExceededError):
        await orch.handle(job())
    assert worker.started == 4


# --- the plugin breaker --------------------------------------------------------------


async def test_plugin_breaker_opens_and_recovers_with_exactly_the_trial_calls(
    build: Build, clock: FakeClock
) -> None:
    orch = build(
        worker_class(breaker={"min_calls": 4, "failure_ratio": 0.5, "open_for": 30, "half_open_trials": 3})
    )
    worker = plugin(orch)
    entry = orch.registry.resolve("worker")
    worker.gate.set()

    for mode in ["ok", "fail", "ok", "fail"]:  # 2 of 4 failed: the ratio is reached
        with pytest.raises(BrickworkError) if mode == "fail" else nullcontext():
            await orch.handle(job(mode))
    health = await orch.health(entry)
    assert health.breaker is not None
    assert health.breaker.mode == "open"
    assert worker.started == 4

    for _ in range(10):
        with pytest.raises(CircuitOpenError):
            await orch.handle(job())
    assert worker.started == 4  # open: not one call reaches the plugin

    clock.advance(29)
    with pytest.raises(CircuitOpenError):
        await orch.handle(job())
    clock.advance(1)

    # Half-open: 8 concurrent requests, exactly 3 trials reach the plugin.
    worker.gate = asyncio.Event()
    tasks = [asyncio.create_task(orch.handle(job(n=i))) for i in range(8)]
    await clock.settle(50)
    assert worker.started == 4 + 3
    refused = [t for t in tasks if t.done()]
    assert len(refused) == 5
    assert all(isinstance(t.exception(), CircuitOpenError) for t in refused)
    worker.gate.set()
    results = await gather(tasks)
    assert sum(isinstance(r, Envelope) for r in results) == 3

    health = await orch.health(entry)
    assert health.breaker is not None
    assert health.breaker.mode == "closed"
    for i in range(6):
        await orch.handle(job(n=i))
    assert worker.started == 4 + 3 + 6


async def test_a_failed_trial_reopens_the_breaker(build: Build, clock: FakeClock) -> None:
    orch = build(
        worker_class(breaker={"min_calls": 1, "failure_ratio": 1.0, "open_for": 30, "half_open_trials": 2})
    )
    worker = plugin(orch)
    worker.gate.set()
    with pytest.raises(PluginFailedError):
        await orch.handle(job("fail"))

    clock.advance(30)
    with pytest.raises(PluginFailedError):
        await orch.handle(job("fail"))  # first trial fails
    with pytest.raises(CircuitOpenError) as caught:
        await orch.handle(job())

    assert worker.started == 2
    assert caught.value.retry_after == pytest.approx(30)
