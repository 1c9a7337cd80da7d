"""Per-key limits: a key's own rate limit and budget, over all the plugins it calls.

These hold in addition to each plugin's policies (a key cannot raise a plugin's
limit, only add its own), in the orchestrator's state backend: across every
request of this process with the memory backend. The budget is checked before a call
(refused once spent) and charged with the envelope's cost after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from brickwork.contracts.clock import Clock
from brickwork.contracts.policy import BudgetPolicy, RateLimitPolicy
from brickwork.policies.budget import Budget, BudgetHold
from brickwork.policies.ratelimit import RateLimiter, RatePermit
from brickwork.state.base import StateBackend
from brickwork.storage.keys import ApiKey

__all__ = ["UNLIMITED", "KeyPermit", "KeyQuota"]

# A budget reservation this small only asks "is anything left?"; the real cost is
# known, and charged, when the call has ended.
_PROBE = 1e-9


@dataclass(frozen=True, slots=True)
class KeyPermit:
    limiter: RateLimiter | None = None
    permit: RatePermit | None = None
    budget: Budget | None = None
    hold: BudgetHold | None = None


#: The permit of a key with no limits of its own: nothing to settle.
UNLIMITED = KeyPermit()


class KeyQuota:
    def __init__(self, state: StateBackend, clock: Clock) -> None:
        self.state = state
        self.clock = clock
        # Key id → parsed overrides (keys are immutable, so these never go stale).
        self._policies: dict[str, tuple[RateLimitPolicy | None, BudgetPolicy | None]] = {}

    def _policy(self, key: ApiKey) -> tuple[RateLimitPolicy | None, BudgetPolicy | None]:
        found = self._policies.get(key.id)
        if found is None:
            rate = RateLimitPolicy.model_validate(key.rate_limit) if key.rate_limit else None
            budget = BudgetPolicy.model_validate(key.budget) if key.budget else None
            if len(self._policies) > 10_000:
                self._policies.clear()
            found = self._policies[key.id] = (rate, budget)
        return found

    def unlimited(self, key: ApiKey) -> bool:
        """Whether the key has no limits of its own (:meth:`admit` would give :data:`UNLIMITED`)."""
        rate, budget = self._policy(key)
        return rate is None and budget is None

    async def admit(self, key: ApiKey, *, tokens: int) -> KeyPermit:
        """Take one request (and ``tokens``) from the key's limits, or raise 429 / 402."""
        rate, budget_policy = self._policy(key)
        if rate is None and budget_policy is None:
            return UNLIMITED
        limiter = permit = budget = hold = None
        scope = f"key:{key.id}"
        if rate is not None:
            limiter = RateLimiter(rate, self.state, self.clock)
            permit = await limiter.acquire(scope, key.tenant, tokens=tokens)
        if budget_policy is not None:
            budget = Budget(budget_policy, self.state, self.clock)
            try:
                hold = await budget.reserve(scope, key.tenant, _PROBE)
            except BaseException:
                if limiter is not None and permit is not None:
                    await limiter.refund(permit)
                raise
        return KeyPermit(limiter, permit, budget, hold)

    async def settle(self, permit: KeyPermit, *, cost: float, tokens: int | None) -> None:
        """Charge what the call cost (0 if it failed before spending)."""
        if permit.limiter is not None and permit.permit is not None and tokens is not None:
            await permit.limiter.settle_tokens(permit.permit, tokens)
        if permit.budget is not None and permit.hold is not None:
            await permit.budget.settle(permit.hold, cost)
