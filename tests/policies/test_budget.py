"""Budget: reserve before a call, settle after it, a limit per period."""

from __future__ import annotations

import logging
import math

import pytest

from brickwork.contracts.errors import BudgetExceededError
from brickwork.contracts.policy import BudgetPolicy
from brickwork.policies.budget import Budget, BudgetHold
from brickwork.state import MemoryState, Reservation
from brickwork.testing import FakeClock

PLUGIN = "chat@1.0.0"


def make(clock: FakeClock | None = None, state: object | None = None, **policy: object) -> Budget:
    settings: dict[str, object] = {"limit": 1.0, "period": 3600.0}
    settings.update(policy)
    return Budget(BudgetPolicy(**settings), state or MemoryState(), clock or FakeClock())  # type: ignore[arg-type]


async def refused(budget: Budget, amount: float, tenant: str = "acme") -> bool:
    try:
        hold = await budget.reserve(PLUGIN, tenant, amount)
    except BudgetExceededError:
        return True
    assert hold.id
    return False


class BrokenState(MemoryState):
    """A state backend that is down."""

    async def reserve(self, key: str, amount: float, *, limit: float, ttl: float, now: float) -> Reservation:
        raise ConnectionError("state backend unreachable")

    async def settle(self, key: str, reservation: str, actual: float, *, now: float) -> None:
        raise ConnectionError("state backend unreachable")


async def test_reservations_count_until_settled() -> None:
    budget = make()
    first = await budget.reserve(PLUGIN, "acme", 0.6)
    with pytest.raises(BudgetExceededError) as info:
        await budget.reserve(PLUGIN, "acme", 0.5)  # 0.6 reserved + 0.5 > 1.0
    assert info.value.code == "budget_exceeded"
    assert info.value.plugin == PLUGIN
    assert info.value.details == {"used": 0.6, "limit": 1.0, "needed": 0.5}

    await budget.settle(first, 0.2)  # the call cost less than reserved
    assert not await refused(budget, 0.5)  # 0.2 spent + 0.5 reserved
    assert await refused(budget, 0.31)
    assert not await refused(budget, 0.3)  # exactly at the limit is allowed
    assert await refused(budget, 0.001)


async def test_settling_zero_cancels_the_reservation() -> None:
    budget = make()
    hold = await budget.reserve(PLUGIN, "acme", 1.0)
    assert await refused(budget, 0.01)
    await budget.settle(hold, 0.0)
    assert not await refused(budget, 1.0)


async def test_spend_over_the_estimate_counts_in_full() -> None:
    budget = make()
    hold = await budget.reserve(PLUGIN, "acme", 0.1)
    await budget.settle(hold, 0.95)
    assert await refused(budget, 0.1)
    assert not await refused(budget, 0.05)


async def test_a_settled_reservation_settled_again_is_not_counted_twice() -> None:
    budget = make()
    hold = await budget.reserve(PLUGIN, "acme", 0.5)
    await budget.settle(hold, 0.5)
    await budget.settle(hold, 0.5)
    assert not await refused(budget, 0.5)


async def test_the_limit_resets_at_the_period_boundary() -> None:
    clock = FakeClock()
    budget = make(clock, period=100.0)
    hold = await budget.reserve(PLUGIN, "acme", 1.0)
    await budget.settle(hold, 1.0)
    assert await refused(budget, 0.01)

    to_boundary = (math.floor(clock.time() / 100.0) + 1) * 100.0 - clock.time()
    clock.advance(to_boundary - 0.5)
    assert await refused(budget, 0.01)
    clock.advance(0.5)
    assert not await refused(budget, 1.0)


async def test_a_call_settled_after_the_boundary_charges_its_own_period() -> None:
    clock = FakeClock()
    budget = make(clock, period=100.0)
    to_boundary = (math.floor(clock.time() / 100.0) + 1) * 100.0 - clock.time()
    clock.advance(to_boundary - 1.0)
    hold = await budget.reserve(PLUGIN, "acme", 0.4)
    clock.advance(2.0)  # the call ends in the next period
    await budget.settle(hold, 0.4)
    assert not await refused(budget, 1.0)  # the new period is untouched


async def test_per_tenant_budgets_are_separate() -> None:
    budget = make(per_tenant=True)
    await budget.reserve(PLUGIN, "acme", 1.0)
    assert await refused(budget, 0.1, "acme")
    assert not await refused(budget, 1.0, "globex")


async def test_a_shared_budget_is_one_pot_for_all_tenants() -> None:
    budget = make(per_tenant=False)
    await budget.reserve(PLUGIN, "acme", 0.7)
    assert await refused(budget, 0.4, "globex")
    assert not await refused(budget, 0.3, "globex")


async def test_state_error_fails_closed_by_default() -> None:
    budget = make(state=BrokenState())
    with pytest.raises(BudgetExceededError) as info:
        await budget.reserve(PLUGIN, "acme", 0.01)
    assert info.value.details == {"reason": "state_unavailable"}
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "fails closed" in info.value.message


async def test_state_error_fails_open_when_declared(caplog: pytest.LogCaptureFixture) -> None:
    budget = make(state=BrokenState(), on_state_error="open")
    with caplog.at_level(logging.WARNING, logger="brickwork.policies.budget"):
        hold = await budget.reserve(PLUGIN, "acme", 100.0)
    assert hold.id == ""
    assert "failing open" in caplog.text
    await budget.settle(hold, 5.0)  # nothing was reserved, nothing to settle: no error


async def test_a_failed_settle_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    budget = make(state=BrokenState())
    with caplog.at_level(logging.WARNING, logger="brickwork.policies.budget"):
        await budget.settle(BudgetHold("budget:chat@1.0.0:acme:1", "r7"), 0.1)
    assert "could not settle budget reservation r7" in caplog.text
