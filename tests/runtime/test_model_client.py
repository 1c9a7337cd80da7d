"""``ctx.model``: retry, per-attempt timeout, fallback models, breaker, budget,
accounting, the forbid switch and permissions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import Field

from brickwork.contracts.errors import (
    BrickworkError,
    BudgetExceededError,
    CircuitOpenError,
    DeadlineExceededError,
    FallbacksExhaustedError,
    PermissionDeniedError,
    ProviderRateLimitedError,
    ProviderResponseError,
    ProviderTimeoutError,
    RealProviderForbiddenError,
    RetriesExhaustedError,
    http_status,
)
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import (
    BreakerPolicy,
    BudgetPolicy,
    FallbackPolicy,
    Policy,
    RetryPolicy,
    TimeoutPolicy,
)
from brickwork.contracts.provider import CompletionRequest, StreamChunk, Usage
from brickwork.runtime.models import ModelPrice, allow_real_providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.testing import (
    Delay,
    FakeClock,
    FakeProvider,
    FunctionProvider,
    forbid_real_providers,
    rate_limited,
    server_error,
    timeout,
)

Build = Callable[..., Orchestrator]

#: $0.001 a token either way: costs are easy to check by hand.
PRICES = {"fake:small": ModelPrice(input=1_000, output=1_000)}


class WriteIn(PluginInput):
    text: str = Field(min_length=1)
    calls: int = Field(default=1, ge=0, le=5)
    max_tokens: int = 16


class WriteOut(PluginOutput):
    text: str


class Writer(Plugin[WriteIn, WriteOut]):
    name = "writer"
    version = "1.0.0"
    description = "Asks its model, ``calls`` times."
    model = "fake:small"
    permissions = frozenset({"model"})
    policy = Policy(
        retry=RetryPolicy(max_attempts=3, base_delay=0.1, max_retry_after=10),
        breaker=None,
        timeout=TimeoutPolicy(attempt=1.0, total=30),
    )

    async def run(self, input: WriteIn, ctx: Context) -> WriteOut:
        texts = []
        for _ in range(input.calls):
            completion = await ctx.model.complete(input.text, max_tokens=input.max_tokens)
            texts.append(completion.text)
        return WriteOut(text=" | ".join(texts))


def writer(**policy: object) -> type[Writer]:
    """A ``writer`` whose policy has ``policy`` merged on top."""
    return type("CustomWriter", (Writer,), {"policy": Writer.policy.merged(dict(policy))})


# --- retry -------------------------------------------------------------------------


async def test_rate_limited_calls_are_retried_after_retry_after(build: Build, clock: FakeClock) -> None:
    clock.autojump = True
    provider = FakeProvider("fake").fail(rate_limited(retry_after=2.5), times=2).enqueue("done")
    orch = build(Writer, providers=[provider])

    envelope = await orch.handle({"plugin": "writer", "input": "go"})

    assert envelope.output == {"text": "done"}
    assert len(provider.calls) == 3
    assert clock.sleeps == [2.5, 2.5]  # Retry-After beats the (smaller) jittered backoff
    assert envelope.usage.calls == 1  # only the answered call is billed


async def test_a_retry_after_longer_than_allowed_is_not_waited_for(build: Build, clock: FakeClock) -> None:
    clock.autojump = True
    provider = FakeProvider("fake").fail(rate_limited(retry_after=60))
    orch = build(Writer, providers=[provider])

    with pytest.raises(ProviderRateLimitedError) as caught:
        await orch.handle({"plugin": "writer", "input": "go"})

    assert caught.value.retry_after == 60
    assert http_status(caught.value) == 429
    assert len(provider.calls) == 1
    assert clock.sleeps == []


async def test_retries_stop_at_max_attempts(build: Build, clock: FakeClock) -> None:
    clock.autojump = True
    provider = FakeProvider("fake").fail(server_error(), times=5)
    orch = build(Writer, providers=[provider])

    with pytest.raises(RetriesExhaustedError) as caught:
        await orch.handle({"plugin": "writer", "input": "go"})

    assert caught.value.attempts == 3
    assert len(provider.calls) == 3
    assert len(clock.sleeps) == 2
    assert all(0 <= s <= 0.2 for s in clock.sleeps)  # full jitter under base · 2^(n-1)


async def test_retries_stop_at_the_deadline(build: Build, clock: FakeClock) -> None:
    clock.autojump = True
    provider = FakeProvider("fake").fail(rate_limited(retry_after=8), times=5)
    orch = build(writer(timeout={"total": 20}, retry={"max_attempts": 10}), providers=[provider])

    with pytest.raises(RetriesExhaustedError):
        await orch.handle({"plugin": "writer", "input": "go"})

    # 0s, 8s, 16s: a third wait of 8s would pass the 20s deadline.
    assert len(provider.calls) == 3


async def test_non_retryable_errors_are_not_retried(build: Build, clock: FakeClock) -> None:
    clock.autojump = True
    provider = FakeProvider("fake").fail(ProviderResponseError("truncated JSON"))
    orch = build(Writer, providers=[provider])

    with pytest.raises(ProviderResponseError):
        await orch.handle({"plugin": "writer", "input": "go"})

    assert len(provider.calls) == 1


# --- per-attempt timeout -------------------------------------------------------------


async def test_a_slow_attempt_times_out_and_the_retry_answers(build: Build, clock: FakeClock) -> None:
    clock.autojump = True
    provider = FakeProvider("fake", clock=clock).enqueue(Delay(5, "slow"), "fast")
    orch = build(Writer, providers=[provider])

    envelope = await orch.handle({"plugin": "writer", "input": "go"})

    assert envelope.output == {"text": "fast"}
    assert len(provider.calls) == 2


async def test_a_slow_attempt_without_retry_is_provider_timeout(build: Build, clock: FakeClock) -> None:
    provider = FakeProvider("fake", clock=clock).enqueue(Delay(5, "slow"))
    orch = build(writer(retry=None), providers=[provider])
    task = asyncio.create_task(orch.handle({"plugin": "writer", "input": "go"}))
    await clock.settle()

    clock.advance(0.99)
    await clock.settle()
    assert not task.done()
    clock.advance(0.01)
    await clock.settle()

    with pytest.raises(ProviderTimeoutError, match="within 1s"):
        task.result()
    error = task.exception()
    assert isinstance(error, ProviderTimeoutError)
    assert http_status(error) == 504


async def test_scripted_timeouts_are_retried_too(build: Build, clock: FakeClock) -> None:
    clock.autojump = True
    provider = FakeProvider("fake").fail(timeout()).enqueue("ok")
    orch = build(Writer, providers=[provider])

    assert (await orch.handle({"plugin": "writer", "input": "go"})).output == {"text": "ok"}
    assert len(provider.calls) == 2


# --- fallback models ---------------------------------------------------------------


class Chained(Writer):
    name = "chained"
    policy = Policy(
        retry=None,
        breaker=None,
        fallback=FallbackPolicy(models=("backup:tiny",)),
    )


async def test_next_model_answers_when_the_first_fails(build: Build) -> None:
    first = FakeProvider("fake").fail(server_error())
    second = FakeProvider("backup").enqueue("from backup")
    orch = build(Chained, providers=[first, second])

    envelope = await orch.handle({"plugin": "chained", "input": "go"})

    assert envelope.output == {"text": "from backup"}
    assert envelope.models == ["backup:tiny"]
    assert envelope.warnings == ["model fake:small failed (provider_unavailable); trying next"]
    assert second.calls[0].model == "tiny"  # type: ignore[union-attr]
    assert not envelope.degraded  # the same plugin answered


async def test_every_model_failing_is_fallbacks_exhausted(build: Build) -> None:
    first = FakeProvider("fake").fail(server_error())
    second = FakeProvider("backup").fail(rate_limited(3))
    orch = build(Chained, providers=[first, second])

    with pytest.raises(FallbacksExhaustedError) as caught:
        await orch.handle({"plugin": "chained", "input": "go"})

    assert [e.code for e in caught.value.errors] == ["provider_unavailable", "provider_rate_limited"]
    assert caught.value.retry_after == 3


async def test_warnings_say_trying_next_only_when_there_is_a_next_model(build: Build) -> None:
    class Tolerant(Chained):
        name = "tolerant"

        async def run(self, input: WriteIn, ctx: Context) -> WriteOut:
            try:
                return WriteOut(text=(await ctx.model.complete(input.text)).text)
            except FallbacksExhaustedError:
                return WriteOut(text="no model answered")

    first = FakeProvider("fake").fail(server_error())
    second = FakeProvider("backup").fail(server_error())
    orch = build(Tolerant, providers=[first, second])

    envelope = await orch.handle({"plugin": "tolerant", "input": "go"})

    assert envelope.output == {"text": "no model answered"}
    assert envelope.warnings == ["model fake:small failed (provider_unavailable); trying next"]


async def test_missing_provider_is_a_configuration_error_not_a_fallback(build: Build) -> None:
    second = FakeProvider("backup").enqueue("never")
    orch = build(Chained, providers=[second])

    with pytest.raises(BrickworkError, match="no provider 'fake'") as caught:
        await orch.handle({"plugin": "chained", "input": "go"})

    assert caught.value.code == "configuration_error"
    assert second.calls == []


# --- breaker per plugin + provider ---------------------------------------------------


class Guarded(Writer):
    """Turns model errors into an answer, so only the model breaker is exercised."""

    name = "guarded"
    policy = Policy(
        retry=None,
        breaker=BreakerPolicy(min_calls=3, failure_ratio=1.0, open_for=10, half_open_trials=2),
    )

    async def run(self, input: WriteIn, ctx: Context) -> WriteOut:
        try:
            return WriteOut(text=(await ctx.model.complete(input.text)).text)
        except BrickworkError as exc:
            return WriteOut(text=exc.code)


async def test_model_breaker_opens_and_recovers_with_exactly_the_trial_calls(
    build: Build, clock: FakeClock
) -> None:
    provider = FakeProvider("fake").fail(server_error(), times=3)
    orch = build(Guarded, providers=[provider])

    async def ask() -> str:
        return str((await orch.handle({"plugin": "guarded", "input": "go"})).output["text"])

    assert [await ask() for _ in range(3)] == ["provider_unavailable"] * 3
    assert [await ask() for _ in range(4)] == ["circuit_open"] * 4
    assert len(provider.calls) == 3  # open: nothing reaches the provider

    clock.advance(10)
    assert [await ask() for _ in range(2)] == ["fake reply"] * 2  # the two trials close it
    assert len(provider.calls) == 5
    assert [await ask() for _ in range(5)] == ["fake reply"] * 5
    assert len(provider.calls) == 10


async def test_model_breaker_half_open_admits_only_its_trials_at_once(build: Build, clock: FakeClock) -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    async def answer(request: object) -> str:
        seen.append("call")
        await gate.wait()
        return "fine"

    provider = FunctionProvider(answer, name="fake")
    broken = FakeProvider("fake").fail(server_error(), times=3)
    orch = build(Guarded, providers=[broken])
    for _ in range(3):
        await orch.handle({"plugin": "guarded", "input": "go"})
    orch.providers.add(provider)  # the upstream has recovered
    clock.advance(10)

    tasks = [asyncio.create_task(orch.handle({"plugin": "guarded", "input": "go"})) for _ in range(6)]
    await clock.settle(40)
    assert len(seen) == 2
    gate.set()
    texts = sorted([str((await t).output["text"]) for t in tasks])

    assert texts == ["circuit_open"] * 4 + ["fine"] * 2
    assert len(seen) == 2


async def test_model_breaker_is_per_provider(build: Build) -> None:
    class TwoProviders(Guarded):
        name = "two"
        policy = Guarded.policy.merged({"fallback": {"models": ["backup:tiny"]}})

    first = FakeProvider("fake").fail(server_error(), times=3)
    second = FakeProvider("backup")
    orch = build(TwoProviders, providers=[first, second])

    for _ in range(5):
        envelope = await orch.handle({"plugin": "two", "input": "go"})
        assert envelope.output == {"text": "fake reply"}

    assert len(first.calls) == 3  # its breaker opened after three failures
    assert len(second.calls) == 5
    assert envelope.warnings == ["model fake:small failed (circuit_open); trying next"]


class OneCall(Writer):
    """A plugin whose run is one model call: the plugin's breaker is the only one."""

    name = "onecall"
    policy = Guarded.policy.merged({"breaker": {"per_model": False}})


