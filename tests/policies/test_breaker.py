"""CircuitBreaker on memory state and a fake clock: exact trips, exact trials."""

from __future__ import annotations

import asyncio

import pytest

from brickwork.contracts.errors import (
    BudgetExceededError,
    CircuitOpenError,
    DeadlineExceededError,
    InputValidationError,
    OutputValidationError,
    PluginFailedError,
    ProviderResponseError,
    RateLimitExceededError,
    RetriesExhaustedError,
)
from brickwork.contracts.policy import BreakerPolicy
from brickwork.policies.breaker import CircuitBreaker, outcome_of
from brickwork.state import BreakerOutcome, MemoryState
from brickwork.testing import FakeClock, server_error

POLICY = BreakerPolicy(window=60.0, min_calls=4, failure_ratio=0.5, open_for=30.0, half_open_trials=3)


def make(policy: BreakerPolicy = POLICY, clock: FakeClock | None = None) -> CircuitBreaker:
    return CircuitBreaker(
        "breaker:plugin:p@1.0.0", policy, MemoryState(), clock or FakeClock(), label="p@1.0.0"
    )


async def ok() -> str:
    return "ok"


async def fail() -> str:
    raise server_error()


async def run(breaker: CircuitBreaker, fn: object) -> str:
    """One call; the outcome as a word, so sequences read plainly."""
    try:
        return await breaker.call(fn)  # type: ignore[arg-type]
    except CircuitOpenError:
        return "rejected"
    except Exception:
        return "failed"


async def mode(breaker: CircuitBreaker) -> str:
    snap = await breaker.state.breaker_snapshot(breaker.key, breaker.policy, now=breaker.clock.time())
    return snap.mode


async def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.policy.min_calls):
        await run(breaker, fail)
    assert await mode(breaker) == "open"


