"""OpenAI-compatible chat completions and embeddings (``openai:<model>``).

Speaks the Chat Completions wire format that OpenAI documents and that many
servers copy (``llama_cpp.server``, vLLM, Ollama's ``/v1``, gateways), so the base
URL is the only thing that changes::

    OpenAIProvider(base_url="https://api.openai.com/v1", api_key=...)
    OpenAIProvider.from_env()                      # OPENAI_API_KEY, OPENAI_BASE_URL
    OpenAIProvider("llama", base_url="http://127.0.0.1:8000/v1")

Streams ask for ``stream_options.include_usage`` so their last chunk carries the
token usage (servers that ignore the option give ``usage=None``; the runtime then
estimates). A stream counts as complete only when a finish reason *and* the
closing ``data: [DONE]`` arrived; anything else is a
:class:`~brickwork.contracts.errors.ProviderResponseError` after the deltas already
yielded — never a quiet success with partial text.

The provider never retries: retries, timeouts per attempt and breakers are the
runtime's policies around it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
from brickwork.providers.http import HttpClient, sse_events, upstream_message
from brickwork.providers.http_provider import HttpProvider

__all__ = ["DEFAULT_BASE_URL", "OpenAIProvider"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
SSE = ("text/event-stream",)

# --- the wire format (only the fields we read; the rest is ignored) -------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Usage(_Wire):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def to_usage(self) -> Usage:
        return Usage(input_tokens=self.prompt_tokens or 0, output_tokens=self.completion_tokens or 0, calls=1)


class _Message(_Wire):
    content: str | None = None
    refusal: str | None = None


class _Choice(_Wire):
    index: int = 0
    message: _Message
    finish_reason: str | None = None


class _ChatResponse(_Wire):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _Delta(_Wire):
    content: str | None = None
    refusal: str | None = None


class _ChunkChoice(_Wire):
    index: int = 0
    delta: _Delta = Field(default_factory=_Delta)
    finish_reason: str | None = None


class _Chunk(_Wire):
    choices: list[_ChunkChoice] | None = None
    usage: _Usage | None = None
    error: dict[str, Any] | None = None


class _Vector(_Wire):
    index: int
    embedding: list[float]


class _EmbedResponse(_Wire):
    data: list[_Vector]
    usage: _Usage | None = None


class _Model(_Wire):
    id: str


class _ModelList(_Wire):
    data: list[_Model]


def _schema_name(schema: Mapping[str, Any]) -> str:
    """OpenAI wants ``^[a-zA-Z0-9_-]{1,64}$``: the schema's title, cleaned, or ``output``."""
    title = schema.get("title")
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", title)[:64] if isinstance(title, str) else ""
    return name or "output"


