"""LocalProvider on the real SmolLM2-135M: completion, streaming, JSON-schema output,
label scoring, token counts, embeddings, errors. Short generations only."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from brickwork import Context, Orchestrator, Plugin, PluginInput, PluginOutput, Registry
from brickwork.contracts.errors import (
    ConfigurationError,
    ContextLengthExceededError,
    ModelNotFoundError,
    ProviderError,
    ProviderResponseError,
    ProviderUnsupportedError,
    RealProviderForbiddenError,
)
from brickwork.contracts.provider import (
    CompletionRequest,
    EmbedRequest,
    Message,
    Provider,
    ScoreRequest,
    StreamChunk,
)
from brickwork.providers.local import (
    EMBEDDING_MODEL,
    SMALL_MODEL,
    EnginePool,
    EngineSettings,
    LocalProvider,
    load_llama,
)
from brickwork.runtime.models import Providers, allow_real_providers

SMALL = "smollm2-135m"
FRANCE = [Message(role="user", content="What is the capital of France? Answer in one word.")]


class Loads:
    """A loader that remembers every Llama it built."""

    def __init__(self) -> None:
        self.llamas: list[Any] = []

    def __call__(self, path: Path, settings: EngineSettings) -> Any:
        llama = load_llama(path, settings)
        self.llamas.append(llama)
        return llama


@pytest.fixture(scope="module")
def loads() -> Loads:
    return Loads()


@pytest.fixture(scope="module")
def provider(loads: Loads) -> Iterator[LocalProvider]:
    pool = EnginePool()
    yield LocalProvider(pool=pool, loader=loads, progress=False)
    pool.close_all()


def ask(messages: list[Message], **kwargs: Any) -> CompletionRequest:
    return CompletionRequest(model=SMALL, messages=messages, **kwargs)


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in chunks]


def test_public_names() -> None:
    assert SMALL_MODEL == "local:smollm2-135m"
    assert EMBEDDING_MODEL == "local:e5-small"
    provider = LocalProvider(pool=EnginePool())
    assert isinstance(provider, Provider)
    assert (provider.name, provider.is_real, provider.threads) == ("local", True, 1)


def test_threads_come_from_the_argument_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRICKWORK_THREADS", "2")
    assert LocalProvider(pool=EnginePool()).threads == 2
    assert LocalProvider(threads=3, pool=EnginePool()).threads == 3
    monkeypatch.setenv("BRICKWORK_THREADS", "lots")
    with pytest.raises(ConfigurationError, match="BRICKWORK_THREADS"):
        LocalProvider(pool=EnginePool())


async def test_complete_answers_and_reports_usage(provider: LocalProvider) -> None:
    completion = await provider.complete(ask(FRANCE, max_tokens=16))
    assert "Paris" in completion.text
    assert completion.model == SMALL
    assert completion.finish_reason == "stop"
    assert completion.usage.input_tokens > 10
    assert 0 < completion.usage.output_tokens <= 16
    assert completion.usage.calls == 1


async def test_same_text_as_llama_cpp_chat_completion(provider: LocalProvider, loads: Loads) -> None:
    """Brickwork formats the prompt with the model's own chat template, exactly as
    ``create_chat_completion`` does, so greedy output is identical."""
    messages = [
        Message(role="system", content="You are terse."),
        Message(role="user", content="Name three colours."),
    ]
    ours = await provider.complete(ask(messages, max_tokens=20))
    llama = loads.llamas[0]
    theirs = llama.create_chat_completion([m.model_dump() for m in messages], max_tokens=20, temperature=0.0)
    assert ours.text == theirs["choices"][0]["message"]["content"]
    assert ours.usage.input_tokens == theirs["usage"]["prompt_tokens"]
    assert ours.usage.output_tokens == theirs["usage"]["completion_tokens"]


async def test_stream_yields_the_same_text_and_usage(provider: LocalProvider) -> None:
    for max_tokens in (16, 3):  # ends on its own; cut at max_tokens
        whole = await provider.complete(ask(FRANCE, max_tokens=max_tokens))
        chunks = await collect(provider.stream(ask(FRANCE, max_tokens=max_tokens)))
        assert len(chunks) >= 2
        assert "".join(c.delta for c in chunks) == whole.text
        last = chunks[-1]
        assert last.finish_reason == whole.finish_reason
        assert last.usage is not None
        assert (last.usage.input_tokens, last.usage.output_tokens) == (
            whole.usage.input_tokens,
            whole.usage.output_tokens,
        )
        assert all(c.usage is None for c in chunks[:-1])


class Capital(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str
    country: str
    in_europe: bool


async def test_json_schema_output_parses_and_validates(provider: LocalProvider) -> None:
    request = ask(
        [Message(role="user", content="Give the capital of France as JSON.")],
        max_tokens=32,
        json_schema=Capital.model_json_schema(),
    )
    completion = await provider.complete(request)
    capital = Capital.model_validate_json(completion.text)  # raises if it does not validate
    assert set(json.loads(completion.text)) == {"city", "country", "in_europe"}
    assert capital.city == "Paris"


async def test_json_cut_off_by_max_tokens_is_a_clear_error(provider: LocalProvider) -> None:
    request = ask(FRANCE, max_tokens=3, json_schema=Capital.model_json_schema())
    with pytest.raises(ProviderResponseError, match=r"cut off at max_tokens=3"):
        await provider.complete(request)


SENTIMENT = "Classify the sentiment of the review. Reply with one word: positive or negative."


@pytest.mark.parametrize(
    ("review", "label"),
    [
        ("I absolutely loved this movie, the best film of the year!", "positive"),
        ("Terrible. I hated every minute and want my money back.", "negative"),
    ],
)
async def test_score_ranks_the_obvious_label_first(provider: LocalProvider, review: str, label: str) -> None:
    messages = [Message(role="system", content=SENTIMENT), Message(role="user", content=review)]
    scores = await provider.score(
        ScoreRequest(model=SMALL, messages=messages, candidates=["positive", "negative"])
    )
    assert max(scores.logprobs, key=scores.logprobs.__getitem__) == label
    assert all(v < 0 for v in scores.logprobs.values())
    assert scores.usage.input_tokens > 10


async def test_score_ranks_labels_and_leaves_generation_unchanged(provider: LocalProvider) -> None:
    before = await provider.complete(ask(FRANCE, max_tokens=12))
    labels = ["sports", "politics", "science", "music", "cooking"]
    messages = [
        Message(role="system", content="Which topic is this headline about? Reply with one word."),
        Message(role="user", content="The striker scored twice in the cup final."),
    ]
    # (How long it takes is no unit test's business: a wall-clock bound failed on
    # slower shared machines. One pass over the prompt for all labels is what
    # keeps it short; see ``LlamaEngine.score``.)
    scores = await provider.score(ScoreRequest(model=SMALL, messages=messages, candidates=labels))
    assert set(scores.logprobs) == set(labels)
    assert max(scores.logprobs, key=scores.logprobs.__getitem__) == "sports"
    # Same prompt again: its prefix is reused, the numbers do not move.
    again = await provider.score(ScoreRequest(model=SMALL, messages=messages, candidates=labels))
    # (llama.cpp's sums differ a little with batch shape: the last prompt token is
    # decoded alone this time, within the whole prompt the first time.)
    assert max(again.logprobs, key=again.logprobs.__getitem__) == "sports"
    for label in labels:
        assert again.logprobs[label] == pytest.approx(scores.logprobs[label], abs=0.5)
    # Scoring moved the context around; generation after it is as before.
    assert (await provider.complete(ask(FRANCE, max_tokens=12))).text == before.text


async def test_a_longer_candidate_that_extends_a_shorter_one_is_not_free(provider: LocalProvider) -> None:
    """Each candidate is scored as the whole reply (its end-of-turn included), so
    "sport" does not beat "sports" just by being a prefix of it."""
    messages = [Message(role="user", content="Reply with the word sports.")]
    scores = await provider.score(
        ScoreRequest(model=SMALL, messages=messages, candidates=["sport", "sports"])
    )
    assert scores.logprobs["sports"] > scores.logprobs["sport"]


async def test_count_tokens_uses_the_model_tokenizer(provider: LocalProvider, loads: Loads) -> None:
    await provider.complete(ask(FRANCE, max_tokens=1))  # loaded
    built = len(loads.llamas)
    llama = loads.llamas[0]
    text = "Brickwork counts tokens exactly."
    count = provider.count_tokens(SMALL, text)
    assert count == len(llama.tokenize(text.encode(), add_bos=False))
    assert 4 < count < 20
    assert provider.count_tokens(SMALL, text * 10) > 5 * count
    assert len(loads.llamas) == built  # the loaded model's tokenizer: nothing loaded again


async def test_embeddings_from_e5(provider: LocalProvider) -> None:
    texts = ["The cat sat on the mat.", "A kitten is sitting on a rug.", "Interest rates rose again."]
    result = await provider.embed(EmbedRequest(model="e5-small", texts=texts, purpose="passage"))
    assert len(result.vectors) == 3
    assert all(len(v) == 384 for v in result.vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-3) for v in result.vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    cat, kitten, rates = result.vectors
    assert cos(cat, kitten) > cos(cat, rates)
    query = await provider.embed(EmbedRequest(model="e5-small", texts=texts[:1], purpose="query"))
    assert query.vectors[0] != cat  # e5 embeds questions and passages differently
    assert result.usage.input_tokens > 10
    assert provider.count_tokens("e5-small", "hello world") > 0
    assert provider.load("e5-small").completed == 2


async def test_wrong_model_errors_are_typed(provider: LocalProvider) -> None:
    with pytest.raises(ModelNotFoundError, match=r"qwen2\.5-0\.5b.*smollm2-135m.*e5-small"):
        await provider.complete(CompletionRequest(model="llama-70b", messages=FRANCE))
    with pytest.raises(ModelNotFoundError):
        await collect(provider.stream(CompletionRequest(model="llama-70b", messages=FRANCE)))
    with pytest.raises(ProviderUnsupportedError, match="embedding model"):
        await provider.complete(CompletionRequest(model="e5-small", messages=FRANCE))
    with pytest.raises(ProviderUnsupportedError, match="does not embed"):
        await provider.embed(EmbedRequest(model=SMALL, texts=["x"]))


async def test_context_overflow_is_a_clear_error_and_the_model_goes_on(loads: Loads) -> None:
    pool = EnginePool()
    small = LocalProvider(n_ctx=128, pool=pool, loader=loads, progress=False)
    long = [Message(role="user", content="word " * 300)]
    try:
        with pytest.raises(ContextLengthExceededError) as caught:
            await small.complete(CompletionRequest(model=SMALL, messages=long, max_tokens=8))
        assert caught.value.details["context_window"] == 128
        assert caught.value.details["prompt_tokens"] > 128
        assert "128" in caught.value.message
        with pytest.raises(ContextLengthExceededError):
            await small.score(ScoreRequest(model=SMALL, messages=long, candidates=["a"]))
        ok = await small.complete(CompletionRequest(model=SMALL, messages=FRANCE, max_tokens=4))
        assert ok.text
    finally:
        await small.aclose()


async def test_concurrent_first_calls_load_the_model_once() -> None:
    loads = Loads()
    pool = EnginePool()
    a = LocalProvider(pool=pool, loader=loads, progress=False)
    b = LocalProvider(pool=pool, loader=loads, progress=False)
    try:
        results = await asyncio.gather(
            a.complete(ask(FRANCE, max_tokens=2)),
            b.complete(ask(FRANCE, max_tokens=2)),
            a.score(ScoreRequest(model=SMALL, messages=FRANCE, candidates=["Paris", "Rome"])),
        )
        assert len(results) == 3
        assert len(loads.llamas) == 1
        assert a.load(SMALL).completed == 3 == b.load(SMALL).completed
    finally:
        await a.aclose()
        assert len(pool.engines()) == 1  # b still holds it
        await b.aclose()
        assert pool.engines() == []


class AskIn(PluginInput):
    question: str


class AskOut(PluginOutput):
    answer: str


class AskPlugin(Plugin[AskIn, AskOut]):
    name = "ask"
    version = "1.0.0"
    description = "Answers a question with the small local model."
    model = SMALL_MODEL
    permissions = frozenset({"model"})

    async def run(self, input: AskIn, ctx: Context) -> AskOut:
        completion = await ctx.model.complete(input.question, max_tokens=12)
        return AskOut(answer=completion.text)


async def test_a_plugin_runs_on_it_through_the_orchestrator(provider: LocalProvider) -> None:
    registry = Registry()
    registry.add(AskPlugin)
    providers = Providers()
    providers.add(provider)
    runtime = Orchestrator(registry, providers=providers)
    request = {"plugin": "ask", "input": {"question": "What is the capital of France? One word."}}

    with pytest.raises(RealProviderForbiddenError):  # the suite forbids real models by default
        await runtime.handle(request)
    token = allow_real_providers.set(True)
    try:
        envelope = await runtime.handle(request)
    finally:
        allow_real_providers.reset(token)
    assert "Paris" in envelope.output["answer"]
    assert envelope.models == [SMALL_MODEL]
    assert envelope.usage.output_tokens > 0


async def test_sampling_with_temperature_varies_unless_seeded(provider: LocalProvider) -> None:
    messages = [Message(role="user", content="Invent a name for a cat.")]
    hot = [ask(messages, max_tokens=8, temperature=1.5) for _ in range(4)]
    texts = {(await provider.complete(r)).text for r in hot}
    assert len(texts) > 1
    seeded = ask(messages, max_tokens=8, temperature=1.5, extra={"seed": 7})
    assert (await provider.complete(seeded)).text == (await provider.complete(seeded)).text


class Flaky:
    """A real Llama whose next generation fails the way llama.cpp fails."""

    def __init__(self, llama: Any) -> None:
        object.__setattr__(self, "_llama", llama)
        object.__setattr__(self, "fail", [RuntimeError("llama_decode returned -3")])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._llama, name, value)

    def create_completion(self, **kwargs: Any) -> Any:
        if self.fail:
            raise self.fail.pop()
        return self._llama.create_completion(**kwargs)


async def test_llama_cpp_failures_become_provider_errors_and_the_model_goes_on() -> None:
    def failing_loader(path: Path, settings: EngineSettings) -> Any:
        raise ValueError(f"Failed to load model from file: {path}")

    broken = LocalProvider(pool=EnginePool(), loader=failing_loader)
    with pytest.raises(ProviderError, match=r"llama\.cpp could not load smollm2-135m") as caught:
        await broken.complete(ask(FRANCE, max_tokens=2))
    assert isinstance(caught.value.__cause__, ValueError)
    await broken.aclose()

    pool = EnginePool()
    flaky = LocalProvider(pool=pool, loader=lambda path, settings: Flaky(load_llama(path, settings)))
    try:
        with pytest.raises(ProviderError, match=r"llama\.cpp failed: RuntimeError: llama_decode") as failed:
            await flaky.complete(ask(FRANCE, max_tokens=4))
        assert type(failed.value) is ProviderError
        assert not failed.value.retryable
        assert "Paris" in (await flaky.complete(ask(FRANCE, max_tokens=16))).text
    finally:
        await flaky.aclose()


async def test_the_first_count_tokens_on_a_loop_does_not_load_on_the_loop(tmp_path: Path) -> None:
    from brickwork.providers.local import LocalProvider

    provider = LocalProvider(cache_dir=tmp_path)
    try:
        estimate = provider.count_tokens("smollm2-135m", "hello world, how are you")
        # A generous estimate at once (no weights hashed or loaded on the event loop) ...
        assert estimate == len(b"hello world, how are you") // 3 + 1
        # ... while the load runs on the model's worker; after it, exact counts.
        await provider.complete(
            CompletionRequest(
                model="smollm2-135m", messages=[Message(role="user", content="hi")], max_tokens=1
            )
        )
        exact = provider.count_tokens("smollm2-135m", "hello world, how are you")
        assert 0 < exact < estimate
    finally:
        await provider.aclose()