class Gate:
    """A call that runs until the test says how it ends."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.result: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def __call__(self) -> str:
        self.started.set()
        return await self.result


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "success"),
        (server_error(), "failure"),
        (ProviderResponseError("bad"), "failure"),
        (DeadlineExceededError("late"), "failure"),
        (RetriesExhaustedError("gave up", attempts=3), "failure"),
        (PluginFailedError("boom"), "failure"),
        (OutputValidationError("wrong shape"), "failure"),
        (RuntimeError("unexpected"), "failure"),
        (TimeoutError(), "failure"),
        (asyncio.CancelledError(), "ignored"),
        (InputValidationError("bad input"), "ignored"),
        (RateLimitExceededError("quota"), "ignored"),
        (BudgetExceededError("spent"), "ignored"),
        (CircuitOpenError("inner breaker"), "ignored"),
    ],
)
def test_outcome_of(error: BaseException | None, outcome: BreakerOutcome) -> None:
    assert outcome_of(error) == outcome


async def test_no_verdict_before_min_calls() -> None:
    breaker = make()
    assert [await run(breaker, fail) for _ in range(3)] == ["failed"] * 3
    assert await mode(breaker) == "closed"
    assert await run(breaker, ok) == "ok"  # 4th call: 3/4 failed ≥ 50% → trips after it
    assert await mode(breaker) == "open"


async def test_trips_at_the_failure_ratio_not_below_it() -> None:
    breaker = make()
    for fn in (fail, ok, ok, ok, ok, fail):  # 1/5 then 2/6: under 50%
        await run(breaker, fn)
    assert await mode(breaker) == "closed"
    await run(breaker, fail)  # 3/7 still under
    assert await mode(breaker) == "closed"
    await run(breaker, fail)  # 4/8 = 50%
    assert await mode(breaker) == "open"


async def test_only_outcomes_inside_the_window_count() -> None:
    clock = FakeClock()
    breaker = make(clock=clock)
    for _ in range(3):
        await run(breaker, fail)
    clock.advance(60.0)  # those three failures leave the window
    for fn in (ok, ok, ok, fail):
        await run(breaker, fn)
    snap = await breaker.state.breaker_snapshot(breaker.key, breaker.policy, now=clock.time())
    assert (snap.mode, snap.calls, snap.failures) == ("closed", 4, 1)


async def test_ignored_outcomes_do_not_count_as_calls() -> None:
    breaker = make()

    async def bad_input() -> str:
        raise InputValidationError("bad input")

    for _ in range(10):
        await run(breaker, bad_input)
    await run(breaker, fail)
    snap = await breaker.state.breaker_snapshot(breaker.key, breaker.policy, now=breaker.clock.time())
    assert (snap.mode, snap.calls, snap.failures) == ("closed", 1, 1)


async def test_open_rejects_without_calling_and_says_when_to_retry() -> None:
    clock = FakeClock()
    breaker = make(clock=clock)
    await trip(breaker)
    called = False

    async def spy() -> str:
        nonlocal called
        called = True
        return "ok"

    clock.advance(10.0)
    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(spy)
    assert not called
    assert info.value.retry_after == pytest.approx(20.0)
    assert info.value.plugin == "p@1.0.0"
    assert "open" in info.value.message


async def test_trips_on_the_p95_latency_objective() -> None:
    policy = BreakerPolicy(min_calls=20, failure_ratio=1.0, latency_p95=1.0, open_for=30.0)
    clock = FakeClock(autojump=True)
    breaker = make(policy, clock)

    async def taking(seconds: float) -> str:
        await clock.sleep(seconds)
        return "ok"

    for _ in range(18):
        await breaker.call(lambda: taking(0.1))
    await breaker.call(lambda: taking(2.0))
    assert await mode(breaker) == "closed"  # 1 slow call: not the 19th of 19
    await breaker.call(lambda: taking(2.0))
    # 20 calls, 2 slow: the nearest-rank p95 is the 19th value, a slow one.
    assert await mode(breaker) == "open"


async def test_p95_under_the_objective_stays_closed() -> None:
    policy = BreakerPolicy(min_calls=20, failure_ratio=1.0, latency_p95=1.0)
    clock = FakeClock(autojump=True)
    breaker = make(policy, clock)

    async def taking(seconds: float) -> str:
        await clock.sleep(seconds)
        return "ok"

    for _ in range(19):
        await breaker.call(lambda: taking(0.5))
    await breaker.call(lambda: taking(5.0))  # the one slow call is above the 95th rank
    snap = await breaker.state.breaker_snapshot(breaker.key, breaker.policy, now=clock.time())
    assert (snap.mode, snap.calls, snap.p95) == ("closed", 20, 0.5)


async def test_half_open_after_open_for_exactly() -> None:
    clock = FakeClock()
    breaker = make(clock=clock)
    await trip(breaker)
    clock.advance(29.9)
    assert await run(breaker, ok) == "rejected"
    clock.advance(0.1)
    assert await run(breaker, ok) == "ok"
    assert await mode(breaker) == "half_open"  # one good trial of three


async def test_exactly_half_open_trials_run_at_once_and_the_next_is_rejected() -> None:
    clock = FakeClock()
    breaker = make(clock=clock)
    await trip(breaker)
    clock.advance(30.0)

    gates = [Gate() for _ in range(3)]
    tasks = [asyncio.create_task(breaker.call(g)) for g in gates]
    await clock.settle()
    assert all(g.started.is_set() for g in gates)

    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(ok)
    assert info.value.retry_after == 1.0
    assert "half-open" in info.value.message

    for i, (gate, task) in enumerate(zip(gates, tasks, strict=True)):
        gate.result.set_result("ok")
        assert await task == "ok"
        assert await mode(breaker) == ("closed" if i == 2 else "half_open")
    assert await run(breaker, ok) == "ok"


async def test_a_failed_trial_reopens_and_later_trial_successes_do_not_close_it() -> None:
    clock = FakeClock()
    breaker = make(clock=clock)
    await trip(breaker)
    clock.advance(30.0)
    gates = [Gate() for _ in range(3)]
    tasks = [asyncio.create_task(breaker.call(g)) for g in gates]
    await clock.settle()

    gates[0].result.set_exception(server_error())
    with pytest.raises(Exception, match="503"):
        await tasks[0]
    assert await mode(breaker) == "open"
    for gate, task in zip(gates[1:], tasks[1:], strict=True):
        gate.result.set_result("ok")
        await task
    snap = await breaker.state.breaker_snapshot(breaker.key, breaker.policy, now=clock.time())
    assert snap.mode == "open"
    assert snap.retry_after == pytest.approx(30.0)  # the clock restarted at the failed trial


async def test_a_slow_trial_counts_as_failed() -> None:
    policy = POLICY.model_copy(update={"latency_p95": 1.0})
    clock = FakeClock(autojump=True)
    breaker = make(policy, clock)
    await trip(breaker)
    clock.advance(30.0)

    async def slow() -> str:
        await clock.sleep(1.5)
        return "ok"

    assert await breaker.call(slow) == "ok"  # the caller still gets its answer
    assert await mode(breaker) == "open"


async def test_an_ignored_trial_gives_its_slot_back() -> None:
    clock = FakeClock()
    breaker = make(POLICY.model_copy(update={"half_open_trials": 1}), clock)
    await trip(breaker)
    clock.advance(30.0)

    async def bad_input() -> str:
        raise InputValidationError("bad input")

    with pytest.raises(InputValidationError):
        await breaker.call(bad_input)
    assert await mode(breaker) == "half_open"
    assert await run(breaker, ok) == "ok"  # the slot came back, and this trial closes it
    assert await mode(breaker) == "closed"


async def test_a_cancelled_trial_gives_its_slot_back() -> None:
    clock = FakeClock()
    breaker = make(POLICY.model_copy(update={"half_open_trials": 1}), clock)
    await trip(breaker)
    clock.advance(30.0)

    gate = Gate()
    task = asyncio.create_task(breaker.call(gate))
    await clock.settle()
    assert await run(breaker, ok) == "rejected"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await run(breaker, ok) == "ok"
    assert await mode(breaker) == "closed"


async def test_a_trial_from_an_earlier_half_open_period_cannot_free_a_slot_in_this_one() -> None:
    clock = FakeClock()
    breaker = make(POLICY.model_copy(update={"half_open_trials": 2}), clock)
    await trip(breaker)
    clock.advance(30.0)
    old = [Gate(), Gate()]
    old_tasks = [asyncio.create_task(breaker.call(g)) for g in old]
    await clock.settle()
    old[0].result.set_exception(server_error())  # reopens
    await asyncio.gather(old_tasks[0], return_exceptions=True)
    clock.advance(30.0)  # second half-open period

    new = [Gate(), Gate()]
    new_tasks = [asyncio.create_task(breaker.call(g)) for g in new]
    await clock.settle()
    old_tasks[1].cancel()  # the old trial ends now, "ignored"
    await asyncio.gather(old_tasks[1], return_exceptions=True)

    assert await run(breaker, ok) == "rejected"  # still exactly two trials in flight
    for gate in new:
        gate.result.set_result("ok")
    await asyncio.gather(*new_tasks)
    assert await mode(breaker) == "closed"


async def test_a_call_from_before_the_trip_does_not_count_after_recovery() -> None:
    clock = FakeClock()
    breaker = make(POLICY.model_copy(update={"half_open_trials": 1}), clock)
    hung = [Gate() for _ in range(4)]
    hung_tasks = [asyncio.create_task(breaker.call(g)) for g in hung]
    await clock.settle()
    await trip(breaker)
    clock.advance(30.0)
    assert await run(breaker, ok) == "ok"
    assert await mode(breaker) == "closed"

    # Calls that started long before the trip fail now: already judged.
    for gate in hung:
        gate.result.set_exception(server_error())
    await asyncio.gather(*hung_tasks, return_exceptions=True)
    snap = await breaker.state.breaker_snapshot(breaker.key, breaker.policy, now=clock.time())
    assert (snap.mode, snap.calls) == ("closed", 0)
