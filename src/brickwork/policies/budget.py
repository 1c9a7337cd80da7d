"""Budget: cost reserved before a model call and settled after it."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import BudgetExceededError
from brickwork.contracts.policy import BudgetPolicy
from brickwork.state.base import StateBackend

__all__ = ["Budget", "BudgetHold"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BudgetHold:
    key: str
    id: str  # empty when nothing was reserved (fail-open on a state error)


class Budget:
    """A spend limit per period for one plugin (and tenant, when ``per_tenant``).

    ``on_state_error`` decides what happens when the state backend cannot answer:
    ``open`` lets the call through (and logs it), ``closed`` refuses it.
    """

    def __init__(self, policy: BudgetPolicy, state: StateBackend, clock: Clock) -> None:
        self.policy = policy
        self.state = state
        self.clock = clock

    def key(self, plugin: str, tenant: str) -> str:
        period = math.floor(self.clock.time() / self.policy.period)
        who = tenant if self.policy.per_tenant else "*"
        return f"budget:{plugin}:{who}:{period}"

    async def reserve(self, plugin: str, tenant: str, amount: float) -> BudgetHold:
        key = self.key(plugin, tenant)
        try:
            result = await self.state.reserve(
                key, amount, limit=self.policy.limit, ttl=self.policy.period, now=self.clock.time()
            )
        except Exception as exc:  # the state backend failed: apply the declared mode
            if self.policy.on_state_error == "open":
                log.warning("budget state unavailable for %s, failing open: %r", plugin, exc)
                return BudgetHold(key, "")
            raise BudgetExceededError(
                f"budget for {plugin} cannot be checked (state unavailable) and fails closed",
                plugin=plugin,
                details={"reason": "state_unavailable"},
            ) from exc
        if not result.allowed:
            raise BudgetExceededError(
                f"budget for {plugin} is spent: ${result.used:.6f} of ${result.limit:g} "
                f"per {self.policy.period:g}s (this call needs up to ${amount:.6f})",
                plugin=plugin,
                details={"used": result.used, "limit": result.limit, "needed": amount},
            )
        return BudgetHold(key, result.id)

    async def settle(self, hold: BudgetHold, actual: float) -> None:
        if not hold.id:
            return
        try:
            await self.state.settle(hold.key, hold.id, actual, now=self.clock.time())
        except Exception as exc:
            log.warning("could not settle budget reservation %s: %r", hold.id, exc)
