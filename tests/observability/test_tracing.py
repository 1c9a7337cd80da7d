"""OpenTelemetry spans: request → plugin run → model call, GenAI attributes, no text."""

from __future__ import annotations

from typing import Any

import pytest

from brickwork import build
from brickwork.contracts.errors import ProviderUnavailableError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import FallbackPolicy, Policy
from brickwork.observability.tracing import configure_tracing
from brickwork.runtime.config import Config
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry
from brickwork.testing import FakeProvider

SECRET_TEXT = "my card is 4111 1111 1111 1111"


class In(PluginInput):
    text: str


class Out(PluginOutput):
    text: str


class Rules(Plugin[In, Out]):
    name = "echo"
    version = "1.0.0"
    description = "No model."

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(text="rules")


class Llm(Plugin[In, Out]):
    name = "echo"
    version = "2.0.0"
    description = "Asks a model."
    model = "fake:tiny"
    permissions = frozenset({"model"})
    policy = Policy(retry=None, fallback=FallbackPolicy(plugins=("echo@1.0.0",)))

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(text=(await ctx.model.complete(input.text)).text)


def traced(provider: FakeProvider) -> tuple[Orchestrator, Any]:
    tracing = configure_tracing("memory")
    assert tracing is not None
    registry = Registry()
    registry.add(Rules)
    registry.add(Llm)
    providers = Providers()
    providers.add(provider)
    return Orchestrator(registry, providers=providers, tracing=tracing), tracing.exporter


async def test_spans_nest_and_carry_genai_attributes_but_no_text() -> None:
    orch, exporter = traced(FakeProvider("fake", default="hello back"))
    envelope = await orch.handle({"plugin": "echo@2", "input": SECRET_TEXT, "tenant": "acme"})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"brickwork.request", "invoke_agent echo@2.0.0", "chat tiny"}
    request, plugin, chat = spans["brickwork.request"], spans["invoke_agent echo@2.0.0"], spans["chat tiny"]
    assert plugin.parent.span_id == request.context.span_id
    assert chat.parent.span_id == plugin.context.span_id
    assert request.attributes["brickwork.trace_id"] == envelope.trace_id
    assert request.attributes["brickwork.plugin.version"] == "2.0.0"
    assert plugin.attributes["brickwork.plugin.name"] == "echo"
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "fake"
    assert chat.attributes["gen_ai.request.model"] == "tiny"
    assert chat.attributes["gen_ai.usage.input_tokens"] == envelope.usage.input_tokens
    assert chat.attributes["gen_ai.usage.output_tokens"] == envelope.usage.output_tokens
    everything = repr([dict(s.attributes) for s in spans.values()])
    assert "4111" not in everything
    assert "hello back" not in everything


async def test_a_failed_model_call_and_the_fallback_are_both_visible() -> None:
    provider = FakeProvider("fake")
    provider.fail(ProviderUnavailableError("down"))
    orch, exporter = traced(provider)
    envelope = await orch.handle({"plugin": "echo@2", "input": "hi"})
    assert envelope.degraded
    spans = exporter.get_finished_spans()
    chat = next(s for s in spans if s.name == "chat tiny")
    assert chat.attributes["error.type"] == "provider_unavailable"
    assert chat.status.status_code.name == "ERROR"
    failed_run = next(s for s in spans if s.name == "invoke_agent echo@2.0.0")
    assert failed_run.attributes["error.type"] == "provider_unavailable"
    assert any(s.name == "invoke_agent echo@1.0.0" and s.status.is_ok for s in spans)
    request = next(s for s in spans if s.name == "brickwork.request")
    assert request.attributes["brickwork.degraded"] is True


def test_tracing_is_off_by_default_and_configurable() -> None:
    assert build(Config()).tracing is None
    on = build(Config.model_validate({"observability": {"tracing": {"exporter": "console"}}}))
    assert on.tracing is not None
    with pytest.raises(Exception, match="exporter"):
        Config.model_validate({"observability": {"tracing": {"exporter": "jaeger"}}})
