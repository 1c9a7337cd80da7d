"""The model policies are one stack that calls and streams share: the same wrapper
objects, composed once per plugin version, each seen on a stream as on a call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from brickwork.contracts.errors import ConfigurationError, PermissionDeniedError, ProviderUnavailableError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import BreakerPolicy, BudgetPolicy, FallbackPolicy, Policy, RetryPolicy
from brickwork.contracts.provider import CompletionRequest, ModelPrice, StreamChunk
from brickwork.observability.tracing import configure_tracing
from brickwork.policies.model import (
    AvailableModel,
    BreakerModel,
    BudgetModel,
    DeadlineModel,
    FallbackModel,
    MeteredModel,
    Model,
    PermittedModel,
    RetryModel,
    WrapperModel,
)
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry
from brickwork.testing import FakeProvider

POLICY = Policy(
    retry=RetryPolicy(max_attempts=2, base_delay=0),
    breaker=BreakerPolicy(min_calls=50),
    budget=BudgetPolicy(limit=100.0),
    fallback=FallbackPolicy(models=("spare:big",)),
)


class In(PluginInput):
    text: str
    stream: bool = False


class Out(PluginOutput):
    text: str


class Both(Plugin[In, Out]):
    name = "both"
    version = "1.0.0"
    description = "Calls or streams its model."
    model = "fake:small"
    permissions = frozenset({"model"})
    text_field = "text"
    policy = POLICY

    async def run(self, input: In, ctx: Context) -> Out:
        if input.stream:
            parts = [chunk.delta async for chunk in ctx.model.stream(input.text)]
            return Out(text="".join(parts))
        return Out(text=(await ctx.model.complete(input.text)).text)


#: A composed stack's layers on the way to its first model, outermost first.
ORDER = [
    PermittedModel,
    FallbackModel,
    AvailableModel,
    BreakerModel,
    RetryModel,
    DeadlineModel,
    BudgetModel,
    MeteredModel,
]


def layers(model: Model) -> list[WrapperModel]:
    """Every wrapper of a composed stack, outermost first."""
    found: list[WrapperModel] = []
    todo = [model]
    while todo:
        layer = todo.pop(0)
        if isinstance(layer, WrapperModel):
            found.append(layer)
            if isinstance(layer, FallbackModel):
                todo.extend(m for _, m in layer.models)
            else:
                todo.append(layer.inner)
    return found


def orchestrator(*providers: FakeProvider, tracing: Any = None) -> Orchestrator:
    registry = Registry()
    registry.add(Both)
    table = Providers(prices={"fake:small": ModelPrice(1.0, 1.0), "spare:big": ModelPrice(2.0, 2.0)})
    for provider in providers:
        table.add(provider)
    return Orchestrator(registry, providers=table, tracing=tracing)


async def test_a_call_and_a_stream_pass_through_the_very_same_policy_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orch = orchestrator(FakeProvider("fake"), FakeProvider("spare"))
    entry = orch.registry.resolve("both")
    stack = orch.bindings.get(entry).chat
    assert orch.bindings.get(entry).chat is stack  # composed once, kept
    seen: dict[int, list[str]] = {}
    for layer in layers(stack):
        original = layer.open

        def counted(call: Any, run: Any, *, _layer: WrapperModel = layer, _open: Any = original) -> Any:
            seen.setdefault(id(_layer), []).append(call.operation)
            return _open(call, run)

        monkeypatch.setattr(layer, "open", counted)
    assert {type(layer) for layer in layers(stack)} == set(ORDER)

    call = await orch.handle({"plugin": "both", "input": {"text": "hi"}})
    stream = await orch.handle({"plugin": "both", "input": {"text": "hi", "stream": True}})
    assert call.output == stream.output == {"text": "fake reply"}
    # The outer layers and the first model's six each served the call, then the
    # stream; the spare model's layers were never needed.
    used = [type(layer) for layer in layers(stack) if seen.get(id(layer)) == ["chat", "stream"]]
    assert used == ORDER
    assert len(seen) == len(ORDER)


class FailsToOpen(FakeProvider):
    """Its calls and streams fail before any output, ``times`` times."""

    def __init__(self, name: str, times: int) -> None:
        super().__init__(name)
        self.times = times

    async def complete(self, request: CompletionRequest) -> Any:
        if self.times:
            self.times -= 1
            self.calls.append(request)
            raise ProviderUnavailableError("down")
        return await super().complete(request)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        if self.times:
            self.times -= 1
            self.calls.append(request)
            raise ProviderUnavailableError("down")
        async for chunk in super().stream(request):
            yield chunk


@pytest.mark.parametrize("stream", [False, True])
async def test_retry_then_fallback_and_budget_and_account_alike_for_calls_and_streams(stream: bool) -> None:
    first, spare = FailsToOpen("fake", times=2), FakeProvider("spare")
    orch = orchestrator(first, spare)
    envelope = await orch.handle({"plugin": "both", "input": {"text": "hello there", "stream": stream}})
    assert envelope.output == {"text": "fake reply"}
    assert len(first.calls) == 2  # retried once (max_attempts=2), then the next model
    assert len(spare.calls) == 1
    assert envelope.models == ["spare:big"]
    assert envelope.warnings == ["model fake:small failed (retries_exhausted); trying next"]
    assert envelope.usage.calls == 1
    assert envelope.cost == pytest.approx((2 + 2) * 2.0 / 1e6)  # the spare's price, its usage


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_call_and_a_model_stream_each_get_their_span(stream: bool) -> None:
    tracing = configure_tracing("memory")
    assert tracing is not None
    orch = orchestrator(FakeProvider("fake"), FakeProvider("spare"), tracing=tracing)
    await orch.handle({"plugin": "both", "input": {"text": "hello there", "stream": stream}})
    spans = {span.name: span for span in tracing.exporter.get_finished_spans()}
    model = spans["chat small"]
    attributes = dict(model.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "fake"
    assert attributes["gen_ai.usage.input_tokens"] == 2
    assert attributes["gen_ai.usage.output_tokens"] == 2
    plugin = spans["invoke_agent both@1.0.0"]
    assert model.parent is not None
    assert model.parent.span_id == plugin.context.span_id


# --- review fixes: what is refused, and before what ------------------------------------


class Streams(Both):
    name = "streams"
    permissions = frozenset()  # no 'model'
    model = None
    policy = Policy()

    async def run(self, input: In, ctx: Context) -> Out:
        ctx.model.stream(input.text)  # refused here, at the call, not on first read
        raise AssertionError("not reached")


async def test_a_stream_without_the_model_permission_is_refused_when_asked_for() -> None:
    registry = Registry()
    registry.add(Streams)
    with pytest.raises(PermissionDeniedError, match="did not declare the 'model' permission"):
        await Orchestrator(registry).handle({"plugin": "streams", "input": {"text": "x"}})


class Binds(Both):
    name = "binds"
    policy = Policy(retry=None)

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(text=(await ctx.model.bind("spare:big").complete(input.text)).text)


async def test_choosing_another_model_needs_the_bind_permission() -> None:
    orch = orchestrator(FakeProvider("fake"), FakeProvider("spare"))
    orch.registry.add(Binds)
    with pytest.raises(PermissionDeniedError, match="'bind' permission"):
        await orch.handle({"plugin": "binds", "input": {"text": "x"}})

    class BindsDeclared(Binds):
        name = "binds-declared"
        permissions = frozenset({"model", "bind"})

    orch.registry.add(BindsDeclared)
    envelope = await orch.handle({"plugin": "binds-declared", "input": {"text": "x"}})
    assert envelope.models == ["spare:big"]


async def test_a_fallback_model_whose_provider_is_missing_does_not_fail_the_primary() -> None:
    class Windowed(Both):
        name = "windowed"

        async def run(self, input: In, ctx: Context) -> Out:
            return Out(text=f"{ctx.model.context_window()} {(await ctx.model.complete(input.text)).text}")

    orch = orchestrator(FakeProvider("fake", context_window=1000))  # no "spare" provider
    orch.registry.add(Windowed)
    envelope = await orch.handle({"plugin": "windowed", "input": {"text": "x"}})
    assert envelope.output == {"text": "1000 fake reply"}


async def test_a_missing_provider_is_refused_before_any_policy_counts_the_call() -> None:
    tracing = configure_tracing("memory")
    assert tracing is not None
    orch = orchestrator(tracing=tracing)  # neither provider is there
    with pytest.raises(ConfigurationError, match="no provider 'fake'"):
        await orch.handle({"plugin": "both", "input": {"text": "x"}})
    names = [span.name for span in tracing.exporter.get_finished_spans()]
    assert not any(name.startswith("chat ") for name in names)  # no model call was made
    snapshot = await orch.state.breaker_snapshot(
        "breaker:model:both@1.0.0:fake",
        POLICY.breaker,
        now=orch.clock.time(),  # type: ignore[arg-type]
    )
    assert snapshot.calls == 0


async def test_a_stream_span_has_the_finish_reason_and_only_reported_usage() -> None:
    tracing = configure_tracing("memory")
    assert tracing is not None

    class NoUsage(FakeProvider):
        async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
            yield StreamChunk(delta="one ")
            yield StreamChunk(delta="two", finish_reason="length")

    orch = orchestrator(NoUsage("fake"), tracing=tracing)
    envelope = await orch.handle({"plugin": "both", "input": {"text": "hi", "stream": True}})
    assert envelope.usage.output_tokens == 2  # one a chunk, estimated
    [span] = [s for s in tracing.exporter.get_finished_spans() if s.name == "chat small"]
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert "gen_ai.usage.output_tokens" not in attributes  # an estimate is no report
    assert "gen_ai.response.model" not in attributes  # the provider did not say
