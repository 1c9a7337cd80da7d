"""The OpenAI-compatible provider against the fault-injecting fake upstream, and
through the runtime (retry on 429 honouring the upstream's wait)."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel, Field

from brickwork.contracts.clock import SystemClock
from brickwork.contracts.errors import (
    BrickworkError,
    ConfigurationError,
    ProviderAuthenticationError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ProviderUnsupportedError,
    RealProviderForbiddenError,
)
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import Policy, RetryPolicy, TimeoutPolicy
from brickwork.contracts.provider import (
    CompletionRequest,
    EmbedRequest,
    Message,
    Provider,
    ScoreRequest,
    StreamChunk,
)
from brickwork.providers.openai import OpenAIProvider
from brickwork.runtime.models import Providers, allow_real_providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry
from brickwork.testing import FakeUpstream, Fault

KEY = "sk-test-openai-5f2b9c"


def ask(text: str = "hello big world", **kwargs: object) -> CompletionRequest:
    return CompletionRequest(model="gpt-test", messages=[Message(role="user", content=text)], **kwargs)  # type: ignore[arg-type]


async def assemble(
    stream: AsyncIterator[StreamChunk], seen: list[StreamChunk] | None = None
) -> list[StreamChunk]:
    chunks = [] if seen is None else seen
    async for chunk in stream:
        chunks.append(chunk)
    return chunks


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(api_key=KEY, models=["gpt-test", "gpt-other"]) as up:
        yield up


@pytest.fixture
async def provider(upstream: FakeUpstream) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(base_url=upstream.openai_url, api_key=KEY, timeout=2.0)
    yield p
    await p.aclose()


def test_it_is_a_real_provider() -> None:
    provider = OpenAIProvider(base_url="http://127.0.0.1:1/v1", api_key=KEY)
    assert isinstance(provider, Provider)
    assert provider.is_real
    assert provider.closed  # nothing opened at construction


# --- completions -------------------------------------------------------------------


async def test_complete_sends_the_chat_format_and_reads_text_and_usage(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    request = CompletionRequest(
        model="gpt-test",
        messages=[
            Message(role="system", content="be brief"),
            Message(role="user", content="hello big world"),
        ],
        max_tokens=40,
        temperature=0.5,
        stop=["\n\n"],
        extra={"seed": 7},
    )
    completion = await provider.complete(request)

    assert completion.text == "you said: hello big world"
    assert completion.model == "gpt-test"
    assert completion.finish_reason == "stop"
    assert (completion.usage.input_tokens, completion.usage.output_tokens, completion.usage.calls) == (
        5,
        5,
        1,
    )
    [sent] = upstream.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["Authorization"] == "<redacted>"  # sent (the fake checks it), masked in the record
    assert sent.json == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello big world"},
        ],
        "max_tokens": 40,
        "temperature": 0.5,
        "stop": ["\n\n"],
        "seed": 7,
    }


async def test_the_length_finish_reason_is_passed_on(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    upstream.enqueue("one two three four five six")
    completion = await provider.complete(ask(max_tokens=3))
    assert (completion.text, completion.finish_reason) == ("one two three", "length")


async def test_max_completion_tokens_for_servers_that_want_it(upstream: FakeUpstream) -> None:
    provider = OpenAIProvider(
        base_url=upstream.openai_url, api_key=KEY, max_tokens_field="max_completion_tokens"
    )
    await provider.complete(ask(max_tokens=12))
    await provider.aclose()
    assert upstream.requests[0].json["max_completion_tokens"] == 12
    assert "max_tokens" not in upstream.requests[0].json


class Verdict(BaseModel):
    label: str = Field(min_length=1)
    score: int = Field(ge=1, le=5)


async def test_json_schema_asks_for_strict_structured_output(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    schema = Verdict.model_json_schema()
    completion = await provider.complete(ask(json_schema=schema))

    assert upstream.requests[0].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Verdict", "schema": schema, "strict": True},
    }
    Verdict.model_validate_json(completion.text)  # the fake answers schema-valid JSON


async def test_a_schema_title_is_made_a_valid_name(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    await provider.complete(ask(json_schema={"title": "My verdict (v2)", "type": "object"}))
    await provider.complete(ask(json_schema={"type": "object"}))
    names = [r.json["response_format"]["json_schema"]["name"] for r in upstream.requests]
    assert names == ["My_verdict__v2_", "output"]


# --- streaming ---------------------------------------------------------------------


async def test_a_stream_assembles_to_the_text_and_ends_with_usage(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    upstream.enqueue("the quick brown fox")
    chunks = await assemble(provider.stream(ask()))

    assert "".join(c.delta for c in chunks) == "the quick brown fox"
    assert len(chunks) == 5  # a delta a word, then the end
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert (last.delta, last.finish_reason) == ("", "stop")
    assert last.usage is not None
    assert (last.usage.input_tokens, last.usage.output_tokens) == (3, 4)
    sent = upstream.requests[0].json
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_a_server_without_stream_usage_gives_none(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    chunks = await assemble(provider.stream(ask(extra={"stream_options": {"include_usage": False}})))
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is None  # the runtime estimates instead


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        # comment, role chunk and one word went out, then the connection dropped
        (Fault(text="one two three four", cut_after=3), ProviderResponseError, "cut off"),
        # the HTTP response ended cleanly, but without the last events
        (
            Fault(text="one two three four", cut_after=3, cut="end"),
            ProviderResponseError,
            "without its end marker",
        ),
        # everything but the closing [DONE]: still not a success
        (
            Fault(text="one two three four", cut_after=8, cut="end"),
            ProviderResponseError,
            "without its end marker",
        ),
        (
            Fault(text="one two three four", stream_error_after=3),
            ProviderUnavailableError,
            "error mid-stream",
        ),
        (
            Fault(
                text="one two three four",
                stream_error_after=3,
                error_type="rate_limit_exceeded",
                message="slow",
            ),
            ProviderRateLimitedError,
            "slow",
        ),
    ],
)
async def test_a_broken_stream_raises_after_its_partial_text(
    provider: OpenAIProvider, upstream: FakeUpstream, fault: Fault, error: type[ProviderError], match: str
) -> None:
    upstream.enqueue(fault)
    seen: list[StreamChunk] = []
    with pytest.raises(error, match=match):
        await assemble(provider.stream(ask()), seen)
    assert "".join(c.delta for c in seen) in ("one ", "one two three four")
    assert all(c.finish_reason is None for c in seen)  # no chunk ever claimed the end


async def test_a_silent_stream_times_out(upstream: FakeUpstream) -> None:
    provider = OpenAIProvider(base_url=upstream.openai_url, api_key=KEY, timeout=0.2)
    upstream.enqueue(Fault(text="one two three", chunk_delay=5.0))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError, match=r"silent for 0\.2s"):
        await assemble(provider.stream(ask()))
    await provider.aclose()
    assert time.perf_counter() - started < 3.0  # the upstream would take 5 s


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault(body="data: {not json\n\n", content_type="text/event-stream"), "malformed JSON"),
        (Fault(body='data: {"choices": "many"}\n\n', content_type="text/event-stream"), "unexpected reply"),
        (Fault(content_type="application/json"), "expected text/event-stream"),
    ],
)
async def test_a_malformed_stream_is_a_response_error(
    provider: OpenAIProvider, upstream: FakeUpstream, fault: Fault, match: str
) -> None:
    upstream.enqueue(fault)
    with pytest.raises(ProviderResponseError, match=match):
        await assemble(provider.stream(ask()))


async def test_a_stream_refused_up_front_maps_like_a_call(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Fault(status=429, retry_after=3))
    with pytest.raises(ProviderRateLimitedError) as caught:
        await assemble(provider.stream(ask()))
    assert caught.value.retry_after == 3


# --- error mapping -----------------------------------------------------------------

IN_TWO_MINUTES = "<an HTTP-date two minutes from when the test runs>"


@pytest.mark.parametrize(
    ("fault", "error", "retry_after"),
    [
        (Fault(status=429, retry_after=7), ProviderRateLimitedError, 7),
        (Fault(status=429, retry_after=IN_TWO_MINUTES), ProviderRateLimitedError, 120),
        (Fault(status=429, headers={"retry-after-ms": "250"}), ProviderRateLimitedError, 0.25),
        (Fault(status=429), ProviderRateLimitedError, None),
        (Fault(status=500), ProviderUnavailableError, None),
        (Fault(status=502), ProviderUnavailableError, None),
        (Fault(status=503, retry_after=2), ProviderUnavailableError, 2),
        (Fault(status=529), ProviderUnavailableError, None),
        (Fault(status=504), ProviderTimeoutError, None),
        (Fault(status=408), ProviderTimeoutError, None),
        (Fault(status=401), ProviderAuthenticationError, None),
        (Fault(status=403), ProviderAuthenticationError, None),
        (Fault(status=404, message="The model `gpt-9` does not exist"), ProviderRejectedError, None),
        (Fault(status=400, message="messages: too short", retry_after=5), ProviderRejectedError, None),
    ],
)
async def test_each_upstream_failure_is_one_typed_error(
    provider: OpenAIProvider,
    upstream: FakeUpstream,
    fault: Fault,
    error: type[ProviderError],
    retry_after: float | None,
) -> None:
    if fault.retry_after == IN_TWO_MINUTES:  # dated at run time, not at collection
        fault = Fault(status=429, retry_after=email.utils.formatdate(time.time() + 120, usegmt=True))
    upstream.enqueue(fault)
    with pytest.raises(error) as caught:
        await provider.complete(ask())
    assert type(caught.value) is error
    if retry_after is None:
        assert caught.value.retry_after is None
    else:
        assert caught.value.retry_after == pytest.approx(retry_after, abs=2)
    assert f"HTTP {fault.status}" in caught.value.message
    assert fault.message in caught.value.message  # the upstream's own words
    assert caught.value.details["status"] == fault.status


async def test_a_wrong_key_is_an_upstream_auth_error(upstream: FakeUpstream) -> None:
    provider = OpenAIProvider(base_url=upstream.openai_url, api_key="sk-wrong-key-000")
    with pytest.raises(ProviderAuthenticationError, match="invalid api key") as caught:
        await provider.complete(ask())
    await provider.aclose()
    assert not caught.value.retryable
    assert "sk-wrong-key-000" not in str(caught.value)


async def test_a_slow_upstream_times_out(upstream: FakeUpstream) -> None:
    provider = OpenAIProvider(base_url=upstream.openai_url, api_key=KEY, timeout=0.2)
    upstream.enqueue(Fault(delay=5.0))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError, match=r"within 0\.2s"):
        await provider.complete(ask())
    await provider.aclose()
    assert time.perf_counter() - started < 3.0  # the upstream would take 5 s


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault(body="{not json"), "malformed JSON"),
        (Fault(body='{"choices": []}'), "unexpected reply"),
        (
            Fault(body='{"choices": [{"message": {"content": null}, "finish_reason": "tool_calls"}]}'),
            "no text",
        ),
        (Fault(text="a long enough reply", cut_after=40), "cut off"),  # connection dropped mid-body
        (Fault(text="a long enough reply", cut_after=40, cut="end"), "malformed JSON"),  # a short body
        (Fault(content_type="text/html"), "expected application/json"),
    ],
)
async def test_a_bad_reply_is_a_response_error_never_a_success(
    provider: OpenAIProvider, upstream: FakeUpstream, fault: Fault, match: str
) -> None:
    upstream.enqueue(fault)
    with pytest.raises(ProviderResponseError, match=match) as caught:
        await provider.complete(ask())
    assert not caught.value.retryable


async def test_a_refusal_is_returned_as_such(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Fault(
            body='{"choices": [{"message": {"content": null, "refusal": "I cannot"}, "finish_reason": "stop"}]}'
        )
    )
    completion = await provider.complete(ask())
    assert (completion.text, completion.finish_reason) == ("I cannot", "refusal")


async def test_the_key_never_shows_in_errors_or_reprs(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    faults = [
        Fault(status=400, message=f"Incorrect API key provided: {KEY}"),
        Fault(status=401, message=f"key {KEY} revoked"),
        Fault(status=429, message=KEY),
        Fault(body=f'{{"oops": "{KEY}'),
        Fault(text=f"echo {KEY} " * 5, stream_error_after=2, message=f"mid-stream {KEY}"),
    ]
    upstream.enqueue(*faults)
    errors: list[BrickworkError] = []
    for _ in range(4):
        with pytest.raises(ProviderError) as caught:
            await provider.complete(ask())
        errors.append(caught.value)
    with pytest.raises(ProviderError) as caught:
        await assemble(provider.stream(ask()))
    errors.append(caught.value)

    assert len(errors) == len(faults)
    for error in errors:
        assert KEY not in str(error)
        assert KEY not in repr(error)
        assert KEY not in json.dumps(error.to_dict())
    assert "***" in errors[0].message
    assert KEY not in repr(provider)
    assert all(r.headers.get("Authorization") == "<redacted>" for r in upstream.requests)


# --- embeddings, models, the rest ---------------------------------------------------


async def test_embed_returns_vectors_in_input_order(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    result = await provider.embed(EmbedRequest(model="emb", texts=["alpha", "beta gamma"]))
    assert len(result.vectors) == 2
    assert result.vectors[0] != result.vectors[1]
    assert result.usage.input_tokens == 3
    assert upstream.requests[0].json == {
        "model": "emb",
        "input": ["alpha", "beta gamma"],
        "encoding_format": "float",
    }

    # Vectors listed out of order are put back by their index.
    shuffled = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]}
    upstream.enqueue(Fault(body=json.dumps(shuffled)))
    result = await provider.embed(EmbedRequest(model="emb", texts=["a", "b"]))
    assert result.vectors == [[1.0, 0.0], [0.0, 1.0]]


async def test_embed_of_nothing_makes_no_call(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    assert (await provider.embed(EmbedRequest(model="emb", texts=[]))).vectors == []
    assert upstream.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"index": 0, "embedding": [0.1, 0.2]}]},  # one vector for two texts
        {
            "data": [{"index": 0, "embedding": [[0.1], [0.2]]}, {"index": 1, "embedding": [[0.3]]}]
        },  # per-token
    ],
)
async def test_embeddings_of_the_wrong_shape_are_refused(
    provider: OpenAIProvider, upstream: FakeUpstream, body: dict[str, object]
) -> None:
    upstream.enqueue(Fault(body=json.dumps(body)))
    with pytest.raises(ProviderResponseError):
        await provider.embed(EmbedRequest(model="emb", texts=["a", "b"]))


async def test_list_models(provider: OpenAIProvider) -> None:
    assert await provider.list_models() == ["gpt-test", "gpt-other"]


async def test_score_is_unsupported_and_count_tokens_estimates(provider: OpenAIProvider) -> None:
    with pytest.raises(ProviderUnsupportedError):
        await provider.score(
            ScoreRequest(model="gpt-test", messages=[Message(role="user", content="x")], candidates=["a"])
        )
    assert provider.count_tokens("gpt-test", "x" * 400) == 100


async def test_aclose_closes_the_session_and_a_later_call_reopens(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    assert provider.closed
    await provider.complete(ask())
    assert not provider.closed
    await provider.aclose()
    assert provider.closed
    await provider.complete(ask())
    assert len(upstream.requests) == 2


def test_from_env_reads_key_and_base_url_without_leaking_them() -> None:
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/"}
    provider = OpenAIProvider.from_env(environ=env, timeout=5)
    assert provider.base_url == "http://127.0.0.1:9/v1"
    assert KEY not in repr(provider)
    assert OpenAIProvider.from_env(environ={"OPENAI_API_KEY": KEY}).base_url == "https://api.openai.com/v1"
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY is not set"):
        OpenAIProvider.from_env(environ={})


# --- through the runtime ------------------------------------------------------------


class AskIn(PluginInput):
    text: str


class AskOut(PluginOutput):
    text: str


class Asker(Plugin[AskIn, AskOut]):
    name = "asker"
    version = "1.0.0"
    description = "Asks an OpenAI-compatible model."
    model = "openai:gpt-test"
    permissions = frozenset({"model"})
    policy = Policy(
        retry=RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, max_retry_after=1.0),
        breaker=None,
        timeout=TimeoutPolicy(attempt=2.0, total=10),
    )

    async def run(self, input: AskIn, ctx: Context) -> AskOut:
        return AskOut(text=(await ctx.model.complete(input.text, max_tokens=32)).text)


class StreamingAsker(Asker):
    name = "streaming-asker"

    async def run(self, input: AskIn, ctx: Context) -> AskOut:
        return AskOut(text="".join([c.delta async for c in ctx.model.stream(input.text, max_tokens=32)]))


class RecordingClock(SystemClock):
    """The real clock, remembering every wait the runtime asked for."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