async def test_without_a_breaker_per_model_the_plugin_s_breaker_alone_counts(build: Build) -> None:
    provider = FakeProvider("fake").fail(server_error(), times=3)
    orch = build(OneCall, providers=[provider])

    for _ in range(3):
        with pytest.raises(BrickworkError) as caught:
            await orch.handle({"plugin": "onecall", "input": "go"})
        assert caught.value.code == "provider_unavailable"
    with pytest.raises(CircuitOpenError) as opened:
        await orch.handle({"plugin": "onecall", "input": "go"})
    assert "onecall@1.0.0 is open" in opened.value.message  # the plugin's, not "via fake"
    assert len(provider.calls) == 3
    assert [key for key in orch._breakers if key.startswith("breaker:model:")] == []


# --- budget and accounting ----------------------------------------------------------


async def test_usage_and_cost_of_every_call_are_summed_in_the_envelope(
    build: Build, recorder: MemoryRecorder
) -> None:
    provider = FakeProvider("fake").enqueue("one two", "three")
    orch = build(Writer, providers=[provider], prices=PRICES)

    envelope = await orch.handle({"plugin": "writer", "input": {"text": "a b c", "calls": 2}})

    # 3 words in and 2 out, then 3 in and 1 out, at $0.001 a token.
    assert envelope.usage == Usage(input_tokens=6, output_tokens=3, calls=2)
    assert envelope.cost == pytest.approx(0.009)
    assert envelope.models == ["fake:small"]
    [record] = recorder.records
    assert record.usage == envelope.usage
    assert record.cost == pytest.approx(0.009)


