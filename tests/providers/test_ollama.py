"""The Ollama provider against the fake upstream speaking Ollama's native API."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest

from brickwork.contracts.errors import (
    ProviderError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ProviderUnsupportedError,
)
from brickwork.contracts.provider import (
    CompletionRequest,
    EmbedRequest,
    Message,
    Provider,
    ScoreRequest,
    StreamChunk,
)
from brickwork.providers.ollama import OllamaProvider
from brickwork.testing import FakeUpstream, Fault


def ask(text: str = "hello big world", **kwargs: object) -> CompletionRequest:
    return CompletionRequest(model="llama3", messages=[Message(role="user", content=text)], **kwargs)  # type: ignore[arg-type]


async def assemble(
    stream: AsyncIterator[StreamChunk], seen: list[StreamChunk] | None = None
) -> list[StreamChunk]:
    chunks = [] if seen is None else seen
    async for chunk in stream:
        chunks.append(chunk)
    return chunks


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(models=["llama3:latest", "nomic-embed-text:latest"]) as up:
        yield up


@pytest.fixture
async def provider(upstream: FakeUpstream) -> AsyncIterator[OllamaProvider]:
    p = OllamaProvider(base_url=upstream.url, timeout=2.0)
    yield p
    await p.aclose()


def test_it_is_a_real_provider_with_the_default_address() -> None:
    provider = OllamaProvider()
    assert isinstance(provider, Provider)
    assert provider.is_real
    assert provider.base_url == "http://127.0.0.1:11434"


def test_from_env_accepts_a_bare_host() -> None:
    assert (
        OllamaProvider.from_env(environ={"OLLAMA_HOST": "10.0.0.5:11434"}).base_url == "http://10.0.0.5:11434"
    )
    assert (
        OllamaProvider.from_env(environ={"OLLAMA_HOST": "https://o.example/"}).base_url == "https://o.example"
    )
    assert OllamaProvider.from_env(environ={}).base_url == "http://127.0.0.1:11434"


async def test_complete_sends_the_chat_format(provider: OllamaProvider, upstream: FakeUpstream) -> None:
    request = CompletionRequest(
        model="llama3",
        messages=[
            Message(role="system", content="be brief"),
            Message(role="user", content="hello big world"),
        ],
        max_tokens=50,
        temperature=0.3,
        stop=["###"],
        extra={"keep_alive": "5m", "options": {"num_ctx": 2048}},
    )
    completion = await provider.complete(request)

    assert completion.text == "you said: hello big world"
    assert completion.finish_reason == "stop"
    assert (completion.usage.input_tokens, completion.usage.output_tokens, completion.usage.calls) == (
        5,
        5,
        1,
    )
    [sent] = upstream.requests
    assert (sent.method, sent.path) == ("POST", "/api/chat")
    assert sent.json == {
        "model": "llama3",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello big world"},
        ],
        "stream": False,  # explicit: Ollama streams by default
        "options": {"temperature": 0.3, "num_predict": 50, "stop": ["###"], "num_ctx": 2048},
        "keep_alive": "5m",
    }


async def test_num_predict_limits_and_says_length(provider: OllamaProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue("one two three four")
    completion = await provider.complete(ask(max_tokens=2))
    assert (completion.text, completion.finish_reason) == ("one two", "length")


async def test_json_schema_is_sent_as_format(provider: OllamaProvider, upstream: FakeUpstream) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}, "required": ["n"]}
    completion = await provider.complete(ask(json_schema=schema))
    assert upstream.requests[0].json["format"] == schema
    assert json.loads(completion.text) == {"n": 3}


async def test_a_reply_that_is_not_done_is_refused(provider: OllamaProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue(Fault(body='{"message": {"role": "assistant", "content": "half"}, "done": false}'))
    with pytest.raises(ProviderResponseError, match="not done"):
        await provider.complete(ask())


# --- streaming ---------------------------------------------------------------------


async def test_a_stream_assembles_text_and_usage(provider: OllamaProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue("the quick brown fox")
    chunks = await assemble(provider.stream(ask()))

    assert "".join(c.delta for c in chunks) == "the quick brown fox"
    assert all(c.finish_reason is None for c in chunks[:-1])
    last = chunks[-1]
    assert (last.delta, last.finish_reason) == ("", "stop")
    assert last.usage is not None
    assert (last.usage.input_tokens, last.usage.output_tokens) == (3, 4)
    assert upstream.requests[0].json["stream"] is True


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        (Fault(text="one two three", cut_after=1), ProviderResponseError, "cut off"),
        (Fault(text="one two three", cut_after=3, cut="end"), ProviderResponseError, '"done": true'),
        (
            Fault(text="one two three", stream_error_after=1, message="model crashed"),
            ProviderUnavailableError,
            "model crashed",
        ),
        (
            Fault(
                body='{"message": {"content": "one "}, "done": false}\n{"message": {"cont',
                content_type="application/x-ndjson",
            ),
            ProviderResponseError,
            "malformed stream line",
        ),
    ],
)
async def test_a_broken_stream_raises_after_its_partial_text(
    provider: OllamaProvider, upstream: FakeUpstream, fault: Fault, error: type[ProviderError], match: str
) -> None:
    upstream.enqueue(fault)
    seen: list[StreamChunk] = []
    with pytest.raises(error, match=match):
        await assemble(provider.stream(ask()), seen)
    assert "".join(c.delta for c in seen) in ("one ", "one two three")
    assert all(c.finish_reason is None for c in seen)


async def test_a_silent_stream_times_out(upstream: FakeUpstream) -> None:
    provider = OllamaProvider(base_url=upstream.url, timeout=0.2)
    upstream.enqueue(Fault(text="one two", chunk_delay=1.0))
    with pytest.raises(ProviderTimeoutError):
        await assemble(provider.stream(ask()))
    await provider.aclose()


async def test_a_stream_of_the_wrong_type_is_refused(
    provider: OllamaProvider, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Fault(content_type="text/html"))
    with pytest.raises(ProviderResponseError, match="answered text/html"):
        await assemble(provider.stream(ask()))


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(status=404, message="model 'llama9' not found, try pulling it first"), ProviderRejectedError),
        (Fault(status=400, message="invalid options"), ProviderRejectedError),
        (Fault(status=500, message="llama runner process has terminated"), ProviderUnavailableError),
        (Fault(status=503, message="server busy", retry_after=1), ProviderUnavailableError),
        (Fault(status=429, message="too many requests", retry_after=2), ProviderRateLimitedError),
    ],
)
async def test_each_upstream_failure_is_one_typed_error(
    provider: OllamaProvider, upstream: FakeUpstream, fault: Fault, error: type[ProviderError]
) -> None:
    upstream.enqueue(fault)
    with pytest.raises(error) as caught:
        await provider.complete(ask())
    assert type(caught.value) is error
    assert fault.message in caught.value.message
    assert caught.value.retry_after == (fault.retry_after if error.retryable else None)


async def test_a_slow_upstream_times_out(upstream: FakeUpstream) -> None:
    provider = OllamaProvider(base_url=upstream.url, timeout=0.2)
    upstream.enqueue(Fault(delay=5.0))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError):
        await provider.complete(ask())
    await provider.aclose()
    assert time.perf_counter() - started < 3.0  # the upstream would take 5 s


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault(body="{oops"), "malformed JSON"),
        (Fault(text="a reply long enough to be cut", cut_after=30), "cut off"),
        (Fault(text="a reply long enough to be cut", cut_after=30, cut="end"), "malformed JSON"),
    ],
)
async def test_a_bad_reply_is_a_response_error(
    provider: OllamaProvider, upstream: FakeUpstream, fault: Fault, match: str
) -> None:
    upstream.enqueue(fault)
    with pytest.raises(ProviderResponseError, match=match):
        await provider.complete(ask())


# --- embeddings, models, the rest ---------------------------------------------------


async def test_embed(provider: OllamaProvider, upstream: FakeUpstream) -> None:
    result = await provider.embed(EmbedRequest(model="nomic-embed-text", texts=["alpha", "beta gamma"]))
    assert len(result.vectors) == 2
    assert result.vectors[0] != result.vectors[1]
    assert result.usage.input_tokens == 3
    assert upstream.requests[0].path == "/api/embed"
    assert upstream.requests[0].json == {"model": "nomic-embed-text", "input": ["alpha", "beta gamma"]}


async def test_embed_with_a_missing_vector_is_refused(
    provider: OllamaProvider, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Fault(body='{"embeddings": [[0.1, 0.2]]}'))
    with pytest.raises(ProviderResponseError, match="2 texts sent, 1 vectors"):
        await provider.embed(EmbedRequest(model="e", texts=["a", "b"]))


async def test_list_models(provider: OllamaProvider) -> None:
    assert await provider.list_models() == ["llama3:latest", "nomic-embed-text:latest"]


async def test_score_is_unsupported(provider: OllamaProvider) -> None:
    with pytest.raises(ProviderUnsupportedError):
        await provider.score(
            ScoreRequest(model="llama3", messages=[Message(role="user", content="x")], candidates=["a"])
        )


async def test_aclose(provider: OllamaProvider) -> None:
    await provider.complete(ask())
    assert not provider.closed
    await provider.aclose()
    assert provider.closed
