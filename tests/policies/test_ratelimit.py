"""RateLimiter: requests and tokens per sliding window, per plugin × tenant."""

from __future__ import annotations

import pytest

from brickwork.contracts.errors import RateLimitExceededError
from brickwork.contracts.policy import RateLimitPolicy
from brickwork.policies.ratelimit import RateLimiter
from brickwork.state import MemoryState
from brickwork.testing import FakeClock

PLUGIN = "summarize@2.1.0"


def make(clock: FakeClock | None = None, **policy: float) -> RateLimiter:
    return RateLimiter(RateLimitPolicy(**policy), MemoryState(), clock or FakeClock())  # type: ignore[arg-type]


async def accepted(limiter: RateLimiter, tenant: str = "acme", tokens: int = 0, plugin: str = PLUGIN) -> bool:
    try:
        await limiter.acquire(plugin, tenant, tokens=tokens)
    except RateLimitExceededError:
        return False
    return True


def test_policy_needs_a_limit() -> None:
    with pytest.raises(ValueError, match="requests` or `tokens"):
        RateLimitPolicy(window=10.0)


async def test_exactly_the_request_limit_per_window() -> None:
    clock = FakeClock()
    limiter = make(clock, window=10.0, requests=3)
    assert [await accepted(limiter) for _ in range(4)] == [True, True, True, False]

    with pytest.raises(RateLimitExceededError) as info:
        await limiter.acquire(PLUGIN, "acme", tokens=0)
    assert info.value.code == "rate_limited"
    assert info.value.retry_after == 10.0
    assert info.value.plugin == PLUGIN
    assert "'acme' used its 3 requests per 10s" in info.value.message

    clock.advance(9.999)
    assert not await accepted(limiter)
    clock.advance(0.001)
    assert [await accepted(limiter) for _ in range(4)] == [True, True, True, False]


async def test_the_window_slides_instead_of_resetting_at_an_edge() -> None:
    clock = FakeClock()
    limiter = make(clock, window=10.0, requests=3)
    assert await accepted(limiter)  # t=0
    clock.advance(8.0)
    assert await accepted(limiter)  # t=8
    assert await accepted(limiter)  # t=8
    clock.advance(1.0)

    with pytest.raises(RateLimitExceededError) as info:  # t=9
        await limiter.acquire(PLUGIN, "acme", tokens=0)
    assert info.value.retry_after == pytest.approx(1.0)  # when the t=0 request leaves

    clock.advance(1.0)  # t=10: one place free, not three (no fixed-window reset)
    assert [await accepted(limiter) for _ in range(2)] == [True, False]


async def test_tokens_up_to_the_limit_exactly() -> None:
    limiter = make(window=60.0, tokens=100)
    assert await accepted(limiter, tokens=60)
    assert not await accepted(limiter, tokens=41)
    assert await accepted(limiter, tokens=40)
    with pytest.raises(RateLimitExceededError) as info:
        await limiter.acquire(PLUGIN, "acme", tokens=1)
    assert "100 tokens per 60s" in info.value.message
    assert info.value.retry_after == 60.0


async def test_a_request_bigger_than_the_token_limit_can_never_pass() -> None:
    limiter = make(window=60.0, tokens=100)
    with pytest.raises(RateLimitExceededError) as info:
        await limiter.acquire(PLUGIN, "acme", tokens=101)
    assert info.value.retry_after is None
    assert "needs 101 tokens, more than the limit of 100" in info.value.message
    assert await accepted(limiter, tokens=100)  # and it took nothing


async def test_a_refused_request_takes_nothing_from_any_limit() -> None:
    limiter = make(window=60.0, requests=2, tokens=100)
    assert await accepted(limiter, tokens=90)
    assert not await accepted(limiter, tokens=20)  # tokens full: no request counted
    assert await accepted(limiter, tokens=10)  # 2nd request, tokens exactly 100
    assert not await accepted(limiter, tokens=0)  # requests full now


async def test_limits_are_per_plugin_and_tenant() -> None:
    limiter = make(window=60.0, requests=1)
    assert await accepted(limiter, "acme")
    assert not await accepted(limiter, "acme")
    assert await accepted(limiter, "globex")
    assert await accepted(limiter, "acme", plugin="translate@1.0.0")
    assert not await accepted(limiter, "globex")


async def test_refund_gives_the_request_and_its_tokens_back() -> None:
    limiter = make(window=60.0, requests=1, tokens=50)
    permit = await limiter.acquire(PLUGIN, "acme", tokens=50)
    assert not await accepted(limiter, tokens=1)
    await limiter.refund(permit)
    assert await accepted(limiter, tokens=50)


async def test_settle_tokens_replaces_the_estimate() -> None:
    limiter = make(window=60.0, tokens=100)
    permit = await limiter.acquire(PLUGIN, "acme", tokens=80)
    await limiter.settle_tokens(permit, 20)  # used fewer than estimated
    assert await accepted(limiter, tokens=80)

    limiter = make(window=60.0, tokens=100)
    permit = await limiter.acquire(PLUGIN, "acme", tokens=10)
    await limiter.settle_tokens(permit, 90)  # used more than estimated
    assert not await accepted(limiter, tokens=20)
    assert await accepted(limiter, tokens=10)


async def test_settle_tokens_without_a_token_limit_is_harmless() -> None:
    limiter = make(window=60.0, requests=2)
    permit = await limiter.acquire(PLUGIN, "acme", tokens=500)
    assert permit.token_key is None
    await limiter.settle_tokens(permit, 10_000)
    assert await accepted(limiter)


async def test_retry_after_covers_every_full_limit() -> None:
    # Requests free up at t=10, tokens only at t=15: retrying at t=10 would fail.
    clock = FakeClock()
    limiter = make(clock, window=10.0, requests=2, tokens=100)
    await limiter.acquire(PLUGIN, "acme", tokens=5)  # t=0
    clock.advance(5.0)
    await limiter.acquire(PLUGIN, "acme", tokens=90)  # t=5
    clock.advance(1.0)

    with pytest.raises(RateLimitExceededError) as info:  # t=6
        await limiter.acquire(PLUGIN, "acme", tokens=50)
    assert info.value.retry_after == pytest.approx(9.0)

    assert info.value.retry_after is not None
    clock.advance(info.value.retry_after)
    assert await accepted(limiter, tokens=50)
