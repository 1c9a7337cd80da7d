"""sentiment@2: LLM label scoring with sentiment@1's exact contract, falling back to it."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from brickwork.contracts.plugin import Plugin
from brickwork.contracts.provider import Provider, ScoreRequest
from brickwork.plugins.sentiment import SentimentInput, SentimentOutput, SentimentRules
from brickwork.plugins.sentiment.llm import LABELS, SentimentLLM, softmax
from brickwork.plugins.sentiment.rules import analyse
from brickwork.runtime.models import ModelPrice, Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.testing import FakeClock, FakeProvider, PluginContractTests, server_error


def runtime(
    *plugins: type[Plugin[Any, Any]],
    provider: Provider | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    settings: Mapping[str, PluginSettings] | None = None,
) -> Orchestrator:
    registry = Registry(settings)
    for cls in plugins:
        registry.add(cls)
    providers = Providers(prices=dict(prices or {}))
    if provider is not None:
        providers.add(provider)
    return Orchestrator(registry, providers=providers, clock=FakeClock(autojump=True), rng=random.Random(7))


class TestSentimentLLMContract(PluginContractTests):
    plugin = SentimentLLM
    fallbacks: ClassVar[tuple[type[Plugin[Any, Any]], ...]] = (SentimentRules,)


def test_keeps_the_exact_contract_of_sentiment_1() -> None:
    assert SentimentLLM.input_type is SentimentInput
    assert SentimentLLM.output_type is SentimentOutput
    registry = Registry()
    rules = registry.add(SentimentRules)
    llm = registry.add(SentimentLLM)
    assert rules is not None
    assert llm is not None
    assert llm.contract() == rules.contract()
    assert llm.policy.fallback.plugins == ("sentiment@1.0.0",)


async def test_label_and_score_come_from_the_scripted_logprobs() -> None:
    logprobs = {"positive": -3.0, "negative": -0.1, "neutral": -2.0}
    provider = FakeProvider("local").enqueue(logprobs)
    orch = runtime(SentimentRules, SentimentLLM, provider=provider)
    envelope = await orch.handle({"plugin": "sentiment@2", "input": "The food was awful."})

    total = sum(math.exp(v) for v in logprobs.values())
    expected = (math.exp(-3.0) - math.exp(-0.1)) / total
    assert envelope.output["label"] == "negative"
    assert envelope.output["score"] == pytest.approx(expected)
    assert envelope.output["evidence"] == [e.model_dump() for e in analyse("The food was awful.").evidence]
    assert (envelope.plugin, envelope.version, envelope.degraded) == ("sentiment", "2.0.0", False)
    assert envelope.models == ["local:qwen2.5-0.5b"]
    assert envelope.prompt_version == "classify@1"
    [request] = provider.calls
    assert isinstance(request, ScoreRequest)
    assert request.candidates == list(LABELS)
    assert "The food was awful." in request.messages[-1].content


@pytest.mark.parametrize(
    ("logprobs", "label"),
    [
        ({"positive": -0.2, "negative": -4.0, "neutral": -1.9}, "positive"),
        ({"positive": -2.5, "negative": -2.6, "neutral": -0.2}, "neutral"),
        ({"positive": -1.0, "negative": -0.9, "neutral": -5.0}, "negative"),
    ],
)
async def test_the_most_probable_label_wins(logprobs: dict[str, float], label: str) -> None:
    orch = runtime(SentimentRules, SentimentLLM, provider=FakeProvider("local").enqueue(logprobs))
    envelope = await orch.handle({"plugin": "sentiment@2", "input": "It was a film."})
    assert envelope.output["label"] == label
    probs = softmax(logprobs)
    assert envelope.output["score"] == pytest.approx(probs["positive"] - probs["negative"])


def test_softmax_is_stable_for_very_negative_logprobs() -> None:
    probs = softmax({"a": -1000.0, "b": -1001.0})
    assert probs["a"] == pytest.approx(1 / (1 + math.exp(-1)))
    assert sum(probs.values()) == pytest.approx(1.0)


async def test_model_down_sentiment_1_answers_with_the_same_contract() -> None:
    provider = FakeProvider("local").fail(server_error(503), times=3)
    orch = runtime(SentimentRules, SentimentLLM, provider=provider)
    text = "The staff were lovely, but the room was dirty and the food awful."
    envelope = await orch.handle({"plugin": "sentiment@2", "input": text})
    assert (envelope.plugin, envelope.version) == ("sentiment", "1.0.0")
    assert envelope.degraded
    assert [(a.plugin, a.version) for a in envelope.fallbacks] == [("sentiment", "2.0.0")]
    assert envelope.output == analyse(text).model_dump()
    SentimentOutput.model_validate(envelope.output)


async def test_over_budget_sentiment_1_answers_without_a_model_call() -> None:
    provider = FakeProvider("local")
    orch = runtime(
        SentimentRules,
        SentimentLLM,
        provider=provider,
        prices={"local:*": ModelPrice(input=500.0, output=500.0)},
        settings={"sentiment": PluginSettings(policy={"budget": {"limit": 0.001}})},
    )
    envelope = await orch.handle({"plugin": "sentiment@2", "input": "I love it"})
    assert envelope.degraded
    assert envelope.version == "1.0.0"
    assert [a.code for a in envelope.fallbacks] == ["budget_exceeded"]
    assert envelope.output["label"] == "positive"
    assert provider.calls == []


async def test_both_versions_are_selectable_by_version_and_label() -> None:
    settings = {"sentiment": PluginSettings(labels={"prod": "2.0.0", "rules": "1.0.0"})}
    provider = FakeProvider("local").enqueue({"positive": -0.1, "negative": -5.0, "neutral": -3.0})
    orch = runtime(SentimentRules, SentimentLLM, provider=provider, settings=settings)
    by_label = await orch.handle({"plugin": "sentiment@rules", "input": "I love it"})
    by_version = await orch.handle({"plugin": "sentiment@1.0.0", "input": "I love it"})
    prod = await orch.handle({"plugin": "sentiment@prod", "input": "I love it"})
    default = await orch.handle({"plugin": "sentiment", "input": "I love it"})
    assert [e.version for e in (by_label, by_version, prod, default)] == ["1.0.0", "1.0.0", "2.0.0", "2.0.0"]
    assert len(provider.calls) == 1  # only the LLM version calls the model, then its cache answers
    assert (prod.cache_hit, default.cache_hit) == (False, True)
    assert prod.output["label"] == "positive"


async def test_long_texts_are_cut_for_the_model_and_say_so() -> None:
    provider = FakeProvider("local")
    orch = runtime(SentimentRules, SentimentLLM, provider=provider)
    text = "Great. " * 2000
    envelope = await orch.handle({"plugin": "sentiment@2", "input": text})
    [request] = provider.calls
    assert isinstance(request, ScoreRequest)
    assert len(request.messages[-1].content) < SentimentLLM.max_chars + 500
    assert any("first 6000 of 14000 characters" in w for w in envelope.warnings)
    assert len(envelope.output["evidence"]) == 2000  # evidence covers the whole text
