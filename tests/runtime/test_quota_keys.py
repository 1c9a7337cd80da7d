"""Quotas and budgets belong to a plugin (× tenant), not to one of its versions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from brickwork.contracts.errors import BudgetExceededError, ProviderUnavailableError, RateLimitExceededError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import BudgetPolicy, FallbackPolicy, Policy, RateLimitPolicy
from brickwork.runtime.models import ModelPrice
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.testing import FakeProvider

Build = Callable[..., Orchestrator]


class In(PluginInput):
    text: str


class Out(PluginOutput):
    text: str


LIMIT = Policy(rate_limit=RateLimitPolicy(requests=3, window=60), breaker=None, retry=None)


class V1(Plugin[In, Out]):
    name = "cap"
    version = "1.0.0"
    description = "Rules version."
    policy = LIMIT

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(text="v1")


class V2(Plugin[In, Out]):
    name = "cap"
    version = "2.0.0"
    description = "Model version that falls back to v1."
    model = "fake:m"
    permissions = frozenset({"model"})
    policy = LIMIT.model_copy(
        update={
            "fallback": FallbackPolicy(plugins=("cap@1.0.0",)),
            "budget": BudgetPolicy(limit=1.0, period=3600),
        }
    )

    async def run(self, input: In, ctx: Context) -> Out:
        completion = await ctx.model.complete(input.text, max_tokens=10)
        return Out(text=completion.text)


async def test_two_versions_share_one_request_quota(build: Build) -> None:
    orch = build(V1, V2, providers=[FakeProvider("fake", default="v2")])
    await orch.handle({"plugin": "cap@1.0.0", "input": "a"})
    await orch.handle({"plugin": "cap@2.0.0", "input": "a"})
    await orch.handle({"plugin": "cap@1.0.0", "input": "a"})
    with pytest.raises(RateLimitExceededError) as caught:
        await orch.handle({"plugin": "cap@2.0.0", "input": "a"})
    assert caught.value.plugin == "cap"
    other_tenant = await orch.handle({"plugin": "cap@2.0.0", "input": "a", "tenant": "t2"})
    assert other_tenant.output == {"text": "v2"}


async def test_a_fallback_to_another_version_counts_the_request_once(build: Build) -> None:
    provider = FakeProvider("fake")
    orch = build(V1, V2, providers=[provider])
    for _ in range(3):
        provider.fail(ProviderUnavailableError("down"))
        envelope = await orch.handle({"plugin": "cap@2.0.0", "input": "a"})
        assert envelope.degraded
        assert envelope.version == "1.0.0"
    # Three requests, each answered by v1 after v2 failed: three units, not six.
    with pytest.raises(RateLimitExceededError):
        await orch.handle({"plugin": "cap@1.0.0", "input": "a"})


async def test_budget_is_one_purse_for_every_version(build: Build) -> None:
    class V3(V2):
        version = "3.0.0"

    # $0.09 per million output tokens × 1e6: a call reserves 10 tokens = $0.90 and spends 1 = $0.09.
    orch = build(
        V1,
        V2,
        V3,
        providers=[FakeProvider("fake", default="ok")],
        prices={"fake:m": ModelPrice(output=90_000)},
    )
    first = await orch.handle({"plugin": "cap@2.0.0", "input": "x"})
    assert not first.degraded
    assert first.cost == pytest.approx(0.09)
    second = await orch.handle({"plugin": "cap@3.0.0", "input": "x"})  # $0.09 + $0.90 ≤ $1
    assert not second.degraded
    # $0.18 spent by v2 and v3 together: another $0.90 reservation would pass $1,
    # whichever version asks, so v1 (rules) answers.
    third = await orch.handle({"plugin": "cap@2.0.0", "input": "x"})
    assert third.degraded
    assert third.fallbacks[0].code == BudgetExceededError.code
    other_tenant = await orch.handle({"plugin": "cap@3.0.0", "input": "x", "tenant": "t2"})
    assert not other_tenant.degraded
