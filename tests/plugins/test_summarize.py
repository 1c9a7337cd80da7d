"""summarize@2 (LLM, map-reduce) and its ladder down to summarize@1 (extractive)."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from brickwork.contracts.errors import ConfigurationError, http_status
from brickwork.contracts.plugin import Plugin
from brickwork.contracts.provider import CompletionRequest, Provider
from brickwork.plugin_api.segmentation import pack, sentence_spans
from brickwork.plugins.summarize import SummarizeExtractive, SummarizeInput, SummarizeLLM
from brickwork.plugins.summarize.abstractive import parse_bullets
from brickwork.plugins.summarize.extractive import extract
from brickwork.runtime.models import ModelPrice, Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.testing import FakeClock, FakeProvider, FunctionProvider, PluginContractTests, server_error

DATASET = Path(__file__).resolve().parents[2] / "datasets" / "summarize-dev.jsonl"

TEXT = (
    "The city council approved a new budget on Tuesday. The plan gives $4.5 million to road "
    "repairs. Mayor Jane Ortiz said the repairs would start in May. Dr. Smith, who chairs the "
    "finance committee, called it balanced. Property taxes will not rise this year. A local "
    "bakery won a prize for its rye bread."
)


def runtime(
    *plugins: type[Plugin[Any, Any]],
    provider: Provider | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    settings: Mapping[str, PluginSettings] | None = None,
) -> Orchestrator:
    """Plugins registered in order (fallback targets first), on a fake clock that
    jumps through retry back-offs."""
    registry = Registry(settings)
    for cls in plugins:
        registry.add(cls)
    providers = Providers(prices=dict(prices or {}))
    if provider is not None:
        providers.add(provider)
    return Orchestrator(registry, providers=providers, clock=FakeClock(autojump=True), rng=random.Random(7))


def prompt_of(request: Any) -> str:
    assert isinstance(request, CompletionRequest)
    return "\n".join(m.content for m in request.messages)


# --- conformance -----------------------------------------------------------------


class TestSummarizeExtractiveContract(PluginContractTests):
    plugin = SummarizeExtractive


class TestSummarizeLLMContract(PluginContractTests):
    plugin = SummarizeLLM
    fallbacks: ClassVar[tuple[type[Plugin[Any, Any]], ...]] = (SummarizeExtractive,)

    def make_providers(self) -> list[Provider]:
        reply = "- Ada Lovelace wrote the first published program.\n- She worked with Babbage."
        return [FakeProvider("local", default=reply)]


def test_both_versions_share_one_contract() -> None:
    registry = Registry()
    low = registry.add(SummarizeExtractive)
    high = registry.add(SummarizeLLM)
    assert low is not None
    assert high is not None
    assert low.contract() == high.contract()
    assert high.policy.fallback.plugins == ("summarize@1.0.0",)


def test_registering_the_llm_version_alone_names_the_missing_fallback() -> None:
    with pytest.raises(Exception, match=r"summarize@1\.0\.0"):
        Registry().add(SummarizeLLM)


# --- extractive: never invents -----------------------------------------------------


def dataset_texts() -> list[str]:
    return [json.loads(line)["text"] for line in DATASET.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("length", ["short", "medium", "long", 25])
@pytest.mark.parametrize("bullets", [False, True])
def test_extractive_summary_never_invents(length: str | int, bullets: bool) -> None:
    for text in [TEXT, *dataset_texts()]:
        out = extract(SummarizeInput(text=text, length=length, bullets=bullets))
        sentences = {s.text for s in sentence_spans(text)}
        points = out.bullets if bullets else [s.text for s in sentence_spans(out.summary)]
        assert points
        for point in points:
            assert point in sentences, point
            assert point in text
        assert out.method == "extractive"
        if bullets:
            assert out.summary == "\n".join(f"- {p}" for p in out.bullets)


def test_extractive_keeps_order_and_word_limit() -> None:
    text = dataset_texts()[0]
    out = extract(SummarizeInput(text=text, length=45))
    positions = [text.index(s.text) for s in sentence_spans(out.summary)]
    assert positions == sorted(positions)
    assert len(out.summary.split()) <= 45
    short = extract(SummarizeInput(text=text, length="short"))
    long = extract(SummarizeInput(text=text, length="long"))
    assert len(short.summary) < len(long.summary)


def test_extractive_prefers_central_sentences() -> None:
    out = extract(SummarizeInput(text=TEXT, length="short"))
    assert "budget" in out.summary or "repairs" in out.summary
    assert "bakery" not in out.summary


def test_extractive_ranks_long_texts_in_groups() -> None:
    sentences = [f"Report {i} says the river flooded the valley farms again in spring." for i in range(400)]
    out = extract(SummarizeInput(text=" ".join(sentences), length="short"))
    assert out.chunks == 3  # 400 sentences, 150 at a time
    assert all(s.text in sentences for s in sentence_spans(out.summary))


def test_sentences_are_exact_slices_of_the_text() -> None:
    text = "Heading\n\nDr. Smith paid $3.50 for it.  Then he left!\nWhy? Nobody knows."
    spans = sentence_spans(text)
    assert [s.text for s in spans] == [
        "Heading",
        "Dr. Smith paid $3.50 for it.",
        "Then he left!",
        "Why?",
        "Nobody knows.",
    ]
    for span in spans:
        assert text[span.start : span.end] == span.text


def test_pack_fits_the_budget_and_covers_the_text() -> None:
    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(30))
    chunks = pack(text, sentence_spans(text), 20, lambda t: len(t.split()))
    assert len(chunks) == 15  # two 7-word sentences (+1 each for the joint) per chunk
    assert " ".join(c.text for c in chunks) == text
    giant = "word " * 50
    pieces = pack(giant, sentence_spans(giant), 10, lambda t: len(t.split()))
    assert all(len(p.text.split()) <= 10 for p in pieces)
    assert sum(len(p.text.split()) for p in pieces) == 50


# --- abstractive ---------------------------------------------------------------------


async def test_abstractive_short_text_is_one_call() -> None:
    provider = FakeProvider("local").enqueue("Summary: The council passed a budget with road money.")
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    envelope = await orch.handle({"plugin": "summarize@2", "input": {"text": TEXT, "style": "formal"}})
    assert envelope.output == {
        "summary": "The council passed a budget with road money.",
        "bullets": [],
        "method": "abstractive",
        "chunks": 1,
        "note": None,
    }
    assert not envelope.degraded
    [request] = provider.calls
    prompt = prompt_of(request)
    assert TEXT in prompt
    assert "formal" in prompt
    assert "at most 100 words" in prompt
    assert envelope.prompt_version == "combine@1,summarize@1"


async def test_abstractive_bullets_and_word_limit() -> None:
    reply = "Here is a summary:\n1. Budget approved on Tuesday.\n2) Road repairs start in May.\n- Taxes stay the same."
    provider = FakeProvider("local").enqueue(reply)
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    envelope = await orch.handle(
        {"plugin": "summarize@2", "input": {"text": TEXT, "bullets": True, "length": 10}}
    )
    assert envelope.output["bullets"] == ["Budget approved on Tuesday.", "Road repairs start in May."]
    assert envelope.output["summary"] == "- Budget approved on Tuesday.\n- Road repairs start in May."
    assert envelope.output["note"] == "cut to 10 words"


async def test_abstractive_prose_is_cut_at_a_sentence_within_the_limit() -> None:
    long_reply = "The council approved a budget. " + "It funds many things for the town. " * 10
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=FakeProvider("local").enqueue(long_reply))
    envelope = await orch.handle({"plugin": "summarize@2", "input": {"text": TEXT, "length": 20}})
    summary = envelope.output["summary"]
    assert len(summary.split()) <= 20
    assert summary.startswith("The council approved a budget. It funds")
    assert summary.endswith(".")


def test_parse_bullets_falls_back_to_sentences() -> None:
    assert parse_bullets("* one\n• two\n3. three") == ["one", "two", "three"]
    assert parse_bullets("First point. Second point.") == ["First point.", "Second point."]


#: A model with a tiny window (FakeProvider counts words): summarize@2 asks its
#: bound model for the window, so a long text is map-reduced to fit it.
WINDOW = 400


def long_text(sentences: int = 80) -> str:
    return " ".join(
        f"Fact {i}: the river station measured {i * 3} millimetres of rain today." for i in range(sentences)
    )


async def test_map_reduce_splits_a_long_text_into_chunks_that_fit() -> None:
    text = long_text()

    def answer(request: CompletionRequest) -> str:
        prompt = prompt_of(request)
        if prompt.startswith("Summarize"):
            return f"Partial summary {prompt.count('Fact')} facts."
        return "Rain was measured every day at the river station."

    provider = FunctionProvider(answer, name="local", context_window=WINDOW)
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    envelope = await orch.handle({"plugin": "summarize@2", "input": {"text": text}})

    maps = [prompt_of(r) for r in provider.calls if prompt_of(r).startswith("Summarize")]
    combines = [prompt_of(r) for r in provider.calls if prompt_of(r).startswith("Below are summaries")]
    out = envelope.output
    assert out["method"] == "abstractive"
    assert out["chunks"] == len(maps) > 1
    assert len(combines) == 1  # the partial summaries fit together in one combine call
    assert out["summary"] == "Rain was measured every day at the river station."
    # Every sentence of the text went to exactly one map call, in order, part i of n.
    for i in range(80):
        assert sum(f"Fact {i}:" in p for p in maps) == 1
    assert all(f"(part {i} of {len(maps)} of a longer document)" in p for i, p in enumerate(maps, 1))
    # Each call's prompt plus the room left for its answer fits the window.
    for request in provider.calls:
        assert isinstance(request, CompletionRequest)
        assert provider.count_tokens("", prompt_of(request)) + request.max_tokens <= WINDOW
    # The reduce saw every partial summary.
    assert combines[0].count("Partial summary") == len(maps)
    assert envelope.usage.calls == len(maps) + 1


async def test_reduce_is_recursive_when_partial_summaries_do_not_fit_together() -> None:
    text = long_text(120)
    wordy = "The station logged rain on this part of the record with many careful notes. " * 3

    def answer(request: CompletionRequest) -> str:
        return wordy

    provider = FunctionProvider(answer, name="local", context_window=WINDOW)
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    envelope = await orch.handle({"plugin": "summarize@2", "input": {"text": text}})

    prompts = [prompt_of(r) for r in provider.calls]
    maps = [p for p in prompts if p.startswith("Summarize")]
    combines = [p for p in prompts if p.startswith("Below are summaries")]
    assert envelope.output["chunks"] == len(maps)
    assert len(combines) > 2  # intermediate combines, then the final one
    note = envelope.output["note"]
    assert note.startswith(f"summarized in {len(maps)} parts, combined in ")
    assert int(note.split("combined in ")[1].split(" ")[0]) >= 2
    for request in provider.calls:
        assert isinstance(request, CompletionRequest)
        assert provider.count_tokens("", prompt_of(request)) + request.max_tokens <= WINDOW
    assert len(envelope.output["summary"].split()) <= 100


# --- the ladder ----------------------------------------------------------------------


async def test_model_down_extractive_answers_and_the_envelope_says_so() -> None:
    provider = FakeProvider("local").fail(server_error(503), times=3)
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    envelope = await orch.handle({"plugin": "summarize@2", "input": {"text": TEXT, "length": "short"}})
    assert (envelope.plugin, envelope.version) == ("summarize", "1.0.0")
    assert envelope.degraded
    assert [(a.plugin, a.version) for a in envelope.fallbacks] == [("summarize", "2.0.0")]
    assert envelope.warnings[0] == "degraded: answered by summarize@1.0.0 after summarize@2.0.0 failed"
    assert envelope.output["method"] == "extractive"
    assert envelope.output == extract(SummarizeInput(text=TEXT, length="short")).model_dump()
    assert len(provider.calls) == 3  # the retry policy tried, then the ladder moved on


async def test_over_budget_extractive_answers_without_calling_the_model() -> None:
    provider = FakeProvider("local")
    orch = runtime(
        SummarizeExtractive,
        SummarizeLLM,
        provider=provider,
        prices={"local:qwen2.5-0.5b": ModelPrice(input=1000.0, output=1000.0)},
        settings={"summarize": PluginSettings(policy={"budget": {"limit": 0.01}})},
    )
    envelope = await orch.handle({"plugin": "summarize@2", "input": {"text": TEXT}})
    assert envelope.degraded
    assert envelope.version == "1.0.0"
    assert [a.code for a in envelope.fallbacks] == ["budget_exceeded"]
    assert provider.calls == []


async def test_empty_model_answer_moves_down_the_ladder() -> None:
    provider = FakeProvider("local").enqueue("   ")
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    envelope = await orch.handle({"plugin": "summarize@2", "input": {"text": TEXT}})
    assert envelope.degraded
    assert [a.code for a in envelope.fallbacks] == ["provider_bad_response"]
    assert envelope.output["method"] == "extractive"


async def test_a_window_too_small_for_the_prompt_is_a_configuration_error_not_a_502() -> None:
    # A mistake of the deployment's, not of a model at run time: no fallback hides it.
    provider = FunctionProvider(lambda r: "never asked", name="local", context_window=60)
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    with pytest.raises(ConfigurationError, match="context of 60 tokens leaves no room") as caught:
        await orch.handle({"plugin": "summarize@2", "input": {"text": TEXT}})
    assert http_status(caught.value) == 500
    assert provider.calls == []


def test_the_local_provider_reports_its_configured_window() -> None:
    from brickwork.providers.local import LocalProvider

    assert LocalProvider(n_ctx=2048).context_window("qwen2.5-0.5b") == 2048