async def test_a_call_priced_over_the_budget_is_refused_before_it_is_made(build: Build) -> None:
    expensive = writer(budget={"limit": 0.1, "period": 3600})
    provider = FakeProvider("fake")
    orch = build(expensive, providers=[provider], prices=PRICES)

    # 256 tokens out at most: $0.257 reserved against a $0.10 limit.
    with pytest.raises(BudgetExceededError) as caught:
        await orch.handle({"plugin": "writer", "input": {"text": "go", "max_tokens": 256}})

    assert provider.calls == []
    assert http_status(caught.value) == 402
    assert caught.value.details["needed"] == pytest.approx(0.257)


async def test_budget_counts_actual_spend_until_the_limit(build: Build, clock: FakeClock) -> None:
    # Each call reserves $0.005 (1 token in, 4 out) and spends $0.005 (3 in, 2 out).
    limited = writer(budget=BudgetPolicy(limit=0.018, period=3600).model_dump())
    provider = FakeProvider("fake", default="x y")
    orch = build(limited, providers=[provider], prices=PRICES)
    request = {"plugin": "writer", "input": {"text": "a b c", "max_tokens": 4}}

    for _ in range(3):
        await orch.handle(request)
    with pytest.raises(BudgetExceededError):
        await orch.handle(request)
    assert len(provider.calls) == 3

    other_tenant = await orch.handle({**request, "tenant": "other"})
    assert other_tenant.cost == pytest.approx(0.005)

    clock.advance(3600)  # the next period starts afresh
    await orch.handle(request)
    assert len(provider.calls) == 5


