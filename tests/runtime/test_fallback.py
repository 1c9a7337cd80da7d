"""The fallback chain of plugins: who answers when the chosen version fails."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import Field

from brickwork.contracts.errors import (
    FallbacksExhaustedError,
    InputValidationError,
    PluginNotFoundError,
    PluginValidationError,
    ProviderUnavailableError,
    RateLimitExceededError,
    http_status,
)
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import (
    BreakerPolicy,
    FallbackPolicy,
    Policy,
)
from brickwork.runtime.models import ModelPrice
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.registry import Registry
from brickwork.testing import FakeProvider, server_error

Build = Callable[..., Orchestrator]


class AskIn(PluginInput):
    question: str = Field(min_length=1)


class AskOut(PluginOutput):
    answer: str


class OtherOut(PluginOutput):
    answer: str
    confidence: float


class Backup(Plugin[AskIn, AskOut]):
    """Answers without a model: the plugin the chain falls back to."""

    name = "ask-rules"
    version = "1.0.0"
    description = "Canned answers."

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, input: AskIn, ctx: Context) -> AskOut:
        self.runs += 1
        return AskOut(answer=f"rules: {input.question}")


class Ask(Plugin[AskIn, AskOut]):
    """Answers with its model; falls back to ``ask-rules``."""

    name = "ask"
    version = "2.0.0"
    description = "Answers with a model."
    model = "fake:big"
    permissions = frozenset({"model"})
    policy = Policy(
        retry=None,
        breaker=BreakerPolicy(min_calls=2, failure_ratio=0.5, open_for=30, half_open_trials=1),
        fallback=FallbackPolicy(plugins=("ask-rules@1.0.0",)),
    )

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, input: AskIn, ctx: Context) -> AskOut:
        self.runs += 1
        completion = await ctx.model.complete(input.question)
        if completion.text == "crash":
            raise RuntimeError("the model said crash")
        return AskOut(answer=completion.text)


def instance(orch: Orchestrator, ref: str) -> Plugin[AskIn, AskOut]:
    return orch.registry.resolve(ref).instance


def runs(orch: Orchestrator, ref: str) -> int:
    plugin = instance(orch, ref)
    assert isinstance(plugin, Ask | Backup)
    return plugin.runs


async def test_primary_answers_when_healthy(build: Build) -> None:
    provider = FakeProvider("fake").enqueue("from the model")
    orch = build(Backup, Ask, providers=[provider])

    envelope = await orch.handle({"plugin": "ask", "input": {"question": "why?"}})

    assert envelope.output == {"answer": "from the model"}
    assert (envelope.plugin, envelope.version) == ("ask", "2.0.0")
    assert not envelope.degraded
    assert envelope.fallbacks == []
    assert runs(orch, "ask-rules") == 0


async def test_provider_error_falls_back_and_says_so(build: Build, recorder: MemoryRecorder) -> None:
    provider = FakeProvider("fake").fail(server_error(503))
    orch = build(Backup, Ask, providers=[provider])

    envelope = await orch.handle({"plugin": "ask", "input": {"question": "why?"}})

    assert envelope.output == {"answer": "rules: why?"}
    assert (envelope.plugin, envelope.version) == ("ask-rules", "1.0.0")
    assert envelope.degraded
    assert [(a.plugin, a.version, a.code) for a in envelope.fallbacks] == [
        ("ask", "2.0.0", "provider_unavailable")
    ]
    assert "HTTP 503" in envelope.fallbacks[0].message
    assert envelope.warnings[0] == "degraded: answered by ask-rules@1.0.0 after ask@2.0.0 failed"
    assert envelope.route.ref == "ask"
    [record] = recorder.records
    assert (record.plugin, record.version, record.degraded, record.outcome) == (
        "ask-rules",
        "1.0.0",
        True,
        "ok",
    )
    assert [a.code for a in record.fallbacks] == ["provider_unavailable"]


async def test_open_breaker_falls_back_without_running_the_primary(build: Build) -> None:
    provider = FakeProvider("fake").fail(server_error(), times=2)
    orch = build(Backup, Ask, providers=[provider])
    request = {"plugin": "ask", "input": {"question": "q"}}

    for _ in range(2):  # two failures of two calls: the breaker opens
        assert (await orch.handle(request)).degraded
    envelope = await orch.handle(request)

    assert [a.code for a in envelope.fallbacks] == ["circuit_open"]
    assert envelope.plugin == "ask-rules"
    assert runs(orch, "ask") == 2
    assert len(provider.calls) == 2
    health = await orch.health(orch.registry.resolve("ask"))
    assert health.breaker is not None
    assert health.breaker.mode == "open"


async def test_plugin_crash_falls_back(build: Build) -> None:
    provider = FakeProvider("fake").enqueue("crash")
    orch = build(Backup, Ask, providers=[provider])

    envelope = await orch.handle({"plugin": "ask", "input": {"question": "q"}})

    assert envelope.plugin == "ask-rules"
    assert [a.code for a in envelope.fallbacks] == ["plugin_failed"]


async def test_spend_of_the_failed_primary_is_in_the_envelope(build: Build) -> None:
    # The primary's model call succeeded (and was paid for) before the plugin crashed:
    # the caller is charged for it, so the envelope must account for it.
    provider = FakeProvider("fake").enqueue("crash")
    orch = build(Backup, Ask, providers=[provider], prices={"fake:big": ModelPrice(input=1e3, output=1e3)})

    envelope = await orch.handle({"plugin": "ask", "input": {"question": "one two"}})

    assert envelope.plugin == "ask-rules"
    assert envelope.usage.calls == 1
    assert (envelope.usage.input_tokens, envelope.usage.output_tokens) == (2, 1)
    assert envelope.cost == pytest.approx(0.003)
    assert envelope.models == ["fake:big"]


async def test_bad_input_does_not_fall_back(build: Build) -> None:
    provider = FakeProvider("fake")
    orch = build(Backup, Ask, providers=[provider])

    with pytest.raises(InputValidationError):
        await orch.handle({"plugin": "ask", "input": {"question": ""}})

    assert runs(orch, "ask-rules") == 0
    assert runs(orch, "ask") == 0


async def test_quota_refusal_does_not_fall_back(build: Build) -> None:
    class Limited(Ask):
        name = "limited"
        policy = Ask.policy.merged({"rate_limit": {"requests": 1, "window": 60}})

    provider = FakeProvider("fake")
    orch = build(Backup, Limited, providers=[provider])
    request = {"plugin": "limited", "input": {"question": "q"}}

    await orch.handle(request)
    with pytest.raises(RateLimitExceededError):
        await orch.handle(request)

    assert runs(orch, "ask-rules") == 0


async def test_errors_outside_fallback_on_are_raised(build: Build) -> None:
    class Picky(Ask):
        name = "picky"
        policy = Ask.policy.merged({"fallback": {"on": ["plugin_failed"]}})

    provider = FakeProvider("fake").fail(server_error())
    orch = build(Backup, Picky, providers=[provider])

    with pytest.raises(ProviderUnavailableError):
        await orch.handle({"plugin": "picky", "input": {"question": "q"}})

    assert runs(orch, "ask-rules") == 0


async def test_every_link_failing_raises_fallbacks_exhausted_with_each_error(
    build: Build, recorder: MemoryRecorder
) -> None:
    class Broken(Backup):
        name = "ask-broken"

        async def run(self, input: AskIn, ctx: Context) -> AskOut:
            raise LookupError("no canned answer")

    class Chain(Ask):
        name = "chain"
        policy = Ask.policy.merged({"fallback": {"plugins": ["ask-broken", "ask-broken2"]}})

    class Broken2(Broken):
        name = "ask-broken2"

        async def run(self, input: AskIn, ctx: Context) -> AskOut:
            return {"answer": 42}  # type: ignore[return-value]

    provider = FakeProvider("fake").fail(server_error())
    orch = build(Broken, Broken2, Chain, providers=[provider])

    with pytest.raises(FallbacksExhaustedError) as caught:
        await orch.handle({"plugin": "chain", "input": {"question": "q"}})

    error = caught.value
    assert [e.code for e in error.errors] == ["provider_unavailable", "plugin_failed", "output_invalid"]
    assert [a["code"] for a in error.details["attempts"]] == [e.code for e in error.errors]
    assert "chain@2.0.0" in error.message
    assert "ask-broken2@1.0.0" in error.message
    assert http_status(error) == 502
    [record] = recorder.records
    assert record.outcome == "fallbacks_exhausted"
    assert (record.plugin, record.version) == ("chain", "2.0.0")
    # Every link tried and failed is in the audit, the primary first.
    assert [(a.plugin, a.code) for a in record.fallbacks] == [
        ("chain", "provider_unavailable"),
        ("ask-broken", "plugin_failed"),
        ("ask-broken2", "output_invalid"),
    ]


async def test_second_fallback_answers_after_two_failures(build: Build) -> None:
    class Broken(Backup):
        name = "ask-broken"

        async def run(self, input: AskIn, ctx: Context) -> AskOut:
            raise LookupError("no canned answer")

    class Chain(Ask):
        name = "chain"
        policy = Ask.policy.merged({"fallback": {"plugins": ["ask-broken", "ask-rules"]}})

    provider = FakeProvider("fake").fail(server_error())
    orch = build(Backup, Broken, Chain, providers=[provider])

    envelope = await orch.handle({"plugin": "chain", "input": {"question": "q"}})

    assert envelope.plugin == "ask-rules"
    assert [(a.plugin, a.code) for a in envelope.fallbacks] == [
        ("chain", "provider_unavailable"),
        ("ask-broken", "plugin_failed"),
    ]


def test_registration_refuses_a_fallback_with_another_contract() -> None:
    class Different(Plugin[AskIn, OtherOut]):
        name = "ask-rules"
        version = "1.0.0"
        description = "Same name as the fallback, other output."

        async def run(self, input: AskIn, ctx: Context) -> OtherOut:
            return OtherOut(answer="", confidence=0)

    registry = Registry()
    registry.add(Different)

    with pytest.raises(PluginValidationError, match="different input or output contract"):
        registry.add(Ask)
    with pytest.raises(PluginNotFoundError):
        registry.resolve("ask")


def test_registration_refuses_a_fallback_that_is_not_registered() -> None:
    with pytest.raises(PluginValidationError, match="not registered"):
        Registry().add(Ask)
