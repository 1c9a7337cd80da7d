"""The official ``openai`` SDK, unchanged but for ``base_url`` and ``api_key``, over a
real socket: models, chat completions (plugin and pass-through), streaming,
embeddings, and our errors as the SDK's own exception types."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx2
import openai
import pytest
from gateway_stack import CALLS, Stack, serving
from openai import AsyncOpenAI, OpenAI

from brickwork.testing.upstream import Fault


@pytest.fixture
async def url(stack: Stack) -> AsyncIterator[str]:
    async with serving(stack.gateway) as base:
        yield base + "/v1"


def client(url: str, raw: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url, api_key=raw, max_retries=0)


async def test_models_list_and_retrieve(stack: Stack, url: str) -> None:
    raw = await stack.key(["echo", "shape"])
    async with client(url, raw) as sdk:
        ids = [m.id async for m in sdk.models.list()]
        assert ids == ["echo", "echo@canary", "echo@prod", "echo@1.0.0", "echo@2.0.0", "shape", "shape@1.0.0"]
        model = await sdk.models.retrieve("echo@prod")
        assert model.id == "echo@prod"
        assert model.owned_by == "brickwork"
        with pytest.raises(openai.NotFoundError):
            await sdk.models.retrieve("secret")


async def test_chat_completion_with_a_plugin(stack: Stack, url: str) -> None:
    raw = await stack.key(["echo", "shape"])
    async with client(url, raw) as sdk:
        reply = await sdk.chat.completions.create(
            model="echo@canary",
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        )
        assert reply.choices[0].message.content == "HI"
        assert reply.choices[0].finish_reason == "stop"
        assert reply.model_extra is not None
        assert reply.model_extra["brickwork"]["version"] == "2.0.0"
        structured = await sdk.chat.completions.create(
            model="shape", messages=[{"role": "user", "content": json.dumps({"width": 6, "height": 7})}]
        )
        assert json.loads(structured.choices[0].message.content or "") == {"area": 42}


async def test_chat_completion_passthrough_to_a_provider_model(stack: Stack, url: str) -> None:
    raw = await stack.key(["openai:fake-*"])
    async with client(url, raw) as sdk:
        reply = await sdk.chat.completions.create(
            model="openai:fake-model", messages=[{"role": "user", "content": "ping"}], max_tokens=50
        )
    assert reply.choices[0].message.content == "you said: ping"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 1
    assert reply.usage.completion_tokens == 3
    sent = stack.upstream.requests[-1]
    assert sent.json["model"] == "fake-model"
    assert sent.json["max_tokens"] == 50
    record = stack.memory.records[-1]
    assert (record.plugin, record.outcome, record.models) == (
        "passthrough-openai",
        "ok",
        ["openai:fake-model"],
    )


async def test_streaming_passthrough_sends_tokens_as_they_arrive(stack: Stack, url: str) -> None:
    raw = await stack.key(["openai:*"])
    stack.upstream.enqueue(Fault(text="one two three four", chunk_delay=0.15))
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    async with client(url, raw) as sdk:
        stream = await sdk.chat.completions.create(
            model="openai:fake-model",
            messages=[{"role": "user", "content": "count"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = None
        finish = None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    arrivals.append((time.monotonic() - started, choice.delta.content))
                finish = choice.finish_reason or finish
    assert "".join(text for _, text in arrivals) == "one two three four"
    assert len(arrivals) == 4
    # the first word reached the client long before the last one was produced
    assert arrivals[-1][0] - arrivals[0][0] > 0.3
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == 4
    assert stack.memory.records[-1].outcome == "ok"
    assert (await stack.audit.verify()).count == 1


async def test_streaming_a_plugin_and_errors_before_and_during_a_stream(stack: Stack, url: str) -> None:
    raw = await stack.key(["echo", "openai:*"])
    async with client(url, raw) as sdk:
        stream = await sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "whole"}], stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "whole"
        # refused before any token: the real status, so the SDK's proper exception
        with pytest.raises(openai.PermissionDeniedError):
            await sdk.chat.completions.create(
                model="secret", messages=[{"role": "user", "content": "x"}], stream=True
            )
        # broken after tokens flowed: an error event, which the SDK raises
        stack.upstream.enqueue(Fault(text="a b c d e", stream_error_after=3))
        stream = await sdk.chat.completions.create(
            model="openai:fake-model", messages=[{"role": "user", "content": "x"}], stream=True
        )
        received: list[str] = []

        async def read() -> None:
            async for chunk in stream:
                received.extend(c.delta.content for c in chunk.choices if c.delta.content)

        with pytest.raises(openai.APIError) as caught:
            await read()
        assert received  # some text did arrive first
        assert caught.value.body is not None
        assert caught.value.body["code"] == "provider_unavailable"
    assert stack.memory.records[-1].outcome == "provider_unavailable"


async def test_errors_are_the_sdks_exception_types(stack: Stack, url: str) -> None:
    raw = await stack.key(["echo", "shape", "limited"])
    user = [{"role": "user", "content": "x"}]
    async with client(url, "bw_0123456789abcdef_" + "A" * 43) as sdk:
        with pytest.raises(openai.AuthenticationError) as unknown:
            await sdk.chat.completions.create(model="echo", messages=user)  # type: ignore[arg-type]
        assert unknown.value.code == "unauthenticated"
    async with client(url, raw) as sdk:
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await sdk.chat.completions.create(model="secret", messages=user)  # type: ignore[arg-type]
        assert denied.value.code == "permission_denied"
        with pytest.raises(openai.PermissionDeniedError):
            await sdk.chat.completions.create(model="openai:fake-model", messages=user)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):
            await sdk.chat.completions.create(model="echo@7", messages=user)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):
            await sdk.chat.completions.create(model="nosuch:model", messages=user)  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk.chat.completions.create(model="Not A Ref", messages=user)  # type: ignore[arg-type]
        assert bad.value.code == "invalid_request"
        with pytest.raises(openai.BadRequestError):
            await sdk.chat.completions.create(model="shape", messages=user)  # type: ignore[arg-type]
        with pytest.raises(openai.UnprocessableEntityError):
            await sdk.chat.completions.create(
                model="shape", messages=[{"role": "user", "content": '{"width": 1}'}]
            )
        for _ in range(2):
            await sdk.chat.completions.create(model="limited", messages=user)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as limited:
            await sdk.chat.completions.create(model="limited", messages=user)  # type: ignore[arg-type]
        assert int(limited.value.response.headers["retry-after"]) >= 1


async def test_upstream_failure_falls_back_and_upstream_errors_surface_typed(stack: Stack, url: str) -> None:
    raw = await stack.key(["llm", "rules", "openai:*"])
    stack.upstream.enqueue(Fault(status=503))
    async with client(url, raw) as sdk:
        reply = await sdk.chat.completions.create(model="llm", messages=[{"role": "user", "content": "q"}])
        assert reply.choices[0].message.content == "rules:q"
        assert reply.model_extra is not None
        assert reply.model_extra["brickwork"]["degraded"] is True
        stack.upstream.enqueue(Fault(status=429, retry_after=7))
        with pytest.raises(openai.RateLimitError) as limited:
            await sdk.chat.completions.create(
                model="openai:fake-model", messages=[{"role": "user", "content": "q"}]
            )
        assert limited.value.response.headers["retry-after"] == "7"


async def test_embeddings_passthrough_and_plugin_in_both_encodings(stack: Stack, url: str) -> None:
    raw = await stack.key(["embedder", "openai:*"])
    async with client(url, raw) as sdk:
        passthrough = await sdk.embeddings.create(
            model="openai:fake-embed", input=["a b", "c"]
        )  # base64 by default
        assert [len(d.embedding) for d in passthrough.data] == [8, 8]
        assert passthrough.usage.prompt_tokens == 3
        plugin = await sdk.embeddings.create(
            model="embedder", input=["hello", "sky"], encoding_format="float"
        )
        assert [d.embedding for d in plugin.data] == [[5.0, 2.0], [3.0, 0.0]]
        packed = await sdk.embeddings.create(model="embedder", input="hello")
        assert packed.data[0].embedding == [5.0, 2.0]
        with pytest.raises(openai.BadRequestError):
            await sdk.embeddings.create(model="embedder", input=[])


async def test_the_sync_client_works_too(stack: Stack, url: str) -> None:
    raw = await stack.key(["echo"])

    def call() -> str | None:
        with OpenAI(base_url=url, api_key=raw, max_retries=0) as sdk:
            return (
                sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "sync"}])
                .choices[0]
                .message.content
            )

    assert await asyncio.to_thread(call) == "sync"
    assert CALLS["echo@1"] == 1


async def test_a_client_that_leaves_mid_stream_cancels_the_run(stack: Stack, url: str) -> None:
    raw = await stack.key(["openai:*"])
    stack.upstream.enqueue(Fault(text=" ".join(f"w{i}" for i in range(40)), chunk_delay=0.1))
    body = {"model": "openai:fake-model", "messages": [{"role": "user", "content": "go"}], "stream": True}
    async with (
        httpx2.AsyncClient(base_url=url, timeout=10) as client,
        client.stream(
            "POST", "/chat/completions", json=body, headers={"Authorization": f"Bearer {raw}"}
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if '"w1 "' in line:
                break  # leave after two words
    for _ in range(100):
        if stack.memory.records:
            break
        await asyncio.sleep(0.05)
    record = stack.memory.records[-1]
    assert record.outcome == "cancelled"
    assert record.plugin == "passthrough-openai"
    assert (await stack.audit.verify()).count == 1  # the cancelled call is audited too