async def test_a_failed_call_gives_its_reservation_back(build: Build) -> None:
    limited = writer(retry=None, budget={"limit": 0.006, "period": 3600})
    provider = FakeProvider("fake", default="x y").fail(server_error())
    orch = build(limited, providers=[provider], prices=PRICES)
    request = {"plugin": "writer", "input": {"text": "a b c", "max_tokens": 4}}

    with pytest.raises(BrickworkError):
        await orch.handle(request)
    envelope = await orch.handle(request)  # $0.005 reserved again: the failure cost nothing

    assert envelope.cost == pytest.approx(0.005)


# --- the forbid switch and permissions -----------------------------------------------


class RealProvider(FakeProvider):
    is_real = True


async def test_forbid_real_providers_blocks_a_real_provider(build: Build) -> None:
    provider = RealProvider("fake")
    orch = build(Writer, providers=[provider])

    with forbid_real_providers(), pytest.raises(RealProviderForbiddenError) as caught:
        await orch.handle({"plugin": "writer", "input": "go"})
    assert provider.calls == []
    assert "fake:small" in caught.value.message

    # The suite forbids real providers everywhere; opting back in lets it through.
    token = allow_real_providers.set(True)
    try:
        envelope = await orch.handle({"plugin": "writer", "input": "go"})
    finally:
        allow_real_providers.reset(token)
    assert envelope.output == {"text": "fake reply"}


