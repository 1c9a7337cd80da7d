"""The budget: an operation's worst case reserved before it is made, settled after."""

from __future__ import annotations

from brickwork.contracts.clock import Clock
from brickwork.contracts.policy import BudgetPolicy
from brickwork.contracts.provider import ModelPrice
from brickwork.policies.budget import Budget, BudgetHold
from brickwork.policies.model.base import Ended, Model, ModelCall, ModelRun, WrapperModel
from brickwork.state.base import StateBackend

__all__ = ["BudgetModel"]


class BudgetModel(WrapperModel):
    """Reserves the operation's estimate (prompt plus ``max_tokens``) at the model's
    price, refusing with ``budget_exceeded`` before anything is sent; settles with
    what the items used: tokens that flowed are paid for, however the items ended.

    Budgets are per plugin name (× tenant): every version spends from one purse.
    """

    def __init__(
        self, inner: Model, *, policy: BudgetPolicy, price: ModelPrice, state: StateBackend, clock: Clock
    ) -> None:
        super().__init__(inner)
        self.budget = Budget(policy, state, clock)
        self.price = price

    async def enter(self, call: ModelCall, run: ModelRun) -> BudgetHold:
        return await self.budget.reserve(
            run.plugin.partition("@")[0], run.tenant, self.price.cost(call.estimate())
        )

    async def exit(self, call: ModelCall, run: ModelRun, state: BudgetHold, ended: Ended) -> None:
        usage = ended.usage(call)
        await self.budget.settle(state, 0.0 if usage is None else self.price.cost(usage))
