"""The provider interface: one backend of models behind ``complete``/``stream``/``embed``.

Model ids are ``provider:model`` (``local:qwen2.5-0.5b``, ``openai:gpt-4o-mini``).
Providers translate their vendor's exceptions into :mod:`brickwork.contracts.errors`
at this boundary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from brickwork.contracts.errors import InvalidRequestError

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "Completion",
    "CompletionRequest",
    "EmbedRequest",
    "Embeddings",
    "Message",
    "ModelId",
    "ModelPrice",
    "Provider",
    "ProviderFactory",
    "ProviderSettings",
    "ScoreRequest",
    "Scores",
    "StreamChunk",
    "Usage",
]


class ModelId(BaseModel):
    """A parsed ``provider:model`` id."""

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str

    @classmethod
    def parse(cls, text: str) -> ModelId:
        provider, sep, model = text.partition(":")
        if not sep or not provider or not model:
            raise InvalidRequestError(f"model id {text!r} must look like 'provider:model'")
        return cls(provider=provider, model=model)

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


class Usage(BaseModel):
    """Token usage, summed over every model call of a request."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0

    def add(self, other: Usage) -> None:
        # Straight into the fields: pydantic's ``__setattr__`` costs more than the
        # sums (the values are ints from another Usage, nothing to validate).
        fields = self.__dict__
        fields["input_tokens"] += other.input_tokens
        fields["output_tokens"] += other.output_tokens
        fields["calls"] += other.calls
        self.__pydantic_fields_set__.update(_USAGE_FIELDS)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


_USAGE_FIELDS = ("input_tokens", "output_tokens", "calls")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / 1e6


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class CompletionRequest(BaseModel):
    """What a plugin asks a model for. ``json_schema`` asks for structured output."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="model name within the provider (no 'provider:' prefix)")
    messages: list[Message]
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0, le=2)
    stop: list[str] = Field(default_factory=list)
    json_schema: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class Completion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    model: str
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str = "stop"


class StreamChunk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delta: str
    finish_reason: str | None = None
    usage: Usage | None = None
    #: The model that answers (a stream's first chunk says it; the runtime fills it in).
    model: str | None = None


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    texts: list[str]
    purpose: Literal["query", "passage"] = Field(
        default="query",
        description="asymmetric models (e5) embed questions and documents differently",
    )


class ScoreRequest(BaseModel):
    """How likely is each candidate as the model's reply to ``messages``?

    Used for classification: comparing the log-probability of each label is far
    more reliable on small models than parsing free text.
    """

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[Message]
    candidates: list[str] = Field(min_length=1)


class Scores(BaseModel):
    """Total log-probability of each candidate (its tokens' log-probs summed)."""

    model_config = ConfigDict(extra="forbid")

    logprobs: dict[str, float]
    model: str
    usage: Usage = Field(default_factory=Usage)


class Embeddings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vectors: list[list[float]]
    model: str
    usage: Usage = Field(default_factory=Usage)


@runtime_checkable
class Provider(Protocol):
    """A model backend.

    Attributes:
        name: the ``provider`` part of model ids it serves.
        is_real: ``True`` when calls leave the process or load real weights;
            :func:`brickwork.testing.forbid_real_providers` refuses those in tests.
    """

    name: str
    is_real: bool

    async def complete(self, request: CompletionRequest) -> Completion: ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]: ...

    async def embed(self, request: EmbedRequest) -> Embeddings: ...

    async def score(self, request: ScoreRequest) -> Scores:
        """Raise :class:`~brickwork.contracts.errors.ProviderUnsupportedError` if the
        backend exposes no log-probabilities."""
        ...

    def count_tokens(self, model: str, text: str) -> int: ...

    def context_window(self, model: str) -> int | None:
        """Tokens ``model`` reads and writes in one call; ``None`` when unknown."""
        ...


#: The window a plugin plans for when no model of its chain says what its is.
DEFAULT_CONTEXT_WINDOW = 4096


@dataclass(frozen=True)
class ProviderSettings:
    """One entry of the config's ``providers`` section, as a provider type's factory gets it.

    Attributes:
        name: the entry's name: the ``provider`` part of the model ids it serves.
        base_url: the backend's address (``None``: the type's default).
        api_key: read from the environment variable the entry names; never from the file.
        timeout: seconds for one call.
        options: the type's own settings, as written.
    """

    name: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    options: Mapping[str, Any] = field(default_factory=dict)


#: Builds a provider of one type from its config entry; registered under the type's
#: name through the ``register_provider_types`` hook.
ProviderFactory = Callable[[ProviderSettings], Provider]


def estimate_tokens(texts: Sequence[str]) -> int:
    """A provider-independent token estimate (≈4 characters a token), for budgets."""
    return sum(max(1, len(t) // 4) for t in texts)