async def test_forbid_real_providers_lets_fakes_through(build: Build) -> None:
    orch = build(Writer, providers=[FakeProvider("fake")])

    with forbid_real_providers():
        assert (await orch.handle({"plugin": "writer", "input": "go"})).output == {"text": "fake reply"}


async def test_model_call_without_the_model_permission_is_denied(build: Build) -> None:
    class Sneaky(Plugin[WriteIn, WriteOut]):
        name = "sneaky"
        version = "1.0.0"
        description = "Calls a model it never declared."

        async def run(self, input: WriteIn, ctx: Context) -> WriteOut:
            return WriteOut(text=(await ctx.model.complete(input.text)).text)

    provider = FakeProvider("fake")
    orch = build(Sneaky, providers=[provider])

    with pytest.raises(PermissionDeniedError, match="'model' permission") as caught:
        await orch.handle({"plugin": "sneaky", "input": "go"})

    assert http_status(caught.value) == 403
    assert provider.calls == []


async def test_embed_needs_the_embed_permission(build: Build) -> None:
    class Embedder(Writer):
        name = "embedder"

        async def run(self, input: WriteIn, ctx: Context) -> WriteOut:
            vectors = await ctx.model.embed([input.text])
            return WriteOut(text=str(len(vectors.vectors)))

    class AllowedEmbedder(Embedder):
        name = "embedder2"
        permissions = frozenset({"model", "embed"})
        embedding_model = "fake:embed"  # embeddings have their own binding

    orch = build(Embedder, AllowedEmbedder, providers=[FakeProvider("fake")])

    with pytest.raises(PermissionDeniedError, match="'embed'"):
        await orch.handle({"plugin": "embedder", "input": "go"})
    envelope = await orch.handle({"plugin": "embedder2", "input": "go"})
    assert envelope.output == {"text": "1"}
    assert envelope.usage.calls == 1


# --- streaming ---------------------------------------------------------------------


class Streamer(Writer):
    """Streams its reply; ``calls=0`` stops after the first chunk, ``calls=2`` then hangs."""

    name = "streamer"
    policy = Policy(retry=None, breaker=None, timeout=TimeoutPolicy(total=5))

    async def run(self, input: WriteIn, ctx: Context) -> WriteOut:
        parts = []
        async for chunk in ctx.model.stream(input.text, max_tokens=input.max_tokens):
            parts.append(chunk.delta)
            if input.calls == 0:
                break
            if input.calls == 2:
                await asyncio.Event().wait()  # e.g. a slow client the chunks are sent to
        return WriteOut(text="".join(parts))


def streamer(**policy: object) -> type[Streamer]:
    return type("CustomStreamer", (Streamer,), {"policy": Streamer.policy.merged(dict(policy))})


async def test_stream_yields_the_reply_and_accounts_for_it(build: Build) -> None:
    provider = FakeProvider("fake").enqueue("one two three")
    orch = build(Streamer, providers=[provider], prices=PRICES)

    envelope = await orch.handle({"plugin": "streamer", "input": "go"})

    assert envelope.output == {"text": "one two three"}
    assert envelope.usage == Usage(input_tokens=1, output_tokens=3, calls=1)
    assert envelope.cost == pytest.approx(0.004)
    assert envelope.models == ["fake:small"]


async def test_a_stream_that_fails_to_open_falls_back_to_the_next_model(build: Build) -> None:
    first = FakeProvider("fake").fail(server_error())
    second = FakeProvider("backup").enqueue("from backup")
    orch = build(streamer(fallback={"models": ["backup:tiny"]}), providers=[first, second])

    envelope = await orch.handle({"plugin": "streamer", "input": "go"})

    assert envelope.output == {"text": "from backup"}
    assert envelope.models == ["backup:tiny"]