class OpenAIProvider(HttpProvider):
    """A backend that speaks OpenAI's Chat Completions.

    Args:
        name: the ``provider`` part of the model ids it serves.
        base_url: up to and including the version (``https://api.openai.com/v1``).
        api_key: sent as ``Authorization: Bearer``; ``None`` for servers without keys.
        timeout: seconds for a whole call; for a stream, the longest silence allowed.
        max_connections: connection pool size.
        max_tokens_field: the request field for the output limit: ``max_tokens``
            (understood by every compatible server) or ``max_completion_tokens``
            (what OpenAI's reasoning models require).

    ``count_tokens`` is an estimate (≈4 characters a token): the wire format has
    no tokenizer endpoint. ``score`` is unsupported: chat completions expose no
    log-probabilities of a given reply.
    """

    env_prefix = "OPENAI"
    default_base_url = DEFAULT_BASE_URL

    def __init__(
        self,
        name: str = "openai",
        *,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_connections: int = 100,
        max_tokens_field: str = "max_tokens",
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.max_tokens_field = max_tokens_field
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
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
        body = self._chat_body(request, stream=False)
        reply = await self._http.call(_ChatResponse, "POST", "/chat/completions", body)
        choice = reply.choices[0]
        text = choice.message.content
        finish = choice.finish_reason or "stop"
        if text is None and choice.message.refusal is not None:
            text, finish = choice.message.refusal, "refusal"
        if text is None:
            raise self._http.error(
                ProviderResponseError, f"the reply has no text (finish_reason={choice.finish_reason!r})"
            )
        if reply.usage is not None:
            usage = reply.usage.to_usage()
        else:  # some compatible servers omit it: an estimate beats a free call
            usage = Usage(
                input_tokens=estimate_tokens([m.content for m in request.messages]),
                output_tokens=estimate_tokens([text]),
                calls=1,
            )
        return Completion(text=text, model=request.model, usage=usage, finish_reason=finish)

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]:
        body = self._chat_body(request, stream=True)
        finish: str | None = None
        usage: Usage | None = None
        done = False
        async with (
            self._http.stream("/chat/completions", body, content_types=SSE) as raw,
            contextlib.aclosing(sse_events(raw, source=self.name)) as events,
        ):
            async for event in events:
                if event.data == "[DONE]":
                    done = True
                    break
                chunk = self._http.parse_json(_Chunk, event.data)
                if chunk.error is not None:
                    raise self._stream_error(chunk.error)
                if chunk.usage is not None:
                    usage = chunk.usage.to_usage()
                for choice in chunk.choices or ():
                    if choice.index != 0:
                        continue
                    delta = choice.delta.content or choice.delta.refusal
                    if delta:
                        yield StreamChunk(delta=delta)
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
        if not done or finish is None:
            # (Not quoting the end marker: a client matching on it would take this for an end.)
            missing = "its end marker" if not done else "a finish reason"
            raise self._http.error(
                ProviderResponseError, f"the stream ended without {missing}", details={"reason": "truncated"}
            )
        yield StreamChunk(delta="", finish_reason=finish, usage=usage)

    async def embed(self, request: EmbedRequest) -> Embeddings:
        """Vectors in input order; ``purpose`` is not sent (OpenAI embeddings are symmetric)."""
        if not request.texts:
            return Embeddings(vectors=[], model=request.model, usage=Usage(calls=0))
        body = {"model": request.model, "input": request.texts, "encoding_format": "float"}
        reply = await self._http.call(_EmbedResponse, "POST", "/embeddings", body)
        vectors = sorted(reply.data, key=lambda v: v.index)
        if [v.index for v in vectors] != list(range(len(request.texts))):
            raise self._http.error(
                ProviderResponseError,
                f"{len(request.texts)} texts sent, vectors for indexes {[v.index for v in vectors]} received",
            )
        usage = (
            Usage(input_tokens=reply.usage.prompt_tokens or 0, calls=1)
            if reply.usage is not None
            else Usage(input_tokens=estimate_tokens(request.texts), calls=1)
        )
        return Embeddings(vectors=[v.embedding for v in vectors], model=request.model, usage=usage)

    async def score(self, request: ScoreRequest) -> Scores:
        raise ProviderUnsupportedError(
            f"{self.name}: chat completions give no log-probabilities of a given reply; "
            "score labels with a local model",
            details={"provider": self.name},
        )

    def count_tokens(self, model: str, text: str) -> int:
        """An estimate (≈4 characters a token), not the model's tokenizer."""
        return estimate_tokens([text])

    async def list_models(self) -> list[str]:
        """The model ids the server lists (``GET /models``)."""
        return [m.id for m in (await self._http.call(_ModelList, "GET", "/models")).data]

    # --- helpers -----------------------------------------------------------------

    def _chat_body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            self.max_tokens_field: request.max_tokens,
            "temperature": request.temperature,
        }
        if request.stop:
            body["stop"] = request.stop
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(request.json_schema),
                    "schema": request.json_schema,
                    "strict": True,
                },
            }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(request.extra)
        return body

    def _stream_error(self, error: Mapping[str, Any]) -> ProviderError:
        """An ``{"error": ...}`` event mid-stream: a server error unless its type says
        rate limit or bad request."""
        kind = str(error.get("type") or error.get("code") or "")
        if kind in ("rate_limit_exceeded", "rate_limit_error", "requests", "tokens"):
            status = 429
        elif kind in ("invalid_request_error", "invalid_request"):
            status = 400
        else:
            status = 500
        return self._http.status_error(
            status, f"error mid-stream: {upstream_message(json.dumps({'error': dict(error)}))}"
        )
