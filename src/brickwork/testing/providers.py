"""Test doubles for model providers.

- :class:`FakeProvider` answers with schema-valid output (when asked for JSON),
  or replays scripted replies and scripted failures, and records every call.
- :class:`FunctionProvider` answers with a function of the request.
- :func:`forbid_real_providers` makes any call to a real provider an error.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import (
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from brickwork.contracts.provider import (
    Completion,
    CompletionRequest,
    Embeddings,
    EmbedRequest,
    ScoreRequest,
    Scores,
    StreamChunk,
    Usage,
)
from brickwork.runtime.models import allow_real_providers

__all__ = [
    "Delay",
    "FakeProvider",
    "FunctionProvider",
    "forbid_real_providers",
    "rate_limited",
    "sample_from_schema",
    "server_error",
    "timeout",
]

Reply = str | dict[str, Any] | Completion | BaseException


@dataclass(frozen=True)
class Delay:
    """A scripted reply that takes ``seconds`` (on the provider's clock) first."""

    seconds: float
    then: Reply = "ok"


def rate_limited(retry_after: float = 1.0) -> ProviderRateLimitedError:
    """What a 429 with ``Retry-After`` becomes at the provider boundary."""
    return ProviderRateLimitedError("fake upstream: 429 rate limited", retry_after=retry_after)


def timeout() -> ProviderTimeoutError:
    return ProviderTimeoutError("fake upstream: timed out")


def server_error(status: int = 503) -> ProviderUnavailableError:
    return ProviderUnavailableError(f"fake upstream: HTTP {status}")


def _words(text: str) -> int:
    return max(1, len(text.split()))


class FakeProvider:
    """A provider with no model: scripted, schema-aware and observable.

    Args:
        name: the provider name it serves (``fake`` for ``fake:anything``).
        clock: used for :class:`Delay` replies.
        default: the reply when nothing is scripted and no schema is asked for.
        context_window: what :meth:`context_window` says of every model (``None``:
            unknown, as for most remote APIs).

    Attributes:
        calls: every :class:`CompletionRequest` (or :class:`EmbedRequest`) received.
    """

    is_real = False

    def __init__(
        self,
        name: str = "fake",
        *,
        clock: Clock | None = None,
        default: str = "fake reply",
        context_window: int | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.default = default
        self.window = context_window
        self.calls: list[CompletionRequest | EmbedRequest | ScoreRequest] = []
        self._script: deque[Reply | Delay] = deque()

    def enqueue(self, *replies: Reply | Delay) -> FakeProvider:
        """Script the next replies, in order. Exceptions are raised when reached."""
        self._script.extend(replies)
        return self

    def fail(self, error: BaseException, times: int = 1) -> FakeProvider:
        return self.enqueue(*([error] * times))

    @property
    def pending(self) -> int:
        return len(self._script)

    async def _next(self, request: CompletionRequest) -> str:
        item: Reply | Delay | None = self._script.popleft() if self._script else None
        if isinstance(item, Delay):
            if self.clock is None:
                raise RuntimeError("FakeProvider needs a clock for Delay replies")
            await self.clock.sleep(item.seconds)
            item = item.then
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Completion):
            return item.text
        if isinstance(item, dict):
            return json.dumps(item)
        if isinstance(item, str):
            return item
        if request.json_schema is not None:
            return json.dumps(sample_from_schema(request.json_schema))
        return self.default

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls.append(request)
        text = await self._next(request)
        usage = Usage(
            input_tokens=sum(_words(m.content) for m in request.messages),
            output_tokens=_words(text),
            calls=1,
        )
        return Completion(text=text, model=request.model, usage=usage)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        completion = await self.complete(request)
        pieces = completion.text.split(" ")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield StreamChunk(
                delta=piece if last else piece + " ",
                finish_reason="stop" if last else None,
                usage=completion.usage if last else None,
            )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        self.calls.append(request)
        vectors = [_hash_vector(text) for text in request.texts]
        usage = Usage(input_tokens=sum(_words(t) for t in request.texts), calls=1)
        return Embeddings(vectors=vectors, model=request.model, usage=usage)

    async def score(self, request: ScoreRequest) -> Scores:
        """Scripted ``{candidate: logprob}`` dicts first; else a candidate that appears
        in the last message scores 0 and the others -5 (so tests can steer it)."""
        self.calls.append(request)
        item = self._script.popleft() if self._script else None
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, dict):
            logprobs = {c: float(item.get(c, -100.0)) for c in request.candidates}
        else:
            last = request.messages[-1].content.lower() if request.messages else ""
            logprobs = {c: 0.0 if c.lower() in last else -5.0 for c in request.candidates}
        usage = Usage(
            input_tokens=sum(_words(m.content) for m in request.messages) * len(request.candidates),
            output_tokens=sum(_words(c) for c in request.candidates),
            calls=1,
        )
        return Scores(logprobs=logprobs, model=request.model, usage=usage)

    def context_window(self, model: str) -> int | None:
        return self.window

    def count_tokens(self, model: str, text: str) -> int:
        return _words(text)


class FunctionProvider(FakeProvider):
    """Answers ``fn(request)`` (sync or async; a string or a :class:`Completion`)."""

    def __init__(
        self,
        fn: Callable[[CompletionRequest], str | Completion | Awaitable[str | Completion]],
        name: str = "function",
        *,
        context_window: int | None = None,
    ) -> None:
        super().__init__(name, context_window=context_window)
        self.fn = fn

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls.append(request)
        result = self.fn(request)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Completion):
            return result
        usage = Usage(
            input_tokens=sum(_words(m.content) for m in request.messages),
            output_tokens=_words(str(result)),
            calls=1,
        )
        return Completion(text=str(result), model=request.model, usage=usage)


@contextmanager
def forbid_real_providers() -> Iterator[None]:
    """Within the block, a call to a provider with ``is_real = True`` raises
    :class:`~brickwork.contracts.errors.RealProviderForbiddenError`."""
    token = allow_real_providers.set(False)
    try:
        yield
    finally:
        allow_real_providers.reset(token)


def _hash_vector(text: str, dims: int = 16) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:dims]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def sample_from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A small value that validates against a JSON schema (as pydantic writes them)."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return sample_from_schema(root.get("$defs", {})[name], root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return sample_from_schema(options[0], root)
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {k: sample_from_schema(props[k], root) for k in required if k in props}
    if kind == "array":
        count = schema.get("minItems", 0)
        return [sample_from_schema(schema.get("items", {}), root) for _ in range(count)]
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 1))
        value = low if "exclusiveMinimum" not in schema else (low + high) / 2
        return math.ceil(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None
