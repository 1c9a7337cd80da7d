"""Rate limit: requests and tokens per sliding window, per plugin × tenant."""

from __future__ import annotations

from dataclasses import dataclass

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import RateLimitExceededError
from brickwork.contracts.policy import RateLimitPolicy
from brickwork.state.base import StateBackend, WindowItem

__all__ = ["RateLimiter", "RatePermit"]


@dataclass(frozen=True, slots=True)
class RatePermit:
    entry: str
    keys: tuple[str, ...]
    token_key: str | None


class RateLimiter:
    """Checks and counts in one atomic step: a refused request counts for nothing,
    and :meth:`refund` gives back what a request took when a later step refuses it.
    """

    def __init__(self, policy: RateLimitPolicy, state: StateBackend, clock: Clock) -> None:
        self.policy = policy
        self.state = state
        self.clock = clock

    async def acquire(self, plugin: str, tenant: str, *, tokens: int) -> RatePermit:
        """Take one request and ``tokens`` estimated tokens, or raise with a retry-after."""
        base = f"rl:{plugin}:{tenant}"
        items: list[WindowItem] = []
        if self.policy.requests is not None:
            items.append(WindowItem(f"{base}:req", 1, self.policy.requests))
        token_key = None
        if self.policy.tokens is not None:
            token_key = f"{base}:tok"
            items.append(WindowItem(token_key, tokens, self.policy.tokens))
        grant = await self.state.window_acquire(items, window=self.policy.window, now=self.clock.time())
        if not grant.allowed:
            what = "tokens" if grant.key.endswith(":tok") else "requests"
            limit = self.policy.tokens if what == "tokens" else self.policy.requests
            if grant.retry_after is None:
                message = (
                    f"request needs {tokens} tokens, more than the limit of {limit} "
                    f"per {self.policy.window:g}s for {plugin}"
                )
            else:
                message = (
                    f"tenant {tenant!r} used its {limit} {what} per {self.policy.window:g}s "
                    f"for {plugin}; retry in {grant.retry_after:.2f}s"
                )
            raise RateLimitExceededError(message, plugin=plugin, retry_after=grant.retry_after)
        return RatePermit(grant.entry, tuple(i.key for i in items), token_key)

    async def refund(self, permit: RatePermit) -> None:
        await self.state.window_release(permit.keys, permit.entry)

    async def settle_tokens(self, permit: RatePermit, tokens: int) -> None:
        """Replace the token estimate by the tokens the run really used."""
        if permit.token_key is not None:
            await self.state.window_adjust(permit.token_key, permit.entry, tokens)
