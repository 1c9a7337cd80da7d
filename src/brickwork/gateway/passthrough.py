"""Pass-through plugins: ``provider:model`` in an OpenAI-compatible request.

One plugin per provider (``passthrough-openai`` for the ``openai`` provider),
registered like any other, so a pass-through call gets the same policies, guards,
audit record and authorisation. The model is bound at call time from the input;
an API key reaches it only if its patterns allow ``provider:model`` (see
:class:`brickwork.gateway.auth.KeyPrincipal`).

Streaming: when the caller streams (``ctx.streaming``), the run streams from the
provider and emits each delta as it arrives (``ctx.emit``), and still returns the
whole text, so the envelope, usage and audit record are those of the full answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from brickwork.contracts.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    PluginNotFoundError,
    ProviderRejectedError,
)
from brickwork.contracts.plugin import Context, ModelClient, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import BreakerPolicy, BulkheadPolicy, Policy
from brickwork.contracts.provider import Message
from brickwork.contracts.refs import NAME_RE
from brickwork.runtime.orchestrator import Orchestrator

__all__ = [
    "PASSTHROUGH_PREFIX",
    "PassthroughInput",
    "PassthroughOutput",
    "is_passthrough",
    "passthrough_name",
    "passthrough_plugin",
    "register_passthrough",
]

PASSTHROUGH_PREFIX = "passthrough-"

#: A proxy's calls are many and short: a wide bulkhead. No retry: the client's SDK
#: retries (honouring the upstream's Retry-After, which a 429 passes on), and two
#: layers of retries would multiply the load on an upstream that is already failing.
#: Config may override any of it under ``plugins.passthrough-<provider>.policy``.
#: One call to one provider: the plugin's breaker is that provider's, so there is no
#: second breaker per provider counting the same calls again (``per_model``).
PASSTHROUGH_POLICY = Policy(
    retry=None,
    breaker=BreakerPolicy(per_model=False),
    bulkhead=BulkheadPolicy(max_concurrency=512, max_queue=2048, queue_timeout=30),
)


class PassthroughInput(PluginInput):
    """One chat completion (``messages``) or one embedding batch (``texts``)."""

    model: str = Field(min_length=1, max_length=256, description="the model, without 'provider:'")
    messages: list[Message] | None = Field(default=None, min_length=1)
    texts: list[str] | None = Field(default=None, min_length=1)
    max_tokens: int = Field(default=4096, ge=1)
    temperature: float = Field(default=0.0, ge=0, le=2)
    stop: list[str] = Field(default_factory=list, max_length=4)

    @model_validator(mode="after")
    def _one_kind(self) -> PassthroughInput:
        if (self.messages is None) == (self.texts is None):
            raise ValueError("give either `messages` (chat) or `texts` (embeddings)")
        return self


class PassthroughOutput(PluginOutput):
    text: str | None = None
    finish_reason: str | None = None
    vectors: list[list[float]] | None = None


def passthrough_name(provider: str) -> str:
    return f"{PASSTHROUGH_PREFIX}{provider}"


def passthrough_plugin(provider: str) -> type[Plugin[PassthroughInput, PassthroughOutput]]:
    """The pass-through plugin class for one provider."""

    class Passthrough(Plugin[PassthroughInput, PassthroughOutput]):
        description = (
            f"Pass-through to the {provider!r} provider: an OpenAI-compatible request with "
            f"model '{provider}:<model>' runs here, under this plugin's policies."
        )
        version = "1.0.0"
        permissions = frozenset({"model", "embed", "bind"})
        policy = PASSTHROUGH_POLICY
        text_field = "text"
        passthrough_provider: ClassVar[str]

        async def run(self, input: PassthroughInput, ctx: Context) -> PassthroughOutput:
            model_id = f"{provider}:{input.model}"
            try:
                return await self._run(input, ctx.model.bind(model_id), ctx)
            except ModelNotFoundError as exc:
                # The caller named the model: an unknown one is their 404, not our 500.
                raise PluginNotFoundError(exc.message, plugin=model_id) from exc
            except ProviderRejectedError as exc:
                # The client wrote this request: what the upstream refused in it is
                # the client's 4xx to fix, not a 502 (nor a failure of the upstream).
                if (exc.details or {}).get("status") == 404:
                    raise PluginNotFoundError(exc.message, plugin=model_id) from exc
                raise InvalidRequestError(exc.message, plugin=model_id) from exc

        async def _run(self, input: PassthroughInput, model: ModelClient, ctx: Context) -> PassthroughOutput:
            if input.texts is not None:
                embeddings = await model.embed(input.texts)
                return PassthroughOutput(vectors=embeddings.vectors)
            messages = input.messages or []
            if ctx.streaming:
                parts: list[str] = []
                finish: str | None = None
                async for chunk in model.stream(
                    messages, max_tokens=input.max_tokens, temperature=input.temperature
                ):
                    if chunk.delta:
                        parts.append(chunk.delta)
                        ctx.emit(chunk.delta)
                    finish = chunk.finish_reason or finish
                return PassthroughOutput(text="".join(parts), finish_reason=finish or "stop")
            completion = await model.complete(
                messages, max_tokens=input.max_tokens, temperature=input.temperature, stop=input.stop
            )
            return PassthroughOutput(text=completion.text, finish_reason=completion.finish_reason)

    Passthrough.name = passthrough_name(provider)
    Passthrough.passthrough_provider = provider
    Passthrough.__qualname__ = Passthrough.__name__ = f"Passthrough[{provider}]"
    return Passthrough


def is_passthrough(cls: type[Plugin[Any, Any]]) -> bool:
    return isinstance(getattr(cls, "passthrough_provider", None), str)


def register_passthrough(orchestrator: Orchestrator) -> dict[str, str]:
    """Register a pass-through plugin for every provider; returns provider → plugin name.

    A provider whose name cannot be part of a plugin name is skipped.
    """
    names: dict[str, str] = {}
    registry = orchestrator.registry
    for provider in sorted(orchestrator.providers.providers):
        name = passthrough_name(provider)
        if not NAME_RE.match(name):
            continue
        if name in registry.names():
            if not is_passthrough(registry.resolve(name).cls):
                continue  # an ordinary plugin already has the name; it gets no special scope
        elif registry.add(passthrough_plugin(provider), source="gateway") is None:
            continue  # disabled in the config
        names[provider] = name
    return names


#: OpenAI roles → the provider interface's roles.
_ROLES = {"developer": "system", "function": "tool"}


def chat_messages(messages: list[tuple[str, str]]) -> list[dict[str, str]]:
    """``(role, text)`` pairs as the pass-through input's messages (validated there)."""
    return [{"role": _ROLES.get(role, role), "content": text} for role, text in messages]
