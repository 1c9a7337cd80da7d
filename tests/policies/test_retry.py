"""Retry: exact attempts and exact sleeps, on a fake clock with a seeded jitter."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from brickwork.contracts.errors import (
    BrickworkError,
    InputValidationError,
    ProviderResponseError,
    RetriesExhaustedError,
)
from brickwork.contracts.policy import RetryPolicy
from brickwork.policies.retry import Retry, backoff
from brickwork.policies.timeout import Deadline
from brickwork.testing import FakeClock, rate_limited, server_error
from brickwork.testing import timeout as provider_timeout

SEED = 20240611


class Script:
    """``fn(attempt)`` that raises the scripted errors in order, then returns."""

    def __init__(self, outcomes: Sequence[BaseException | str]) -> None:
        self.outcomes = list(outcomes)
        self.attempts: list[int] = []

    async def __call__(self, attempt: int) -> str:
        self.attempts.append(attempt)
        item = self.outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


class MaxRandom(random.Random):
    """Jitter that always takes the top of its range, to see the caps."""

    def uniform(self, a: float, b: float) -> float:
        return b


def jitters(policy: RetryPolicy, count: int) -> list[float]:
    """The full-jitter delays a ``Random(SEED)`` gives for attempts 1..count."""
    rng = random.Random(SEED)
    return [
        rng.uniform(0.0, min(policy.max_delay, policy.base_delay * 2 ** (n - 1))) for n in range(1, count + 1)
    ]


def test_backoff_caps_double_from_base_up_to_max_delay() -> None:
    policy = RetryPolicy(base_delay=0.2, max_delay=3.0)
    caps = [backoff(policy, attempt, MaxRandom()) for attempt in range(1, 7)]
    assert caps == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.0, 3.0])


def test_backoff_is_full_jitter_from_zero() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=1.0)
    delays = [backoff(policy, 1, random.Random(seed)) for seed in range(200)]
    assert all(0.0 <= d <= 1.0 for d in delays)
    assert min(delays) < 0.05  # full jitter reaches down to ~0, not base/2
    assert max(delays) > 0.95


async def test_succeeds_after_retryable_failures_with_the_exact_seeded_sleeps() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=1.5, respect_retry_after=False)
    clock = FakeClock(start=0.0, autojump=True)
    fn = Script([server_error(), provider_timeout(), server_error(), "ok"])

    result = await Retry(policy, clock, random.Random(SEED)).call(fn)

    expected = jitters(policy, 3)
    assert result == "ok"
    assert fn.attempts == [1, 2, 3, 4]
    assert clock.sleeps == expected
    assert clock.now() == pytest.approx(sum(expected))


async def test_gives_up_after_max_attempts_with_the_count_and_the_last_error() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.1)
    clock = FakeClock(autojump=True)
    last = server_error(502)
    fn = Script([server_error(), server_error(), last])

    with pytest.raises(RetriesExhaustedError) as info:
        await Retry(policy, clock, random.Random(SEED)).call(fn)

    assert info.value.attempts == 3
    assert info.value.__cause__ is last
    assert info.value.details["last_error"]["code"] == "provider_unavailable"
    assert fn.attempts == [1, 2, 3]
    assert clock.sleeps == jitters(policy, 2)


@pytest.mark.parametrize(
    "error",
    [
        ProviderResponseError("truncated reply"),
        InputValidationError("bad input"),
        ValueError("a bug in plugin code"),
    ],
    ids=["provider-bad-response", "input-invalid", "not-a-brickwork-error"],
)
async def test_non_retryable_error_is_raised_at_once_unchanged(error: Exception) -> None:
    clock = FakeClock(autojump=True)
    fn = Script([error, "never reached"])

    with pytest.raises(type(error)) as info:
        await Retry(RetryPolicy(max_attempts=5), clock).call(fn)

    assert info.value is error
    assert fn.attempts == [1]
    assert clock.sleeps == []


async def test_a_single_attempt_policy_raises_the_original_error() -> None:
    error = server_error()
    clock = FakeClock(autojump=True)
    with pytest.raises(BrickworkError) as info:
        await Retry(RetryPolicy(max_attempts=1), clock).call(Script([error]))
    assert info.value is error
    assert clock.sleeps == []


async def test_retry_after_is_waited_for_when_longer_than_the_backoff() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=0.1)
    clock = FakeClock(start=0.0, autojump=True)
    fn = Script([rate_limited(2.5), rate_limited(0.01), "ok"])

    assert await Retry(policy, clock, random.Random(SEED)).call(fn) == "ok"

    first, second = jitters(policy, 2)
    assert clock.sleeps == [2.5, max(second, 0.01)]
    assert clock.sleeps[0] >= 2.5
    assert first < 2.5  # the backoff alone would have retried too early


async def test_retry_after_is_ignored_when_the_policy_says_so() -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.1, max_delay=0.1, respect_retry_after=False)
    clock = FakeClock(autojump=True)
    await Retry(policy, clock, random.Random(SEED)).call(Script([rate_limited(20.0), "ok"]))
    assert clock.sleeps == jitters(policy, 1)


async def test_retry_after_exactly_at_the_maximum_is_still_waited_for() -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.0, max_retry_after=5.0)
    clock = FakeClock(autojump=True)
    assert await Retry(policy, clock).call(Script([rate_limited(5.0), "ok"])) == "ok"
    assert clock.sleeps == [5.0]


async def test_retry_after_above_the_maximum_stops_at_once() -> None:
    policy = RetryPolicy(max_attempts=5, max_retry_after=5.0)
    clock = FakeClock(autojump=True)
    error = rate_limited(6.0)
    fn = Script([error, "never reached"])

    with pytest.raises(BrickworkError) as info:
        await Retry(policy, clock).call(fn)

    assert info.value is error  # first attempt: nothing was retried, nothing to wrap
    assert fn.attempts == [1]
    assert clock.sleeps == []


async def test_retry_after_above_the_maximum_on_a_later_attempt_ends_the_retries() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=0.0, max_retry_after=5.0)
    clock = FakeClock(autojump=True)
    fn = Script([rate_limited(1.0), rate_limited(60.0), "never reached"])

    with pytest.raises(RetriesExhaustedError) as info:
        await Retry(policy, clock).call(fn)

    assert info.value.attempts == 2
    assert info.value.retry_after == 60.0  # the caller learns how long upstream asked for
    assert clock.sleeps == [1.0]


async def test_stops_when_the_next_sleep_would_pass_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.0)
    clock = FakeClock(start=0.0, autojump=True)
    deadline = Deadline(clock, 1.0)
    fn = Script([rate_limited(0.4)] * 10)

    with pytest.raises(RetriesExhaustedError) as info:
        await Retry(policy, clock).call(fn, deadline=deadline)

    # t=0 fail, sleep .4; t=.4 fail, sleep .4; t=.8 fail: .4 more passes t=1 → stop.
    assert info.value.attempts == 3
    assert fn.attempts == [1, 2, 3]
    assert clock.sleeps == [0.4, 0.4]
    assert clock.now() == pytest.approx(0.8)
    assert not deadline.expired()


async def test_a_spent_deadline_means_no_retry_at_all() -> None:
    clock = FakeClock(autojump=True)
    deadline = Deadline(clock, 1.0)
    clock.advance(1.0)
    error = server_error()
    with pytest.raises(BrickworkError) as info:
        await Retry(RetryPolicy(max_attempts=3), clock).call(Script([error]), deadline=deadline)
    assert info.value is error
    assert clock.sleeps == []
