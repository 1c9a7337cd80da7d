"""Anthropic's Messages API (``anthropic:<model>``).

The wire format as Anthropic documents it: ``POST /v1/messages`` with the key in
``x-api-key`` and the ``anthropic-version`` header; system messages go to the
top-level ``system`` field; ``max_tokens`` is always sent (the API requires it);
structured output is ``output_config.format`` with a JSON schema.

Streams are server-sent events: ``message_start`` (input usage),
``content_block_delta`` (``text_delta`` pieces), ``message_delta`` (stop reason,
cumulative output usage), ``message_stop``; ``ping`` and unknown event types are
skipped, an ``error`` event becomes the matching typed error. A stream that ends
before ``message_stop`` is a :class:`~brickwork.contracts.errors.ProviderResponseError`.

Error types map as their HTTP statuses do (``overloaded_error`` is 529 →
unavailable, ``rate_limit_error`` 429 → rate limited with ``retry-after``).
Embeddings and label scoring are not offered by this API.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from pydantic import BaseModel, ConfigDict

from brickwork.contracts.errors import (
    ProviderError,
    ProviderResponseError,
    ProviderUnsupportedError,
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
    estimate_tokens,
)
from brickwork.providers.http import HttpClient, sse_events
from brickwork.providers.http_provider import HttpProvider

__all__ = ["DEFAULT_BASE_URL", "ERROR_STATUS", "AnthropicProvider"]

DEFAULT_BASE_URL = "https://api.anthropic.com"

#: Anthropic's documented error types → the HTTP status each comes with, so an
#: ``error`` event mid-stream maps exactly as the same error before it would.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

#: ``stop_reason`` → the finish reasons the rest of Brickwork uses (others pass as is).
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Usage(_Wire):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def input(self) -> int:
        """All input tokens, cached ones included (the conservative count for budgets)."""
        return (
            (self.input_tokens or 0)
            + (self.cache_creation_input_tokens or 0)
            + (self.cache_read_input_tokens or 0)
        )


class _Block(_Wire):
    type: str
    text: str | None = None


class _Message(_Wire):
    content: list[_Block]
    stop_reason: str | None = None
    usage: _Usage


class _StartedMessage(_Wire):
    usage: _Usage | None = None


class _Delta(_Wire):
    type: str | None = None
    text: str | None = None
    stop_reason: str | None = None


class _Error(_Wire):
    type: str = "api_error"
    message: str = ""


class _Event(_Wire):
    type: str
    message: _StartedMessage | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: _Error | None = None


class _Model(_Wire):
    id: str


class _ModelList(_Wire):
    data: list[_Model]


class AnthropicProvider(HttpProvider):
    """A backend on Anthropic's Messages API.

    Args:
        name: the ``provider`` part of the model ids it serves.
        base_url: without the version path (``https://api.anthropic.com``).
        api_key: sent as ``x-api-key``.
        timeout: seconds for a whole call; for a stream, the longest silence allowed.
        version: the ``anthropic-version`` header.
        max_connections: connection pool size.

    ``temperature`` is capped at 1.0 (the API's maximum). ``count_tokens`` is an
    estimate (≈4 characters a token).
    """

    env_prefix = "ANTHROPIC"
    default_base_url = DEFAULT_BASE_URL

    def __init__(
        self,
        name: str = "anthropic",
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        timeout: float = 60.0,
        version: str = "2023-06-01",
        max_connections: int = 100,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.version = version
        headers = {"anthropic-version": version}
        if api_key:
            headers["x-api-key"] = api_key
        self._http = HttpClient(
            name,
            self.base_url,
            headers=headers,
            timeout=timeout,
            max_connections=max_connections,
            secrets=[api_key],
        )

    # --- calls -------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        reply = await self._http.call(_Message, "POST", "/v1/messages", self._body(request, stream=False))
        text = "".join(b.text or "" for b in reply.content if b.type == "text")
        usage = Usage(input_tokens=reply.usage.input(), output_tokens=reply.usage.output_tokens or 0, calls=1)
        return Completion(
            text=text, model=request.model, usage=usage, finish_reason=_finish(reply.stop_reason)
        )

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]:
        body = self._body(request, stream=True)
        input_tokens = 0
        output_tokens = 0
        stop_reason: str | None = None
        stopped = False
        async with (
            self._http.stream("/v1/messages", body, content_types=("text/event-stream",)) as raw,
            contextlib.aclosing(sse_events(raw, source=self.name)) as events,
        ):
            async for sse in events:
                event = self._http.parse_json(_Event, sse.data)
                if event.type == "content_block_delta" and event.delta is not None:
                    if event.delta.type == "text_delta" and event.delta.text:
                        yield StreamChunk(delta=event.delta.text)
                elif event.type == "message_start" and event.message and event.message.usage:
                    input_tokens = event.message.usage.input()
                    output_tokens = event.message.usage.output_tokens or 0
                elif event.type == "message_delta":
                    if event.delta is not None and event.delta.stop_reason is not None:
                        stop_reason = event.delta.stop_reason
                    if event.usage is not None:
                        # Cumulative counts; newer versions repeat the input ones here.
                        input_tokens = event.usage.input() or input_tokens
                        output_tokens = event.usage.output_tokens or output_tokens
                elif event.type == "message_stop":
                    stopped = True
                    break
                elif event.type == "error":
                    raise self._event_error(event.error or _Error())
        if not stopped:
            raise self._http.error(
                ProviderResponseError, "the stream ended before message_stop", details={"reason": "truncated"}
            )
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, calls=1)
        yield StreamChunk(delta="", finish_reason=_finish(stop_reason), usage=usage)

    async def embed(self, request: EmbedRequest) -> Embeddings:
        raise ProviderUnsupportedError(
            f"{self.name}: the Messages API has no embeddings", details={"provider": self.name}
        )

    async def score(self, request: ScoreRequest) -> Scores:
        raise ProviderUnsupportedError(
            f"{self.name}: the Messages API gives no log-probabilities", details={"provider": self.name}
        )

    def count_tokens(self, model: str, text: str) -> int:
        """An estimate (≈4 characters a token), not Anthropic's tokenizer."""
        return estimate_tokens([text])

    async def list_models(self) -> list[str]:
        """The model ids the API lists (``GET /v1/models``, first page)."""
        return [m.id for m in (await self._http.call(_ModelList, "GET", "/v1/models")).data]

    # --- helpers -----------------------------------------------------------------

    def _body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = []
        for m in request.messages:
            if m.role == "tool":
                raise ProviderUnsupportedError(
                    f"{self.name}: a 'tool' message needs a tool_use id this request does not carry",
                    details={"provider": self.name},
                )
            if m.role != "system":
                messages.append({"role": m.role, "content": m.content})
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
            "temperature": min(request.temperature, 1.0),
        }
        if system:
            body["system"] = system
        if request.stop:
            body["stop_sequences"] = request.stop
        if request.json_schema is not None:
            body["output_config"] = {"format": {"type": "json_schema", "schema": request.json_schema}}
        if stream:
            body["stream"] = True
        body.update(request.extra)
        return body

    def _event_error(self, error: _Error) -> ProviderError:
        status = ERROR_STATUS.get(error.type, 500)
        return self._http.status_error(status, f"error mid-stream: {error.type}: {error.message}")


def _finish(stop_reason: str | None) -> str:
    if stop_reason is None:
        return "stop"
    return FINISH.get(stop_reason, stop_reason)
