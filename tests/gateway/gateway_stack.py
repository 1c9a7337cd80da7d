"""The wired gateway the gateway tests share: test plugins, a fake upstream behind a real OpenAI
provider, SQLite keys and audit log in a temporary directory, and an in-process
ASGI client (``stack.client``). Tests that need a real socket start
:func:`serving` on top of the same stack.

The plugins:

| plugin | what it is for |
|---|---|
| ``echo`` 1.0.0, 2.0.0 (``prod`` → 1.0.0) | text input; versions and labels |
| ``shape`` | structured input (no ``text`` field) |
| ``llm`` | calls the upstream model; falls back to ``rules`` when that fails |
| ``rules`` | the fallback (and a routing target) |
| ``caller`` | nested ``ctx.call`` to ``secret`` |
| ``secret`` | a plugin most keys may not use |
| ``embedder`` | an embedding output |
| ``slow`` | sleeps (for concurrency and shutdown tests) |
| ``flaky`` | always fails; falls back to ``rules`` |
| ``limited`` | a rate limit of two requests a minute |
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from pydantic import Field

from brickwork.contracts.errors import ModelNotFoundError, ProviderUnavailableError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import FallbackPolicy, Policy, RateLimitPolicy
from brickwork.contracts.provider import Completion, CompletionRequest
from brickwork.contracts.request import Request, RouteDecision
from brickwork.gateway import Gateway
from brickwork.gateway.server import HttpProtocol  # what `brickwork serve` runs
from brickwork.providers.openai import OpenAIProvider
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.runtime.routing import MetadataRule, Router
from brickwork.storage.audit import SQLiteAuditLog
from brickwork.storage.keys import SQLiteKeyStore
from brickwork.testing import FakeProvider
from brickwork.testing.upstream import FakeUpstream

UPSTREAM_KEY = "sk-upstream-secret-0123456789abcdef"


class TextIn(PluginInput):
    text: str


class TextOut(PluginOutput):
    text: str


class ShapeIn(PluginInput):
    width: int
    height: int


class ShapeOut(PluginOutput):
    area: int


class VectorOut(PluginOutput):
    embedding: list[float]


class SlowIn(PluginInput):
    text: str
    seconds: float = Field(default=0.2, ge=0, le=5)


CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


class Echo1(Plugin[TextIn, TextOut]):
    name = "echo"
    version = "1.0.0"
    description = "Echoes its text (version 1)."

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        _count("echo@1")
        return TextOut(text=input.text)


class Echo2(Plugin[TextIn, TextOut]):
    name = "echo"
    version = "2.0.0"
    description = "Echoes its text, upper-cased (version 2)."

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        _count("echo@2")
        return TextOut(text=input.text.upper())


class Shape(Plugin[ShapeIn, ShapeOut]):
    name = "shape"
    version = "1.0.0"
    description = "Area of a rectangle."

    async def run(self, input: ShapeIn, ctx: Context) -> ShapeOut:
        return ShapeOut(area=input.width * input.height)


class Rules(Plugin[TextIn, TextOut]):
    name = "rules"
    version = "1.0.0"
    description = "The rule-based answer."

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        _count("rules")
        return TextOut(text=f"rules:{input.text}")


class Llm(Plugin[TextIn, TextOut]):
    name = "llm"
    version = "1.0.0"
    description = "Asks the upstream model; falls back to rules."
    model = "openai:fake-model"
    permissions = frozenset({"model"})
    policy = Policy(fallback=FallbackPolicy(plugins=("rules@1",)), retry=None, breaker=None)

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        return TextOut(text=(await ctx.model.complete(input.text)).text)


class Secret(Plugin[TextIn, TextOut]):
    name = "secret"
    version = "1.0.0"
    description = "Only for keys that name it."

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        _count("secret")
        return TextOut(text="classified")


class Caller(Plugin[TextIn, TextOut]):
    name = "caller"
    version = "1.0.0"
    description = "Calls secret."
    permissions = frozenset({"call:secret"})

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        return TextOut(text=(await ctx.call("secret", {"text": input.text})).output["text"])


class Embedder(Plugin[TextIn, VectorOut]):
    name = "embedder"
    version = "1.0.0"
    description = "A toy embedding: length and vowels."

    async def run(self, input: TextIn, ctx: Context) -> VectorOut:
        return VectorOut(embedding=[float(len(input.text)), float(sum(c in "aeiou" for c in input.text))])


class Slow(Plugin[SlowIn, TextOut]):
    name = "slow"
    version = "1.0.0"
    description = "Takes its time."
    policy = Policy(retry=None, breaker=None, bulkhead=None)

    async def run(self, input: SlowIn, ctx: Context) -> TextOut:
        _count("slow")
        await asyncio.sleep(input.seconds)
        return TextOut(text=input.text)


class Flaky(Plugin[TextIn, TextOut]):
    name = "flaky"
    version = "1.0.0"
    description = "Always fails as an unavailable upstream would; falls back to rules."
    policy = Policy(fallback=FallbackPolicy(plugins=("rules@1",)), retry=None, breaker=None)

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        _count("flaky")
        raise ProviderUnavailableError("flaky upstream is down")


class Limited(Plugin[TextIn, TextOut]):
    name = "limited"
    version = "1.0.0"
    description = "Two requests a minute."
    policy = Policy(rate_limit=RateLimitPolicy(requests=2, window=60))

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        return TextOut(text=input.text)


class CatalogProvider(FakeProvider):
    """A provider with a catalog, like the local one: other model names do not exist."""

    async def complete(self, request: CompletionRequest) -> Completion:
        if request.model != "known":
            raise ModelNotFoundError(f"no local model {request.model!r}; the catalog has: known")
        return await super().complete(request)


PLUGINS: tuple[type[Plugin[Any, Any]], ...] = (
    Echo1,
    Echo2,
    Shape,
    Rules,
    Llm,
    Secret,
    Caller,
    Embedder,
    Slow,
    Flaky,
    Limited,
)


class SecretIntent:
    """A routing strategy standing in for intent routing: 'classified' → secret."""

    async def route(self, request: Request) -> RouteDecision | None:
        text = request.input if isinstance(request.input, str) else str(request.input.get("text", ""))
        if "classified" in text:
            return RouteDecision(method="intent", ref="secret", scores={"secret": 0.93})
        return None


def make_orchestrator(upstream_url: str, *, recorders: list[Any] | None = None) -> Orchestrator:
    registry = Registry({"echo": PluginSettings(labels={"prod": "1.0.0", "canary": "2.0.0"})})
    for cls in PLUGINS:
        registry.add(cls)
    providers = Providers()
    providers.add(OpenAIProvider("openai", base_url=upstream_url, api_key=UPSTREAM_KEY, timeout=5))
    providers.add(CatalogProvider("cat", default="meow"))
    router = Router(
        rules=[
            MetadataRule("to-rules", {"team": "rules"}, "rules"),
            MetadataRule("to-secret", {"team": "secret"}, "secret"),
        ],
        strategies=[SecretIntent()],
        default="echo",
    )
    return Orchestrator(registry, providers=providers, router=router, recorders=recorders)


@dataclass
class Stack:
    gateway: Gateway
    client: httpx2.AsyncClient
    keys: SQLiteKeyStore
    audit: SQLiteAuditLog
    memory: MemoryRecorder
    upstream: FakeUpstream
    tmp: Path
    raw_keys: list[str] = field(default_factory=list)

    async def key(self, plugins: list[str], *, tenant: str = "acme", **options: Any) -> str:
        _, raw = await self.keys.create(tenant=tenant, plugins=plugins, **options)
        self.raw_keys.append(raw)
        return raw

    async def admin(self) -> str:
        return await self.key(["*"], tenant="ops", admin=True, name="operator")


def auth(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: pytest keeps Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(gateway: Gateway) -> AsyncIterator[str]:
    """Serve ``gateway`` on a real loopback socket in this event loop; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        gateway.app(), host="127.0.0.1", port=port, http=HttpProtocol, lifespan="off", log_config=None
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