async def test_deadline_while_the_plugin_is_between_chunks_is_deadline_exceeded(
    build: Build, clock: FakeClock
) -> None:
    orch = build(Streamer, providers=[FakeProvider("fake").enqueue("a b c")])
    task = asyncio.create_task(orch.handle({"plugin": "streamer", "input": {"text": "go", "calls": 2}}))
    await clock.settle()

    clock.advance(5)
    await clock.settle()

    # Not a raw cancellation of a request nobody cancelled: the typed deadline error.
    assert task.done()
    assert not task.cancelled()
    assert isinstance(task.exception(), DeadlineExceededError)


async def test_a_stream_priced_over_the_budget_is_refused_before_it_opens(build: Build) -> None:
    provider = FakeProvider("fake")
    orch = build(streamer(budget={"limit": 0.1}), providers=[provider], prices=PRICES)

    with pytest.raises(BudgetExceededError):
        await orch.handle({"plugin": "streamer", "input": {"text": "go", "max_tokens": 256}})

    assert provider.calls == []


async def test_streams_spend_the_budget_even_when_read_only_in_part(build: Build) -> None:
    # Each stream reserves $0.005 (1 token in, 4 out). Read whole, it spends $0.004
    # (1 in, 3 out, as the provider reports). Left after one chunk, with no report,
    # it spends $0.002: the estimated input and one token a chunk received.
    provider = FakeProvider("fake", default="x y z")
    orch = build(streamer(budget={"limit": 0.0105}), providers=[provider], prices=PRICES)

    whole = await orch.handle({"plugin": "streamer", "input": {"text": "go", "max_tokens": 4}})
    part = await orch.handle({"plugin": "streamer", "input": {"text": "go", "max_tokens": 4, "calls": 0}})
    with pytest.raises(BudgetExceededError):  # $0.006 spent + $0.005 > $0.0105
        await orch.handle({"plugin": "streamer", "input": {"text": "go", "max_tokens": 4}})

    assert whole.cost == pytest.approx(0.004)
    assert part.output == {"text": "x "}
    assert part.usage == Usage(input_tokens=1, output_tokens=1, calls=1)
    assert part.cost == pytest.approx(0.002)
    assert len(provider.calls) == 2


async def test_a_stream_that_fails_to_open_is_retried_until_its_first_chunk(
    build: Build, clock: FakeClock
) -> None:
    clock.autojump = True
    provider = FakeProvider("fake").fail(server_error(), times=2).enqueue("third time")
    orch = build(streamer(retry={"max_attempts": 3}), providers=[provider])

    envelope = await orch.handle({"plugin": "streamer", "input": "go"})

    assert envelope.output == {"text": "third time"}
    assert len(provider.calls) == 3
    assert len(clock.sleeps) == 2  # the policy's backoff between the attempts
    assert envelope.usage.calls == 1  # only the stream that flowed is billed


class GuardedStreamer(Streamer):
    """Streams; turns model errors into an answer, so only the model breaker is exercised."""

    name = "guarded-streamer"
    policy = Guarded.policy.merged({"timeout": {"total": 5}})

    async def run(self, input: WriteIn, ctx: Context) -> WriteOut:
        try:
            return await super().run(input, ctx)
        except BrickworkError as exc:
            return WriteOut(text=exc.code)


async def test_model_breaker_counts_streams_and_opens_for_them(build: Build, clock: FakeClock) -> None:
    provider = FakeProvider("fake").fail(server_error(), times=3)
    orch = build(GuardedStreamer, providers=[provider])

    async def ask() -> str:
        return str((await orch.handle({"plugin": "guarded-streamer", "input": "go"})).output["text"])

    assert [await ask() for _ in range(3)] == ["provider_unavailable"] * 3
    assert [await ask() for _ in range(3)] == ["circuit_open"] * 3
    assert len(provider.calls) == 3  # open: no stream is opened

    clock.advance(10)
    assert [await ask() for _ in range(3)] == ["fake reply"] * 3  # the two trials closed it
    assert len(provider.calls) == 6


