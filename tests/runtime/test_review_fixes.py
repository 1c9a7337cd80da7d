"""Regressions found in review: each test is a sequence a user could hit."""

from __future__ import annotations

import pytest

from brickwork.contracts.errors import (
    ContextLengthExceededError,
    PluginValidationError,
    ProviderRateLimitedError,
)
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import BreakerPolicy, FallbackPolicy, Policy
from brickwork.gateway.errors import error_headers
from brickwork.policies.breaker import outcome_of
from brickwork.providers.http import MAX_RETRY_AFTER, parse_retry_after
from brickwork.runtime.registry import Registry


def test_a_too_long_input_does_not_count_against_the_breaker() -> None:
    # One tenant's oversized prompt must not open a breaker shared by every tenant.
    assert outcome_of(ContextLengthExceededError("4097 > 4096 tokens")) == "ignored"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "1e999"}, None),
        ({"Retry-After": "nan"}, None),
        ({"retry-after-ms": "inf", "Retry-After": "3"}, 3.0),
        ({"Retry-After": "99999999"}, MAX_RETRY_AFTER),
    ],
)
def test_retry_after_is_finite_and_bounded(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_an_infinite_retry_after_still_gives_a_header_not_a_crash() -> None:
    headers = error_headers(ProviderRateLimitedError("slow", retry_after=float("inf")), 429)
    assert headers["retry-after"] == "1"


class In(PluginInput):
    text: str


class Out(PluginOutput):
    text: str


class Other(PluginOutput):
    value: int


def _plugin(name: str, version: str, out: type, **attrs: object) -> type:
    class P(Plugin[In, out]):  # type: ignore[valid-type]
        description = "test"

        async def run(self, input: In, ctx: Context) -> object:
            return out.model_validate({"text": "x"} if out is Out else {"value": 1})

    P.name, P.version = name, version
    for key, value in attrs.items():
        setattr(P, key, value)
    return P


def test_labels_a_fallback_uses_cannot_be_moved_to_another_contract_or_removed() -> None:
    registry = Registry()
    registry.add(_plugin("beta", "1.0.0", Out))
    registry.add(_plugin("beta", "2.0.0", Other))
    registry.relabel("beta", "stable", "1.0.0")
    policy = Policy(breaker=BreakerPolicy(), fallback=FallbackPolicy(plugins=("beta@stable",)))
    registry.add(_plugin("alpha", "1.0.0", Out, policy=policy))
    with pytest.raises(PluginValidationError, match="different input or output contract"):
        registry.relabel("beta", "stable", "2.0.0")
    assert registry.labels("beta") == {"stable": "1.0.0"}  # rolled back
    with pytest.raises(PluginValidationError, match="not registered"):
        registry.unlabel("beta", "stable")
    assert registry.labels("beta") == {"stable": "1.0.0"}


async def test_a_failed_request_reports_what_it_already_spent() -> None:
    from brickwork.contracts.errors import PluginFailedError
    from brickwork.runtime.models import ModelPrice, Providers
    from brickwork.runtime.orchestrator import Orchestrator
    from brickwork.testing import FakeProvider

    class Spender(Plugin[In, Out]):
        name = "spender"
        version = "1.0.0"
        description = "Pays for a model call, then breaks."
        model = "fake:m"
        permissions = frozenset({"model"})

        async def run(self, input: In, ctx: Context) -> Out:
            await ctx.model.complete("one two three", max_tokens=5)
            raise ValueError("bug after the paid call")

    registry = Registry()
    registry.add(Spender)
    providers = Providers(prices={"fake:m": ModelPrice(input=1_000_000, output=1_000_000)})
    providers.add(FakeProvider("fake", default="a b"))
    orch = Orchestrator(registry, providers=providers)
    with pytest.raises(PluginFailedError) as caught:
        await orch.handle({"plugin": "spender", "input": "x"})
    # 3 input + 2 output tokens at $1 each: the gateway settles a key's budget with it.
    assert caught.value.tokens == 5
    assert caught.value.cost == pytest.approx(5.0)
    assert "cost" not in caught.value.to_dict()  # not part of the error body
