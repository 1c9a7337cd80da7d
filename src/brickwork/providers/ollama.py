"""Ollama's native API (``ollama:<model>``).

The wire format as Ollama documents it: ``POST /api/chat`` with ``stream`` set
explicitly (Ollama streams by default), generation settings under ``options``
(``num_predict`` is the output limit), and ``format`` holding a JSON schema for
structured output. A stream is NDJSON — one JSON object a line — whose last
object has ``"done": true`` with ``prompt_eval_count`` and ``eval_count``; a
stream that ends without it is a
:class:`~brickwork.contracts.errors.ProviderResponseError`. ``POST /api/embed``
embeds a batch. Errors are ``{"error": "..."}``, also as a line mid-stream.

No key: Ollama has none (put a proxy in front of it for that).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from brickwork.contracts.errors import ProviderResponseError, ProviderUnsupportedError
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
from brickwork.providers.http import HttpClient, ndjson_objects

__all__ = ["DEFAULT_BASE_URL", "OllamaProvider"]

DEFAULT_BASE_URL = "http://127.0.0.1:11434"

#: What an NDJSON stream may be labelled; Ollama says ``application/x-ndjson``.
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Message(_Wire):
    content: str = ""


class _Chat(_Wire):
    message: _Message | None = None
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    error: str | None = None

    def usage(self) -> Usage:
        return Usage(input_tokens=self.prompt_eval_count or 0, output_tokens=self.eval_count or 0, calls=1)


class _Embed(_Wire):
    embeddings: list[list[float]]
    prompt_eval_count: int | None = None


class _Tag(_Wire):
    name: str


class _Tags(_Wire):
    models: list[_Tag]


class OllamaProvider:
    """A backend on an Ollama server.

    Args:
        name: the ``provider`` part of the model ids it serves.
        base_url: the server (``http://127.0.0.1:11434``).
        timeout: seconds for a whole call; for a stream, the longest silence
            allowed (a model that must load first counts against it).
        max_connections: connection pool size.

    ``score`` is unsupported (the chat API gives no log-probabilities of a given
    reply); ``count_tokens`` is an estimate (≈4 characters a token).
    """

    is_real = True

    def __init__(
        self,
        name: str = "ollama",
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 60.0,
        max_connections: int = 100,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._http = HttpClient(name, self.base_url, timeout=timeout, max_connections=max_connections)

    @classmethod
    def from_env(
        cls,
        name: str = "ollama",
        *,
        host_env: str = "OLLAMA_HOST",
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> OllamaProvider:
        """The server from ``$OLLAMA_HOST`` (``host:port`` or a URL), else the default."""
        env = os.environ if environ is None else environ
        host = env.get(host_env) or DEFAULT_BASE_URL
        if "://" not in host:
            host = "http://" + host
        return cls(name, base_url=host, **kwargs)

    def __repr__(self) -> str:
        return f"OllamaProvider(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def closed(self) -> bool:
        """No connection is open (before the first call, and after :meth:`aclose`)."""
        return self._http.closed

    async def aclose(self) -> None:
        """Close the HTTP session; a later call opens a new one."""
        await self._http.aclose()

    # --- calls -------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        reply = await self._http.call(_Chat, "POST", "/api/chat", self._body(request, stream=False))
        if reply.error is not None:
            raise self._http.status_error(500, reply.error)
        if not reply.done or reply.message is None:
            raise self._http.error(
                ProviderResponseError, "the reply is not done: no message", details={"reason": "truncated"}
            )
        return Completion(
            text=reply.message.content,
            model=request.model,
            usage=reply.usage(),
            finish_reason=reply.done_reason or "stop",
        )

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]:
        final: _Chat | None = None
        async with (
            self._http.stream(
                "/api/chat", self._body(request, stream=True), content_types=NDJSON_TYPES
            ) as raw,
            contextlib.aclosing(ndjson_objects(raw, source=self.name)) as lines,
        ):
            async for obj in lines:
                line = self._http.parse(_Chat, obj)
                if line.error is not None:
                    raise self._http.status_error(500, f"error mid-stream: {line.error}")
                if line.message is not None and line.message.content:
                    yield StreamChunk(delta=line.message.content)
                if line.done:
                    final = line
                    break
        if final is None:
            raise self._http.error(
                ProviderResponseError, 'the stream ended before "done": true', details={"reason": "truncated"}
            )
        yield StreamChunk(delta="", finish_reason=final.done_reason or "stop", usage=final.usage())

    async def embed(self, request: EmbedRequest) -> Embeddings:
        """Vectors in input order; ``purpose`` is not sent (prefix texts yourself if
        the model wants ``query:`` / ``passage:``)."""
        if not request.texts:
            return Embeddings(vectors=[], model=request.model, usage=Usage(calls=0))
        body = {"model": request.model, "input": request.texts}
        reply = await self._http.call(_Embed, "POST", "/api/embed", body)
        if len(reply.embeddings) != len(request.texts):
            raise self._http.error(
                ProviderResponseError,
                f"{len(request.texts)} texts sent, {len(reply.embeddings)} vectors received",
            )
        tokens = reply.prompt_eval_count
        usage = Usage(input_tokens=estimate_tokens(request.texts) if tokens is None else tokens, calls=1)
        return Embeddings(vectors=reply.embeddings, model=request.model, usage=usage)

    async def score(self, request: ScoreRequest) -> Scores:
        raise ProviderUnsupportedError(
            f"{self.name}: the chat API gives no log-probabilities of a given reply",
            details={"provider": self.name},
        )

    def count_tokens(self, model: str, text: str) -> int:
        """An estimate (≈4 characters a token), not the model's tokenizer."""
        return estimate_tokens([text])

    def context_window(self, model: str) -> int | None:
        """Unknown: the server decides each model's ``num_ctx``."""
        return None

    async def list_models(self) -> list[str]:
        """The models the server has pulled (``GET /api/tags``)."""
        return [m.name for m in (await self._http.call(_Tags, "GET", "/api/tags")).models]

    # --- helpers -----------------------------------------------------------------

    def _body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        options: dict[str, Any] = {"temperature": request.temperature, "num_predict": request.max_tokens}
        if request.stop:
            options["stop"] = request.stop
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": stream,
            "options": options,
        }
        if request.json_schema is not None:
            body["format"] = request.json_schema
        extra = dict(request.extra)
        if isinstance(extra.get("options"), dict):
            options.update(extra.pop("options"))
        body.update(extra)
        return body
