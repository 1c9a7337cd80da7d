"""What a caller sends (:class:`Request`) and what it gets back (:class:`Envelope`)."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from brickwork.contracts.provider import Usage

__all__ = ["Attempt", "Envelope", "Principal", "Request", "RouteDecision"]


class Request(BaseModel):
    """One call to Brickwork.

    ``input`` is the plugin's input as a dict, or a plain string for plugins whose
    input has a ``text`` field. ``plugin`` may be omitted: the router then decides.
    """

    model_config = ConfigDict(extra="forbid")

    plugin: str | None = Field(default=None, description="'name', 'name@version' or 'name@label'")
    input: dict[str, Any] | str = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    tenant: str = Field(default="default", min_length=1, max_length=128)
    #: Accepted and passed to nested calls, not read yet: the experiments issue (#18)
    #: keeps a subject on one arm of a split with it.
    subject: str | None = Field(default=None, description="sticky key for experiments")
    #: Set by the gateway from the ``Idempotency-Key`` header, which the gateway
    #: itself honours today (:mod:`brickwork.gateway.idempotency`, per process); the
    #: runtime does not read it yet: it is kept for shared state across replicas, a
    #: later issue.
    idempotency_key: str | None = Field(default=None, max_length=256)
    cache_bypass: bool = Field(default=False, description="skip the cache read (still writes)")


class Principal(Protocol):
    """Who is calling (an API key, say), as far as the orchestrator must know.

    The orchestrator asks :meth:`allows` for every plugin it is about to run —
    after routing, version selection and each fallback, and for nested
    ``ctx.call``s — so a key reaches no plugin outside its scopes by any path.
    """

    @property
    def tenant(self) -> str: ...

    def allows(self, plugin: str) -> bool:
        """Whether this principal may run the plugin named ``plugin``."""
        ...


class RouteDecision(BaseModel):
    """How a request found its plugin. Always recorded in the envelope."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["explicit", "metadata", "intent", "default"]
    ref: str = Field(description="the ref the route produced, before version selection")
    rule: str | None = Field(default=None, description="the metadata rule that matched")
    scores: dict[str, float] = Field(default_factory=dict)


class Attempt(BaseModel):
    """One link of a fallback chain that was tried and failed."""

    model_config = ConfigDict(extra="forbid")

    plugin: str
    version: str
    code: str
    message: str


class Envelope(BaseModel):
    """The answer: output plus everything needed to account for it."""

    model_config = ConfigDict(extra="forbid")

    output: dict[str, Any]
    plugin: str
    version: str
    prompt_version: str | None = None
    route: RouteDecision
    models: list[str] = Field(default_factory=list, description="models that answered")
    usage: Usage = Field(default_factory=Usage)
    cost: float = 0.0
    latency_ms: float = 0.0
    cache_hit: bool = False
    degraded: bool = Field(default=False, description="a fallback answered, not the first choice")
    fallbacks: list[Attempt] = Field(default_factory=list)
    trace_id: str
    warnings: list[str] = Field(default_factory=list)
