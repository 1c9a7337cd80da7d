"""``ctx.model``: a plugin's model chain, wrapped once in its policies.

A :class:`ModelBinding` composes a plugin version's chain with its model policies
(:mod:`brickwork.policies.model`) once; each run gets a :class:`BoundModel` over
it, which turns ``complete``/``stream``/``embed``/``score`` into one
:class:`~brickwork.policies.model.ModelCall` through the same stack, so calls and
streams share every line of policy code.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import random
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import (
    ConfigurationError,
    PermissionDeniedError,
    ProviderResponseError,
    RealProviderForbiddenError,
)
from brickwork.contracts.policy import BreakerPolicy, Policy
from brickwork.contracts.provider import (
    DEFAULT_CONTEXT_WINDOW,
    Completion,
    CompletionRequest,
    Embeddings,
    EmbedRequest,
    Message,
    ModelId,
    ModelPrice,
    Provider,
    ScoreRequest,
    Scores,
    StreamChunk,
    estimate_tokens,
)
from brickwork.policies.breaker import CircuitBreaker
from brickwork.policies.model import CallAccount, Item, Model, ModelCall, ModelRun, compose
from brickwork.state.base import StateBackend

if TYPE_CHECKING:
    from brickwork.contracts.tracing import Tracer
    from brickwork.runtime.registry import PluginEntry

__all__ = [
    "BoundModel",
    "CallAccount",
    "ModelBinding",
    "ModelBindings",
    "ModelPrice",
    "ProviderModel",
    "Providers",
    "allow_real_providers",
    "model_id",
]

#: False inside :func:`brickwork.testing.forbid_real_providers`.
allow_real_providers: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "brickwork_allow_real_providers", default=True
)


@dataclass
class Providers:
    """Model providers by name, and the price table."""

    providers: dict[str, Provider] = field(default_factory=dict)
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)

    def add(self, provider: Provider) -> None:
        self.providers[provider.name] = provider

    def get(self, model_id: ModelId) -> Provider:
        provider = self.providers.get(model_id.provider)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise ConfigurationError(
                f"no provider {model_id.provider!r} for model {model_id} (available: {known})"
            )
        if provider.is_real and not allow_real_providers.get():
            raise RealProviderForbiddenError(
                f"real provider call to {model_id} while real providers are forbidden"
            )
        return provider

    def price(self, model_id: ModelId) -> ModelPrice:
        return self.prices.get(str(model_id), self.prices.get(f"{model_id.provider}:*", ModelPrice()))


@functools.lru_cache(maxsize=4096)
def model_id(text: str) -> ModelId:
    """``ModelId.parse``, once per distinct id (ids are immutable; a run binds a few)."""
    return ModelId.parse(text)


class ProviderModel:
    """The innermost layer of a stack: one model of one provider.

    Its provider is checked at each call, before any policy counts it (see
    :class:`~brickwork.policies.model.AvailableModel`), so :func:`forbid_real_providers`
    (a context switch) and a missing provider (a configuration error, never a reason
    to fall back) are decided when the call is made.
    """

    def __init__(self, providers: Providers, model: ModelId) -> None:
        self.providers = providers
        self.model = model

    def open(self, call: ModelCall, run: ModelRun) -> AsyncIterator[Item]:
        # (Found and allowed: the stack's AvailableModel checked it, outside every policy.)
        provider = self.providers.providers[self.model.provider]
        request = call.request(self.model.model)
        if call.operation == "stream":
            return provider.stream(cast(CompletionRequest, request))
        if call.operation == "chat":
            return _once(provider.complete(cast(CompletionRequest, request)))
        if call.operation == "embeddings":
            return _once(provider.embed(cast(EmbedRequest, request)))
        return _once(provider.score(cast(ScoreRequest, request)))


async def _once(result: Any) -> AsyncGenerator[Item, None]:
    yield await result


class Dependencies(Protocol):
    """What a binding is composed with (the orchestrator has these)."""

    @property
    def providers(self) -> Providers: ...
    @property
    def state(self) -> StateBackend: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def tracing(self) -> Tracer | None: ...

    def breaker(self, key: str, policy: BreakerPolicy, label: str) -> CircuitBreaker: ...


class ModelBinding:
    """A plugin version's model chain and embedding chain, composed once with its
    policies and shared by all its runs; :meth:`bind` gives the same policies over
    another model (kept for the few models a plugin binds, most recent first)."""

    #: How many models :meth:`bind` keeps composed (pass-throughs bind what clients name).
    max_bound = 256

    def __init__(
        self,
        *,
        plugin: str,
        policy: Policy,
        permissions: frozenset[str],
        chain: Sequence[ModelId],
        embedding_chain: Sequence[ModelId],
        dependencies: Dependencies,
    ) -> None:
        self.plugin = plugin
        self.policy = policy
        self.permissions = permissions
        self.chain = tuple(chain)
        self.embedding_chain = tuple(embedding_chain)
        self.dependencies = dependencies
        self.providers = dependencies.providers
        self.chat = self._compose(self.chain, "model")
        self.embeddings = self._compose(self.embedding_chain, "embedding model")
        self._bound: OrderedDict[ModelId, ModelBinding] = OrderedDict()
        #: The chain's context window, once asked for (see :meth:`BoundModel.context_window`).
        self.window: int | None = None

    def _compose(self, chain: Sequence[ModelId], what: str) -> Model:
        deps = self.dependencies
        return compose(
            chain,
            plugin=self.plugin,
            policy=self.policy,
            permissions=self.permissions,
            what=what,
            leaf=functools.partial(ProviderModel, self.providers),
            available=self.providers.get,
            price=self.providers.price,
            breakers=deps.breaker,
            state=deps.state,
            clock=deps.clock,
            rng=deps.rng,
            tracer=deps.tracing,
        )

    def bind(self, model: ModelId) -> ModelBinding:
        """The same policies over ``model`` alone, for calls and embeddings alike."""
        bound = self._bound.get(model)
        if bound is None:
            bound = ModelBinding(
                plugin=self.plugin,
                policy=self.policy,
                permissions=self.permissions,
                chain=(model,),
                embedding_chain=(model,),
                dependencies=self.dependencies,
            )
            self._bound[model] = bound
            if len(self._bound) > self.max_bound:
                self._bound.popitem(last=False)
        else:
            self._bound.move_to_end(model)
        return bound


class ModelBindings:
    """Each plugin version's :class:`ModelBinding`, composed on its first run and kept
    (composed again only when the version's policy or models, or a dependency, change)."""

    def __init__(self, dependencies: Dependencies) -> None:
        self.dependencies = dependencies
        self._kept: dict[str, tuple[tuple[object, ...], ModelBinding]] = {}

    def get(self, entry: PluginEntry) -> ModelBinding:
        deps = self.dependencies
        # What the composition depends on: the same objects on every run but the first.
        signature = (
            entry,
            entry.policy,
            entry.model,
            entry.embedding_model,
            deps.providers,
            deps.providers.prices,
            deps.state,
            deps.clock,
            deps.rng,
            deps.tracing,
        )
        kept = self._kept.get(entry.ref)
        if kept is not None and kept[0] == signature:  # (identical objects compare at once)
            return kept[1]
        chain = [model_id(m) for m in ((entry.model,) if entry.model else ()) + entry.policy.fallback.models]
        binding = ModelBinding(
            plugin=entry.ref,
            policy=entry.policy,
            permissions=entry.cls.permissions,
            chain=chain,
            embedding_chain=[model_id(entry.embedding_model)] if entry.embedding_model else [],
            dependencies=deps,
        )
        self._kept[entry.ref] = (signature, binding)
        return binding


def _messages(messages: str | Sequence[Message]) -> tuple[Message, ...]:
    if isinstance(messages, str):
        return (Message(role="user", content=messages),)
    return tuple(messages)


class BoundModel:
    """The :class:`~brickwork.contracts.plugin.ModelClient` one plugin run gets: its
    binding's stacks with the run's deadline and account."""

    def __init__(
        self,
        binding: ModelBinding,
        run: ModelRun,
        streams: set[AsyncIterator[StreamChunk]] | None = None,
    ) -> None:
        self.binding = binding
        self.run = run
        #: Streams opened in this run (by this client or one it bound), closed by :meth:`aclose`.
        self._streams: set[AsyncIterator[StreamChunk]] = set() if streams is None else streams

    async def complete(
        self,
        messages: str | Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] = (),
    ) -> Completion:
        call = ModelCall(
            "chat",
            messages=_messages(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            json_schema=json_schema,
            stop=tuple(stop),
        )
        return cast(Completion, await _result(self.binding.chat.open(call, self.run)))

    def stream(
        self,
        messages: str | Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> AsyncIterator[StreamChunk]:
        """Stream from the first model whose stream opens, under the same policies as a
        call (see :mod:`brickwork.policies.model`): no fallback or retry once chunks
        flowed. A stream the plugin stops reading is closed, and accounted for, when
        the run ends (see :meth:`aclose`); without a usage report from the provider,
        input tokens are estimated and each chunk counts as one output token."""
        call = ModelCall(
            "stream", messages=_messages(messages), max_tokens=max_tokens, temperature=temperature
        )
        stream = cast(AsyncIterator[StreamChunk], self.binding.chat.open(call, self.run))
        self._streams.add(stream)
        return stream

    async def embed(
        self, texts: Sequence[str], *, purpose: Literal["query", "passage"] = "query"
    ) -> Embeddings:
        call = ModelCall("embeddings", texts=tuple(texts), purpose=purpose)
        return cast(Embeddings, await _result(self.binding.embeddings.open(call, self.run)))

    async def score(self, messages: str | Sequence[Message], candidates: Sequence[str]) -> Scores:
        call = ModelCall("score", messages=_messages(messages), candidates=tuple(candidates))
        return cast(Scores, await _result(self.binding.chat.open(call, self.run)))

    def count_tokens(self, text: str) -> int:
        chain = self.binding.chain
        if not chain:
            return estimate_tokens([text])
        return self.binding.providers.get(chain[0]).count_tokens(chain[0].model, text)

    def context_window(self) -> int:
        binding = self.binding
        if binding.window is None:
            # Asked of the providers there are (a fallback's missing provider is that
            # model's failure when it is called, not every call's).
            known = []
            for model in binding.chain:
                provider = binding.providers.providers.get(model.provider)
                window = provider.context_window(model.model) if provider is not None else None
                if window:
                    known.append(window)
            binding.window = min(known, default=DEFAULT_CONTEXT_WINDOW)
        return binding.window

    def bind(self, model: str) -> BoundModel:
        """This run's client over ``model`` (``provider:model``) alone, with the same
        policies: for a plugin whose caller names the model (a pass-through), which
        declares the ``bind`` permission."""
        if "bind" not in self.binding.permissions:
            plugin = self.binding.plugin
            raise PermissionDeniedError(
                f"plugin {plugin} did not declare the 'bind' permission to choose its own model",
                plugin=plugin,
            )
        return BoundModel(self.binding.bind(model_id(model)), self.run, self._streams)

    async def aclose(self) -> None:
        """Close the streams the plugin left open, settling what they spent.

        (Closing a stream that already ended does nothing; a run's streams are few.)
        """
        while self._streams:
            stream = self._streams.pop()
            close = getattr(stream, "aclose", None)
            # One still being read by a task the plugin left behind cannot be closed
            # from here; its own ``finally`` settles it when that task ends.
            if close is not None:
                with contextlib.suppress(RuntimeError):
                    await close()


async def _result(items: AsyncIterator[Item]) -> Item:
    """The one item of a call, read to its end so every policy sees it complete."""
    try:
        result = await items.__anext__()
    except StopAsyncIteration:
        raise ProviderResponseError("the model returned nothing") from None
    try:
        await items.__anext__()
    except StopAsyncIteration:
        return result
    raise ProviderResponseError("the model returned more than one result for a call")
