"""The Anthropic Messages provider against the fake upstream speaking its format."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest

from brickwork.contracts.errors import (
    ConfigurationError,
    ProviderAuthenticationError,
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
from brickwork.providers.anthropic import AnthropicProvider
from brickwork.testing import FakeUpstream, Fault

KEY = "sk-ant-test-77c1d0"


def ask(*messages: Message, **kwargs: object) -> CompletionRequest:
    msgs = list(messages) or [Message(role="user", content="hello big world")]
    return CompletionRequest(model="claude-test", messages=msgs, **kwargs)  # type: ignore[arg-type]


async def assemble(
    stream: AsyncIterator[StreamChunk], seen: list[StreamChunk] | None = None
) -> list[StreamChunk]:
    chunks = [] if seen is None else seen
    async for chunk in stream:
        chunks.append(chunk)
    return chunks


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(api_key=KEY, models=["claude-test"]) as up:
        yield up


@pytest.fixture
async def provider(upstream: FakeUpstream) -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider(base_url=upstream.url, api_key=KEY, timeout=2.0)
    yield p
    await p.aclose()


def test_it_is_a_real_provider() -> None:
    provider = AnthropicProvider(api_key=KEY)
    assert isinstance(provider, Provider)
    assert provider.is_real
    assert provider.base_url == "https://api.anthropic.com"
    assert KEY not in repr(provider)


async def test_complete_sends_the_messages_format(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    request = ask(
        Message(role="system", content="be brief"),
        Message(role="user", content="hello"),
        Message(role="assistant", content="hi"),
        Message(role="system", content="and kind"),
        Message(role="user", content="how are you"),
        max_tokens=64,
        temperature=1.5,
        stop=["END"],
    )
    completion = await provider.complete(request)

    assert completion.text == "you said: how are you"
    assert completion.finish_reason == "stop"
    # input: "be brief" + "and kind" + "hello" + "hi" + "how are you"; output: 5 words
    assert (completion.usage.input_tokens, completion.usage.output_tokens, completion.usage.calls) == (
        9,
        5,
        1,
    )
    [sent] = upstream.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == "<redacted>"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json == {
        "model": "claude-test",
        "max_tokens": 64,
        "system": "be brief\n\nand kind",
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "how are you"},
        ],
        "temperature": 1.0,  # the API's maximum
        "stop_sequences": ["END"],
    }


async def test_max_tokens_stop_is_length(provider: AnthropicProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue("one two three four five")
    completion = await provider.complete(ask(max_tokens=2))
    assert (completion.text, completion.finish_reason) == ("one two", "length")


async def test_cached_input_tokens_count_as_input(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    body = {
        "content": [
            {"type": "text", "text": "a"},
            {"type": "tool_use", "id": "x"},
            {"type": "text", "text": "b"},
        ],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 3,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
            "output_tokens": 2,
        },
    }
    upstream.enqueue(Fault(body=json.dumps(body)))
    completion = await provider.complete(ask())
    assert completion.text == "ab"  # text blocks only
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (123, 2)


async def test_json_schema_is_sent_as_output_format(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    completion = await provider.complete(ask(json_schema=schema))
    assert upstream.requests[0].json["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert set(json.loads(completion.text)) == {"label"}


async def test_a_tool_message_is_unsupported(provider: AnthropicProvider, upstream: FakeUpstream) -> None:
    with pytest.raises(ProviderUnsupportedError, match="tool_use id"):
        await provider.complete(ask(Message(role="tool", content="42")))
    assert upstream.requests == []


# --- streaming ---------------------------------------------------------------------


async def test_a_stream_assembles_text_and_usage(provider: AnthropicProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue("the quick brown fox")
    chunks = await assemble(
        provider.stream(ask(Message(role="system", content="short"), Message(role="user", content="go on")))
    )

    assert "".join(c.delta for c in chunks) == "the quick brown fox"
    assert all(c.finish_reason is None for c in chunks[:-1])
    last = chunks[-1]
    assert (last.delta, last.finish_reason) == ("", "stop")
    assert last.usage is not None
    assert (last.usage.input_tokens, last.usage.output_tokens) == (3, 4)  # message_start, then message_delta
    assert upstream.requests[0].json["stream"] is True


async def test_a_stream_stopped_by_max_tokens_says_length(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    upstream.enqueue("one two three four five")
    chunks = await assemble(provider.stream(ask(max_tokens=3)))
    assert "".join(c.delta for c in chunks) == "one two three"
    assert chunks[-1].finish_reason == "length"


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        # message_start, content_block_start, ping, one delta; then the connection drops
        (Fault(text="one two three", cut_after=4), ProviderResponseError, "cut off"),
        (Fault(text="one two three", cut_after=4, cut="end"), ProviderResponseError, "before message_stop"),
        # all but message_stop
        (Fault(text="one two three", cut_after=8, cut="end"), ProviderResponseError, "before message_stop"),
        (
            Fault(text="one two three", stream_error_after=4, message="Overloaded"),
            ProviderUnavailableError,
            "overloaded_error: Overloaded",
        ),
        (
            Fault(
                text="one two three", stream_error_after=4, error_type="rate_limit_error", message="slow down"
            ),
            ProviderRateLimitedError,
            "slow down",
        ),
        (
            Fault(
                text="one two three", stream_error_after=4, error_type="invalid_request_error", message="nope"
            ),
            ProviderResponseError,
            "nope",
        ),
    ],
)
async def test_a_broken_stream_raises_after_its_partial_text(
    provider: AnthropicProvider, upstream: FakeUpstream, fault: Fault, error: type[ProviderError], match: str
) -> None:
    upstream.enqueue(fault)
    seen: list[StreamChunk] = []
    with pytest.raises(error, match=match):
        await assemble(provider.stream(ask()), seen)
    assert "".join(c.delta for c in seen) in ("one ", "one two three")
    assert all(c.finish_reason is None for c in seen)


async def test_unknown_stream_events_are_skipped(provider: AnthropicProvider, upstream: FakeUpstream) -> None:
    events = [
        (
            "message_start",
            {"type": "message_start", "message": {"usage": {"input_tokens": 4, "output_tokens": 1}}},
        ),
        ("future_event", {"type": "future_event", "whatever": [1, 2]}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm"},
            },
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}},
        ),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 6}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    upstream.enqueue(Fault(body=body, content_type="text/event-stream"))
    chunks = await assemble(provider.stream(ask()))
    assert [c.delta for c in chunks] == ["hi", ""]
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (4, 6)


async def test_a_silent_stream_times_out(upstream: FakeUpstream) -> None:
    provider = AnthropicProvider(base_url=upstream.url, api_key=KEY, timeout=0.2)
    upstream.enqueue(Fault(text="one two", chunk_delay=1.0))
    with pytest.raises(ProviderTimeoutError):
        await assemble(provider.stream(ask()))
    await provider.aclose()


# --- error mapping -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "retry_after"),
    [
        (Fault(status=429, retry_after=12, message="rate limited"), ProviderRateLimitedError, 12),
        (Fault(status=529, message="Overloaded"), ProviderUnavailableError, None),
        (Fault(status=529, retry_after=3, message="Overloaded"), ProviderUnavailableError, 3),
        (Fault(status=500, message="Internal"), ProviderUnavailableError, None),
        (Fault(status=401, message="invalid x-api-key"), ProviderAuthenticationError, None),
        (Fault(status=403, message="no access to model"), ProviderAuthenticationError, None),
        (Fault(status=404, message="model: claude-9"), ProviderRejectedError, None),
        (Fault(status=400, message="messages: roles must alternate"), ProviderRejectedError, None),
        (Fault(status=413, message="too large"), ProviderRejectedError, None),
    ],
)
async def test_each_upstream_failure_is_one_typed_error(
    provider: AnthropicProvider,
    upstream: FakeUpstream,
    fault: Fault,
    error: type[ProviderError],
    retry_after: float | None,
) -> None:
    upstream.enqueue(fault)
    with pytest.raises(error) as caught:
        await provider.complete(ask())
    assert type(caught.value) is error
    assert caught.value.retry_after == retry_after
    assert fault.message in caught.value.message


async def test_a_slow_upstream_times_out(upstream: FakeUpstream) -> None:
    provider = AnthropicProvider(base_url=upstream.url, api_key=KEY, timeout=0.2)
    upstream.enqueue(Fault(delay=5.0))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError):
        await provider.complete(ask())
    await provider.aclose()
    assert time.perf_counter() - started < 3.0  # the upstream would take 5 s


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault(body='{"content": [{"type": "text", "text": "cut'), "malformed JSON"),
        (Fault(body='{"content": "text", "usage": {}}'), "unexpected reply"),
        (Fault(text="a reply long enough to cut", cut_after=50), "cut off"),
        (Fault(content_type="text/plain"), "expected application/json"),
    ],
)
async def test_a_bad_reply_is_a_response_error(
    provider: AnthropicProvider, upstream: FakeUpstream, fault: Fault, match: str
) -> None:
    upstream.enqueue(fault)
    with pytest.raises(ProviderResponseError, match=match):
        await provider.complete(ask())


async def test_the_key_never_shows_in_errors(provider: AnthropicProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Fault(status=401, message=f"invalid x-api-key {KEY}"),
        Fault(text="x y z", stream_error_after=3, message=f"boom {KEY}"),
    )
    with pytest.raises(ProviderAuthenticationError) as first:
        await provider.complete(ask())
    with pytest.raises(ProviderUnavailableError) as second:
        await assemble(provider.stream(ask()))
    for error in (first.value, second.value):
        assert KEY not in str(error)
        assert KEY not in json.dumps(error.to_dict())
        assert "***" in error.message


async def test_a_wrong_key_is_refused_by_the_upstream(upstream: FakeUpstream) -> None:
    provider = AnthropicProvider(base_url=upstream.url, api_key="sk-ant-wrong")
    with pytest.raises(ProviderAuthenticationError, match="authentication_error"):
        await provider.complete(ask())
    await provider.aclose()


# --- the rest ----------------------------------------------------------------------


async def test_embed_and_score_are_unsupported(provider: AnthropicProvider, upstream: FakeUpstream) -> None:
    with pytest.raises(ProviderUnsupportedError):
        await provider.embed(EmbedRequest(model="claude-test", texts=["a"]))
    with pytest.raises(ProviderUnsupportedError):
        await provider.score(
            ScoreRequest(model="claude-test", messages=[Message(role="user", content="x")], candidates=["a"])
        )
    assert upstream.requests == []
    assert provider.count_tokens("claude-test", "abcdefgh") == 2


async def test_list_models(provider: AnthropicProvider) -> None:
    assert await provider.list_models() == ["claude-test"]


async def test_aclose(provider: AnthropicProvider) -> None:
    await provider.complete(ask())
    assert not provider.closed
    await provider.aclose()
    assert provider.closed


def test_from_env() -> None:
    provider = AnthropicProvider.from_env(environ={"ANTHROPIC_API_KEY": KEY}, version="2024-01-01")
    assert (provider.base_url, provider.version) == ("https://api.anthropic.com", "2024-01-01")
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider.from_env(environ={})