async def test_an_open_model_breaker_sends_a_stream_to_the_next_model(build: Build) -> None:
    first = FakeProvider("fake").fail(server_error(), times=3)
    second = FakeProvider("backup")
    orch = build(
        type(
            "TwoStreamers",
            (GuardedStreamer,),
            {"policy": GuardedStreamer.policy.merged({"fallback": {"models": ["backup:tiny"]}})},
        ),
        providers=[first, second],
    )

    for _ in range(5):
        envelope = await orch.handle({"plugin": "guarded-streamer", "input": "go"})
        assert envelope.output == {"text": "fake reply"}

    assert len(first.calls) == 3  # its breaker opened after three failures
    assert len(second.calls) == 5
    assert envelope.warnings == ["model fake:small failed (circuit_open); trying next"]


async def test_a_stream_its_reader_stops_early_is_no_failure_for_the_breaker(build: Build) -> None:
    provider = FakeProvider("fake")
    orch = build(GuardedStreamer, providers=[provider])

    for _ in range(4):  # three failures would open it (min_calls 3, failure ratio 1)
        envelope = await orch.handle({"plugin": "guarded-streamer", "input": {"text": "go", "calls": 0}})
        assert envelope.output == {"text": "fake "}

    assert len(provider.calls) == 4


class SlowAnswer(FakeProvider):
    """Answers its first chunk at once and the second after ``pause`` seconds."""

    def __init__(self, clock: FakeClock, pause: float) -> None:
        super().__init__("fake", clock=clock)
        self.pause = pause

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        self.calls.append(request)
        yield StreamChunk(delta="fake ")
        assert self.clock is not None
        await self.clock.sleep(self.pause)
        yield StreamChunk(delta="reply", finish_reason="stop")


async def test_a_long_stream_is_no_slow_model_for_the_breaker(build: Build, clock: FakeClock) -> None:
    # A stream's latency for its model's breaker is the time to its first chunk, not
    # its length. (The plugin's breaker judges the whole run, which did take 4 s.)
    clock.autojump = True
    provider = SlowAnswer(clock, pause=4.0)
    policy = GuardedStreamer.policy.merged({"breaker": {"latency_p95": 2.0}})
    orch = build(type("PatientStreamer", (GuardedStreamer,), {"policy": policy}), providers=[provider])

    for _ in range(3):
        envelope = await orch.handle({"plugin": "guarded-streamer", "input": "go"})
        assert envelope.output == {"text": "fake reply"}

    assert policy.breaker is not None
    now = clock.time()
    model = await orch.state.breaker_snapshot(
        "breaker:model:guarded-streamer@1.0.0:fake", policy.breaker, now=now
    )
    run = await orch.state.breaker_snapshot("breaker:plugin:guarded-streamer@1.0.0", policy.breaker, now=now)
    assert (model.mode, model.calls, model.failures) == ("closed", 3, 0)
    assert model.p95 is not None
    assert model.p95 < 2.0
    assert run.mode == "open"


class BrokenClose(FakeProvider):
    """A stream whose clean-up fails when it is closed."""

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        self.calls.append(request)
        try:
            yield StreamChunk(delta="fake ")
            yield StreamChunk(delta="reply", finish_reason="stop")
        finally:
            raise RuntimeError("clean-up failed")


async def test_a_stream_closed_early_is_no_failure_even_when_its_clean_up_fails(build: Build) -> None:
    provider = BrokenClose("fake")
    orch = build(GuardedStreamer, providers=[provider])

    for _ in range(4):  # three failures would open it (min_calls 3, failure ratio 1)
        envelope = await orch.handle({"plugin": "guarded-streamer", "input": {"text": "go", "calls": 0}})
        assert envelope.output == {"text": "fake "}

    assert len(provider.calls) == 4


async def test_circuit_open_error_carries_retry_after(build: Build, clock: FakeClock) -> None:
    class Strict(Writer):
        name = "strict"
        policy = Policy(retry=None, breaker=BreakerPolicy(min_calls=1, failure_ratio=1.0, open_for=10))

    provider = FakeProvider("fake").fail(server_error())
    orch = build(Strict, providers=[provider])
    with pytest.raises(BrickworkError):
        await orch.handle({"plugin": "strict", "input": "go"})
    clock.advance(4)

    with pytest.raises(CircuitOpenError) as caught:
        await orch.handle({"plugin": "strict", "input": "go"})

    assert caught.value.retry_after == pytest.approx(6)