@pytest.fixture
def real_providers_allowed() -> Iterator[None]:
    token = allow_real_providers.set(True)
    try:
        yield
    finally:
        allow_real_providers.reset(token)


def orchestrator(provider: OpenAIProvider, clock: RecordingClock) -> Orchestrator:
    registry = Registry()
    registry.add(Asker)
    registry.add(StreamingAsker)
    providers = Providers()
    providers.add(provider)
    return Orchestrator(registry, providers=providers, clock=clock)


@pytest.mark.usefixtures("real_providers_allowed")
async def test_the_runtime_retries_a_429_after_the_upstreams_wait(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    clock = RecordingClock()
    upstream.enqueue(Fault(status=429, headers={"retry-after-ms": "10"}), "done at last")

    envelope = await orchestrator(provider, clock).handle({"plugin": "asker", "input": {"text": "go"}})

    assert envelope.output == {"text": "done at last"}
    assert len(upstream.requests) == 2
    assert clock.sleeps == [0.01]  # the upstream's 10 ms, not the (zero) backoff
    assert (envelope.usage.input_tokens, envelope.usage.output_tokens, envelope.usage.calls) == (1, 3, 1)


@pytest.mark.usefixtures("real_providers_allowed")
async def test_the_runtime_does_not_retry_a_bad_request(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Fault(status=400, message="bad messages"))
    with pytest.raises(ProviderResponseError, match="bad messages"):
        await orchestrator(provider, RecordingClock()).handle({"plugin": "asker", "input": {"text": "go"}})
    assert len(upstream.requests) == 1


@pytest.mark.usefixtures("real_providers_allowed")
async def test_the_runtime_accounts_a_stream_with_the_upstreams_usage(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    upstream.enqueue("streamed back to you")
    envelope = await orchestrator(provider, RecordingClock()).handle(
        {"plugin": "streaming-asker", "input": {"text": "please stream"}}
    )
    assert envelope.output == {"text": "streamed back to you"}
    assert (envelope.usage.input_tokens, envelope.usage.output_tokens) == (2, 4)


async def test_the_forbid_switch_stops_it_before_any_request(
    provider: OpenAIProvider, upstream: FakeUpstream
) -> None:
    # The suite's autouse fixture forbids real providers: nothing reaches the upstream.
    with pytest.raises(RealProviderForbiddenError):
        await orchestrator(provider, RecordingClock()).handle({"plugin": "asker", "input": {"text": "go"}})
    assert upstream.requests == []
