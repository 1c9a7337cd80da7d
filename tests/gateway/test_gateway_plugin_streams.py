"""Plugins that stream their text, through the official ``openai`` SDK over a real
socket: summarize@2 and translate@2 bound to a model on a fake upstream that sends
a word at a time. Each word reaches the client as the model writes it; the reply is
the plugin's text field; a failure after words flowed raises in the SDK."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from gateway_stack import UPSTREAM_KEY, serving
from openai import AsyncOpenAI

from brickwork.gateway import Gateway, GatewaySettings
from brickwork.plugins.summarize import SummarizeExtractive, SummarizeLLM
from brickwork.plugins.translate import TranslateLLM, TranslateRules
from brickwork.providers.openai import OpenAIProvider
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.storage.audit import SQLiteAuditLog
from brickwork.storage.keys import SQLiteKeyStore
from brickwork.testing.upstream import FakeUpstream, Fault

ARTICLE = (
    "The city council approved the new budget on Tuesday. The plan gives four million "
    "dollars to road repairs, which start in May. Property taxes will not rise this year."
)
MODEL = "openai:fake-model"


@dataclass
class Served:
    url: str
    key: str
    upstream: FakeUpstream
    memory: MemoryRecorder


@pytest.fixture
async def served(tmp_path: Path, upstream: FakeUpstream, loopback_providers: None) -> AsyncIterator[Served]:
    bound = PluginSettings(model=MODEL)
    registry = Registry({"summarize": bound, "translate": bound})
    for cls in (SummarizeExtractive, SummarizeLLM, TranslateRules, TranslateLLM):
        registry.add(cls)
    providers = Providers()
    providers.add(OpenAIProvider("openai", base_url=upstream.openai_url, api_key=UPSTREAM_KEY, timeout=5))
    memory = MemoryRecorder()
    orchestrator = Orchestrator(registry, providers=providers, recorders=[memory])
    keys = SQLiteKeyStore(tmp_path / "keys.db", cache_ttl=0)
    gateway = Gateway(
        orchestrator, keys=keys, audit=SQLiteAuditLog(tmp_path / "audit.db"), settings=GatewaySettings()
    )
    await gateway.start()
    _, raw = await keys.create(tenant="acme", plugins=["summarize", "translate"])
    async with serving(gateway) as base:
        yield Served(base + "/v1", raw, upstream, memory)
    await gateway.aclose()


async def read(stream: openai.AsyncStream[object]) -> tuple[list[tuple[float, str]], dict[str, object]]:
    """The content deltas with their arrival times, and the final chunk's brickwork facts."""
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    facts: dict[str, object] = {}
    async for chunk in stream:
        for choice in chunk.choices:  # type: ignore[attr-defined]
            if choice.delta.content:
                arrivals.append((time.monotonic() - started, choice.delta.content))
        extra = chunk.model_extra or {}  # type: ignore[attr-defined]
        facts = extra.get("brickwork", facts)
    return arrivals, facts


async def test_summarize_streams_token_by_token_through_the_sdk(served: Served) -> None:
    answer = "The council approved a budget, with four million dollars for roads from May."
    served.upstream.enqueue(Fault(text=answer, chunk_delay=0.05))
    async with AsyncOpenAI(base_url=served.url, api_key=served.key, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="summarize@2",
            messages=[{"role": "user", "content": ARTICLE}],
            stream=True,
            stream_options={"include_usage": True},
        )
        arrivals, facts = await read(stream)  # type: ignore[arg-type]
    text = "".join(piece for _, piece in arrivals)
    assert text == answer
    assert len(arrivals) >= 10  # word by word, not one chunk at the end
    assert arrivals[-1][0] - arrivals[0][0] > 0.3  # the first word came long before the last
    assert facts["output"]["summary"] == answer  # type: ignore[index]
    assert served.upstream.requests[-1].json["stream"] is True
    assert served.memory.records[-1].outcome == "ok"


async def test_a_chat_reply_is_the_plugins_text_not_its_whole_output(served: Served) -> None:
    served.upstream.enqueue("The council passed a budget.")
    async with AsyncOpenAI(base_url=served.url, api_key=served.key, max_retries=0) as sdk:
        reply = await sdk.chat.completions.create(
            model="summarize@2", messages=[{"role": "user", "content": ARTICLE}]
        )
    assert reply.choices[0].message.content == "The council passed a budget."
    assert reply.model_extra is not None
    assert reply.model_extra["brickwork"]["output"]["method"] == "abstractive"


async def test_translate_streams_token_by_token_through_the_sdk(served: Served) -> None:
    served.upstream.enqueue(Fault(text="Bonjour, bienvenue chez [T1] aujourd'hui.", chunk_delay=0.05))
    content = (
        '{"text": "Hello, welcome to Brickwork today.", "target_language": "fr", "glossary": ["Brickwork"]}'
    )
    async with AsyncOpenAI(base_url=served.url, api_key=served.key, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="translate@2",
            messages=[{"role": "user", "content": content}],
            stream=True,
            stream_options={"include_usage": True},
        )
        arrivals, facts = await read(stream)  # type: ignore[arg-type]
    assert "".join(piece for _, piece in arrivals) == "Bonjour, bienvenue chez Brickwork aujourd'hui."
    assert len(arrivals) >= 4
    assert facts["output"]["glossary_kept"] is True  # type: ignore[index]


async def test_a_failure_after_words_flowed_raises_in_the_sdk(served: Served) -> None:
    # The model breaks off after three words. summarize@1's answer could not be spliced
    # onto words already sent, so there is no fallback: the stream ends in one error
    # event (no [DONE]) and the SDK raises instead of returning half an answer.
    served.upstream.enqueue(Fault(text="The council approved a big budget today.", stream_error_after=3))
    received: list[str] = []
    async with AsyncOpenAI(base_url=served.url, api_key=served.key, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="summarize@2", messages=[{"role": "user", "content": ARTICLE}], stream=True
        )

        async def drain() -> None:
            async for chunk in stream:
                received.extend(c.delta.content for c in chunk.choices if c.delta.content)

        with pytest.raises(openai.APIError) as caught:
            await drain()
    assert received  # some words did arrive first
    assert caught.value.body is not None
    assert caught.value.body["code"] == "provider_unavailable"  # type: ignore[index]
    record = served.memory.records[-1]
    assert (record.outcome, record.version, record.fallbacks) == ("provider_unavailable", "2.0.0", [])
