"""Plugins that stream their text: ``ctx.emit``, ``Orchestrator.stream``, the check on
the assembled output, and summarize/translate streaming word by word."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brickwork.contracts.errors import OutputValidationError, PluginValidationError, ProviderUnavailableError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import CachePolicy, Policy
from brickwork.contracts.provider import CompletionRequest, StreamChunk
from brickwork.contracts.request import Envelope
from brickwork.plugin_api import words
from brickwork.plugins.summarize import SummarizeExtractive, SummarizeLLM
from brickwork.plugins.summarize.answer import StreamedAnswer, shape
from brickwork.plugins.translate import TranslateLLM, TranslateRules
from brickwork.plugins.translate.answer import StreamedTranslation, clean
from brickwork.plugins.translate.glossary import Protected, restore
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.registry import Registry
from brickwork.testing import FakeProvider

TEXT = (
    "The city council approved the new budget on Tuesday. The plan gives four million "
    "dollars to road repairs, which start in May. Property taxes will not rise this year."
)


class CharStreams(FakeProvider):
    """Streams its scripted reply a few characters at a time (a placeholder or a
    preamble arrives split over chunks, as with a real model)."""

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        completion = await self.complete(request)
        text = completion.text
        pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield StreamChunk(
                delta=piece, finish_reason="stop" if last else None, usage=completion.usage if last else None
            )


def runtime(*plugins: type[Plugin[Any, Any]], provider: FakeProvider) -> Orchestrator:
    registry = Registry()
    for cls in plugins:
        registry.add(cls)
    providers = Providers()
    providers.add(provider)
    return Orchestrator(registry, providers=providers)


async def collect(orch: Orchestrator, request: dict[str, Any]) -> tuple[list[str], Envelope]:
    pieces: list[str] = []
    envelope: Envelope | None = None
    async for item in orch.stream(request):
        if isinstance(item, str):
            pieces.append(item)
        else:
            envelope = item
    assert envelope is not None
    return pieces, envelope


# --- the mechanism ---------------------------------------------------------------


class In(PluginInput):
    text: str


class Out(PluginOutput):
    reply: str
    words: int


class Writer(Plugin[In, Out]):
    name = "writer"
    version = "1.0.0"
    text_field = "reply"
    description = "Writes its input back word by word."

    async def run(self, input: In, ctx: Context) -> Out:
        words = input.text.split()
        for i, word in enumerate(words):
            ctx.emit(word if i == 0 else " " + word)
        return Out(reply=" ".join(words), words=len(words))


class Liar(Writer):
    name = "liar"
    description = "Streams one text and returns another."

    async def run(self, input: In, ctx: Context) -> Out:
        ctx.emit("what you read")
        return Out(reply="what you get", words=3)


async def test_a_plugin_streams_its_text_field_piece_by_piece() -> None:
    orch = runtime(Writer, provider=FakeProvider())
    pieces, envelope = await collect(orch, {"plugin": "writer", "input": {"text": "one two three"}})
    assert pieces == ["one", " two", " three"]
    assert envelope.output == {"reply": "one two three", "words": 3}
    # the same call without a reader: nothing to stream to, the same envelope
    plain = await orch.handle({"plugin": "writer", "input": {"text": "one two three"}})
    assert plain.output == envelope.output


async def test_streamed_text_that_differs_from_the_output_fails_the_run() -> None:
    orch = runtime(Liar, provider=FakeProvider())
    with pytest.raises(OutputValidationError, match="differs from its output's 'reply'"):
        await collect(orch, {"plugin": "liar", "input": {"text": "x"}})
    # without a reader nothing was sent, so nothing can differ
    assert (await orch.handle({"plugin": "liar", "input": {"text": "x"}})).output["reply"] == "what you get"


def test_text_field_must_name_a_string_field_of_the_output() -> None:
    class NoSuch(Writer):
        text_field = "missing"

    class NotText(Writer):
        text_field = "words"

    for cls in (NoSuch, NotText):
        with pytest.raises(PluginValidationError, match="text_field"):
            Registry().add(cls)


async def test_a_nested_call_does_not_stream_into_its_callers_reply() -> None:
    class Outer(Writer):
        name = "outer"
        description = "Calls writer, then streams its own text."
        permissions = frozenset({"call:writer"})

        async def run(self, input: In, ctx: Context) -> Out:
            inner = await ctx.call("writer", {"text": "inner words"})
            ctx.emit("outer")
            return Out(reply="outer", words=inner.output["words"])

    orch = runtime(Writer, Outer, provider=FakeProvider())
    pieces, envelope = await collect(orch, {"plugin": "outer", "input": {"text": "x"}})
    assert pieces == ["outer"]
    assert envelope.output == {"reply": "outer", "words": 2}


async def test_leaving_the_stream_early_cancels_the_run() -> None:
    steps: list[str] = []

    class Slow(Writer):
        name = "slow"
        description = "Writes a word a second."

        async def run(self, input: In, ctx: Context) -> Out:
            for word in input.text.split():
                steps.append(word)
                ctx.emit(word)
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    steps.append("cancelled")
                    raise
            return Out(reply=input.text, words=len(steps))

    recorder = MemoryRecorder()
    registry = Registry()
    registry.add(Slow)
    orch = Orchestrator(registry, recorders=[recorder])
    stream = orch.stream({"plugin": "slow", "input": {"text": "a b c d"}})
    assert await anext(stream) == "a"
    await stream.aclose()  # type: ignore[attr-defined]
    assert steps == ["a", "cancelled"]  # the run stopped at once, not after four seconds
    assert [r.outcome for r in recorder.records] == ["cancelled"]


class Plain(Plugin[In, Out]):
    name = "plain"
    version = "1.0.0"
    text_field = "reply"
    description = "Answers whole."
    policy = Policy(cache=CachePolicy(ttl=60))

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(reply=input.text.upper(), words=1)


async def test_a_plugin_that_does_not_stream_gives_its_text_as_one_piece() -> None:
    orch = runtime(Plain, provider=FakeProvider())
    first = await collect(orch, {"plugin": "plain", "input": {"text": "whole"}})
    again = await collect(orch, {"plugin": "plain", "input": {"text": "whole"}})  # from the cache
    assert first[0] == again[0] == ["WHOLE"]
    assert again[1].cache_hit


async def test_a_streamed_answer_is_not_cached_for_callers_who_read_whole() -> None:
    class Cached(Writer):
        name = "cached"
        policy = Policy(cache=CachePolicy(ttl=60))

    orch = runtime(Cached, provider=FakeProvider())
    request = {"plugin": "cached", "input": {"text": "one two"}}
    _, streamed = await collect(orch, request)
    assert not streamed.cache_hit
    whole = await orch.handle(request)
    assert not whole.cache_hit  # the streamed answer was not kept
    assert (await orch.handle(request)).cache_hit  # the whole one was


def test_the_old_breaker_per_model_attribute_is_refused_with_its_replacement() -> None:
    class Old(Writer):
        breaker_per_model = False

    with pytest.raises(PluginValidationError, match="per_model=False"):
        Registry().add(Old)


# --- summarize@2 ---------------------------------------------------------------------


async def test_summarize_streams_word_by_word_and_the_envelope_holds_the_same_text() -> None:
    reply = "Here is a summary: The council approved a budget. Roads get four million dollars in May."
    provider = CharStreams("local").enqueue(reply)
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    pieces, envelope = await collect(orch, {"plugin": "summarize@2", "input": {"text": TEXT}})
    summary = "The council approved a budget. Roads get four million dollars in May."
    assert "".join(pieces) == envelope.output["summary"] == summary
    assert len(pieces) >= 10  # word by word, not one chunk at the end
    assert envelope.output["method"] == "abstractive"
    assert provider.calls[0].max_tokens > 0
    assert envelope.models == ["local:qwen2.5-0.5b"]


async def test_a_streamed_summary_stops_at_the_word_limit_and_says_so() -> None:
    reply = "The council approved a budget. " + "It funds many things for the town. " * 10
    provider = CharStreams("local").enqueue(reply)
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    pieces, envelope = await collect(orch, {"plugin": "summarize@2", "input": {"text": TEXT, "length": 20}})
    summary = envelope.output["summary"]
    assert "".join(pieces) == summary
    assert len(summary.split()) <= 20
    assert summary.startswith("The council approved a budget. It funds")
    assert envelope.output["note"] == "cut to 20 words"


async def test_streamed_bullets_arrive_a_point_at_a_time() -> None:
    reply = "Here is a summary:\n1. Budget approved on Tuesday.\n2) Road repairs start in May.\n- Taxes stay."
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=CharStreams("local").enqueue(reply))
    pieces, envelope = await collect(
        orch, {"plugin": "summarize@2", "input": {"text": TEXT, "bullets": True, "length": 10}}
    )
    assert pieces == ["- Budget approved on Tuesday.", "\n- Road repairs start in May."]
    assert envelope.output["bullets"] == ["Budget approved on Tuesday.", "Road repairs start in May."]
    assert envelope.output["note"] == "cut to 10 words"


@settings(max_examples=60, deadline=None)
@given(
    answer=st.sampled_from(
        [
            'Summary: "The council approved it, and roads get money."',
            "Here's the short version: roads get money. Taxes stay the same, the mayor said.",
            "One sentence without an end",
            "- first point here\n- second point is longer than the first\n- third",
            "The plan   has\n\nodd   spacing. And two sentences.",
            "summary of it all is that roads are fine.",
            '"Brickwork" is a plugin platform for products.',
            "'90s music was loud, the council said.",
            '"The mayor said "no" to the plan."',
        ]
    ),
    bullets=st.booleans(),
    limit=st.integers(min_value=3, max_value=30),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_a_streamed_answer_adds_up_to_its_summary_however_it_is_split(
    answer: str, bullets: bool, limit: int, seed: int
) -> None:
    rng = random.Random(seed)
    streamed = StreamedAnswer(limit=limit, bullets=bullets)
    sent: list[str] = []
    at = 0
    while at < len(answer) and not streamed.full:
        size = rng.randint(1, 7)
        sent.append(streamed.feed(answer[at : at + size]))
        at += size
    sent.append(streamed.finish("stop"))
    assert "".join(sent) == streamed.summary
    if not bullets:  # (a first point is kept whole, whatever its length)
        assert len(words(streamed.summary)) <= limit
    whole = shape(answer, finish_reason="stop", limit=limit, bullets=bullets)
    if len(words(whole.summary)) < limit and not whole.notes:
        assert streamed.summary == whole.summary  # within the limit, streaming changes nothing


# --- translate@2 ---------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    answer=st.sampled_from(
        [
            "Bonjour, bienvenue chez [T1] aujourd'hui.",
            '"Bonjour, bienvenue chez [T1] aujourd\'hui."',
            "«Bonjour, bienvenue chez (T1) aujourd'hui.»",
            "Translation: Bonjour [[T1]] et [ T1 ] encore.",
            '"[T1]" est une plateforme.',
            "Here is the translation: [T1]",
        ]
    ),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_a_streamed_translation_is_the_whole_answers_however_it_is_split(answer: str, seed: int) -> None:
    original = "Hello, welcome to [T1] today."
    protected = Protected(original, "T", {1: "Brickwork"}, {"Brickwork": "Brickwork"})
    streamed = StreamedTranslation(protected, original)
    rng = random.Random(seed)
    sent: list[str] = []
    at = 0
    while at < len(answer):
        size = rng.randint(1, 4)
        sent.append(streamed.feed(answer[at : at + size]))
        at += size
    sent.append(streamed.finish())
    whole, dropped = restore(clean(answer, original), protected)
    assert "".join(sent) == whole
    assert streamed.seen == ({1} if not dropped else set())
    assert "T1" not in whole


TRANSLATE = {
    "plugin": "translate@2",
    "input": {
        "text": "Hello, welcome to Brickwork today.",
        "target_language": "fr",
        "glossary": ["Brickwork"],
    },
}


async def test_translate_streams_with_placeholders_restored_even_when_split() -> None:
    provider = CharStreams("local").enqueue("Translation: Bonjour, bienvenue chez [T1] aujourd'hui.")
    orch = runtime(TranslateRules, TranslateLLM, provider=provider)
    pieces, envelope = await collect(orch, TRANSLATE)
    translation = "Bonjour, bienvenue chez Brickwork aujourd'hui."
    assert "".join(pieces) == envelope.output["translation"] == translation
    assert len(pieces) > 5
    assert not any("[T" in piece for piece in pieces)
    assert envelope.output["glossary_kept"] is True
    assert envelope.output["quality"] == "best_effort"  # the stream named the small model


async def test_a_term_dropped_from_a_streamed_translation_is_reported_not_patched_in() -> None:
    provider = CharStreams("local").enqueue("Bonjour, bienvenue aujourd'hui.")
    orch = runtime(TranslateRules, TranslateLLM, provider=provider)
    pieces, envelope = await collect(orch, TRANSLATE)
    assert "".join(pieces) == envelope.output["translation"] == "Bonjour, bienvenue aujourd'hui."
    assert envelope.output["glossary_kept"] is False
    assert any("not put back" in w for w in envelope.warnings)


class BreaksOff(FakeProvider):
    """Streams three words, then fails; its calls fail outright."""

    async def complete(self, request: CompletionRequest) -> Any:
        raise ProviderUnavailableError("the upstream is down")

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        self.calls.append(request)
        for word in ("The ", "council ", "approved "):
            yield StreamChunk(delta=word)
        raise ProviderUnavailableError("the upstream went away")


async def test_no_fallback_once_text_reached_the_caller() -> None:
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=BreaksOff("local"))
    pieces: list[str] = []

    async def read() -> None:
        async for item in orch.stream({"plugin": "summarize@2", "input": {"text": TEXT}}):
            assert isinstance(item, str)
            pieces.append(item)

    with pytest.raises(ProviderUnavailableError):
        await read()
    assert pieces == ["The", " council", " approved"]
    # Without a reader, the same failure falls back to the extractive version.
    envelope = await orch.handle({"plugin": "summarize@2", "input": {"text": TEXT}})
    assert envelope.degraded
    assert envelope.version == "1.0.0"
