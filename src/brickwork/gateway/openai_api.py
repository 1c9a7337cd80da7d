"""The OpenAI-compatible API: ``/v1/models``, ``/v1/chat/completions``, ``/v1/embeddings``.

``model`` is either a plugin ref (``sentiment``, ``summarize@prod``) or a
``provider:model`` pass-through (``openai:gpt-4o-mini``) that the key's patterns
must allow. For a plugin, the last user message is its input: plain text for
plugins with a ``text`` field, a JSON object for structured ones (or for text
plugins whose other fields you want to set). The reply's content is the plugin's
text (the output field it names as ``text_field``: ``summary``, ``translation``,
``label`` …; else a ``text`` field), else the output as JSON; the envelope's facts and the whole output
are in an extra ``brickwork`` field.

Errors have the OpenAI shape and statuses, so the official SDK raises its own
exception types (``AuthenticationError``, ``PermissionDeniedError``,
``NotFoundError``, ``RateLimitError`` …). Streaming is Server-Sent Events: a plugin
that streams its text (``ctx.emit``; a pass-through, summarize, translate) sends
each piece as it is produced, another sends its text as one chunk at the end. A
failure after the stream has started ends it with one ``error`` event and no
``[DONE]``, which the SDK raises.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic_core import to_json
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from brickwork.contracts.errors import (
    BrickworkError,
    InvalidRequestError,
    PluginNotFoundError,
)
from brickwork.contracts.refs import PluginRef
from brickwork.contracts.request import Envelope, Request, RouteDecision
from brickwork.gateway.body import parse_body, read_body, request_headers
from brickwork.gateway.errors import InternalError, error_body, error_response
from brickwork.gateway.passthrough import chat_messages
from brickwork.gateway.responses import JSONBytesResponse, endpoint, json_response
from brickwork.gateway.schemas import ChatCompletionRequest, ChatMessage, EmbeddingRequest
from brickwork.storage.keys import ApiKey

if TYPE_CHECKING:
    from brickwork.gateway.app import Gateway

__all__ = ["OpenAIAPI"]

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class OpenAIAPI:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", endpoint(self.chat_completions), methods=["POST"]),
            Route("/v1/embeddings", endpoint(self.embeddings), methods=["POST"]),
            Route("/v1/models", endpoint(self.list_models), methods=["GET"]),
            Route("/v1/models/{model:path}", endpoint(self.get_model), methods=["GET"]),
        ]

    # --- models ------------------------------------------------------------------

    def _model_ids(self, key: ApiKey) -> list[str]:
        registry = self.gateway.orchestrator.registry
        ids: list[str] = []
        for name in registry.names():
            if name in self.gateway.passthrough_names or not key.allows(name):
                continue
            ids.append(name)
            ids.extend(f"{name}@{label}" for label in registry.labels(name))
            ids.extend(entry.ref for entry in registry.versions(name))
        return ids

    @staticmethod
    def _model(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "brickwork"}

    async def list_models(self, request: HTTPRequest) -> Response:
        key = await self.gateway.authenticate(request)
        return json_response({"object": "list", "data": [self._model(m) for m in self._model_ids(key)]})

    async def get_model(self, request: HTTPRequest) -> Response:
        key = await self.gateway.authenticate(request)
        model_id = request.path_params["model"]
        if model_id not in self._model_ids(key):
            raise PluginNotFoundError(f"no model {model_id[:200]!r} for this key", plugin=None)
        return json_response(self._model(model_id))

    # --- chat ----------------------------------------------------------------------

    async def chat_completions(self, request: HTTPRequest) -> Response:
        gateway = self.gateway
        headers = request_headers(request)
        key = await gateway.authenticate(request, headers)
        raw = await read_body(request, gateway.settings.max_body_bytes, headers)
        body = parse_body(ChatCompletionRequest, raw)
        call, model = self._chat_request(key, body)
        created = int(time.time())
        if body.stream:
            return await self._stream(key, body, call, model, created, size=len(raw))
        envelope = await gateway.dispatch(key, call, model=model, size=len(raw))
        text, finish = self._reply(envelope)
        trace_id = envelope.trace_id
        usage = envelope.usage
        completion = {
            "id": f"chatcmpl-{trace_id}",
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": {  # (as _usage)
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
            },
            "system_fingerprint": None,
            "brickwork": self._chat_facts(envelope),
        }
        return JSONBytesResponse(
            to_json(completion), 200, [(b"x-brickwork-trace-id", trace_id.encode("latin-1"))]
        )

    def _chat_request(self, key: ApiKey, body: ChatCompletionRequest) -> tuple[Request, str | None]:
        """The Brickwork request a chat request stands for, and its pass-through model."""
        metadata = dict(body.metadata or {})
        model = body.model
        provider, colon, model_name = model.partition(":")
        if colon:
            plugin = self.gateway.passthrough.get(provider)
            if plugin is None or not model_name:
                raise PluginNotFoundError(
                    f"no provider {provider[:64]!r} for model {model[:200]!r} "
                    f"(providers: {', '.join(sorted(self.gateway.passthrough)) or 'none'})"
                )
            stop = body.stop
            temperature = body.temperature
            data: dict[str, Any] | str = {
                "model": model_name,
                "messages": chat_messages([(m.role, m.text()) for m in body.messages]),
                "max_tokens": (
                    body.max_completion_tokens or body.max_tokens or self.gateway.settings.default_max_tokens
                ),
                "temperature": temperature if temperature is not None else 0.0,
                "stop": [stop] if isinstance(stop, str) else list(stop or ()),
            }
            return Request(plugin=plugin, input=data, tenant=key.tenant, metadata=metadata), model
        ref = PluginRef.parse(model)
        content = _last_user(body.messages)
        # What a plugin takes is only looked at for a plugin the key may use: for
        # another, the orchestrator refuses the request (and records it) unread.
        allowed = self.gateway.principal(key).allows(ref.name)
        data = self._plugin_input(ref, content) if allowed else content
        return _request(str(ref), data, key, metadata), None

    def _plugin_input(self, ref: PluginRef, content: str) -> dict[str, Any] | str:
        """Text for a text plugin; a JSON object for a structured one."""
        fields: set[str] | None = None
        # An unknown plugin is the orchestrator's to refuse (and record).
        with contextlib.suppress(BrickworkError):
            fields = set(self.gateway.orchestrator.registry.resolve(ref).cls.input_type.model_fields)
        stripped = content.strip()
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped)
            except ValueError:
                data = None
            if isinstance(data, dict) and (fields is None or "text" not in fields or set(data) <= fields):
                return data
        if fields is not None and "text" not in fields:
            raise InvalidRequestError(
                f"{ref} takes structured input ({', '.join(sorted(fields))}): "
                "send the last user message as a JSON object",
                plugin=str(ref),
            )
        return content

    async def _stream(
        self,
        key: ApiKey,
        body: ChatCompletionRequest,
        call: Request,
        model: str | None,
        created: int,
        *,
        size: int,
    ) -> Response:
        # The run's text, piece by piece; a None once the run is over, after every piece.
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        task = asyncio.create_task(
            self.gateway.dispatch(key, call, model=model, size=size, on_text=queue.put_nowait)
        )
        task.add_done_callback(lambda done: _finished(done, queue))
        try:
            first = await queue.get()
        except BaseException:
            task.cancel()
            raise
        if first is None:
            # Over before a token flowed: a failure gets its real status (and the
            # SDK its proper exception type), not a 200 with an error event.
            exc = task.exception()
            if isinstance(exc, BrickworkError):
                return error_response(exc)
            if exc is not None:
                raise exc  # endpoint() turns it into a 500
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(self, task, queue, first, body.model, created, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)

    def _reply(self, envelope: Envelope) -> tuple[str, str]:
        """The assistant's text and finish reason: the answering plugin's text field,
        else its output's ``text``, else the output as JSON."""
        output = envelope.output
        if envelope.plugin in self.gateway.passthrough_names:
            text = output.get("text")  # (the hot path: no registry lookup)
        else:
            text = self.gateway.orchestrator.text_of(envelope)
        if isinstance(text, str):
            finish = output.get("finish_reason")
            return text, finish if isinstance(finish, str) else "stop"
        return json.dumps(output, ensure_ascii=False), "stop"

    def _chat_facts(self, envelope: Envelope) -> dict[str, Any]:
        """The envelope's facts for a chat reply; a plugin's whole output too (a
        pass-through's output is the reply itself)."""
        facts = _facts(envelope)
        if envelope.plugin not in self.gateway.passthrough_names:
            facts["output"] = envelope.output
        return facts

    # --- embeddings ------------------------------------------------------------------

    async def embeddings(self, request: HTTPRequest) -> Response:
        gateway = self.gateway
        headers = request_headers(request)
        key = await gateway.authenticate(request, headers)
        raw = await read_body(request, gateway.settings.max_body_bytes, headers)
        body = parse_body(EmbeddingRequest, raw)
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts:
            raise InvalidRequestError("input must be a text or a non-empty list of texts")
        provider, colon, model_name = body.model.partition(":")
        if colon:
            plugin = gateway.passthrough.get(provider)
            if plugin is None or not model_name:
                raise PluginNotFoundError(f"no provider {provider[:64]!r} for model {body.model[:200]!r}")
            call = Request(plugin=plugin, input={"model": model_name, "texts": texts}, tenant=key.tenant)
            envelope = await gateway.dispatch(key, call, model=body.model, size=len(raw))
            vectors = envelope.output.get("vectors") or []
            envelopes = [envelope]
        else:
            ref = PluginRef.parse(body.model)
            # One run per text, concurrently (the plugin's bulkhead bounds them); the
            # first failure cancels the rest.
            try:
                async with asyncio.TaskGroup() as group:
                    runs = [
                        group.create_task(
                            gateway.dispatch(
                                key, Request(plugin=str(ref), input=text, tenant=key.tenant), size=len(text)
                            )
                        )
                        for text in texts
                    ]
            except BaseExceptionGroup as failed:
                raise failed.exceptions[0] from None
            envelopes = [run.result() for run in runs]
            vectors = [_vector(ref, e) for e in envelopes]
        if body.dimensions is not None:
            vectors = [v[: body.dimensions] for v in vectors]
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        prompt_tokens = sum(e.usage.input_tokens for e in envelopes)
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": body.model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
                "brickwork": [_facts(e) for e in envelopes],
            },
            headers={"x-brickwork-trace-id": envelopes[0].trace_id},
        )


# --- helpers -------------------------------------------------------------------------


def _request(plugin: str, data: dict[str, Any] | str, key: ApiKey, metadata: dict[str, str]) -> Request:
    return Request(plugin=plugin, input=data, tenant=key.tenant, metadata=metadata)


def _last_user(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text()
    raise InvalidRequestError("messages has no user message: a plugin's input is the last user message")


def _usage(envelope: Envelope) -> dict[str, int]:
    usage = envelope.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def _facts(envelope: Envelope) -> dict[str, Any]:
    return {
        "plugin": envelope.plugin,
        "version": envelope.version,
        "trace_id": envelope.trace_id,
        "route": _route(envelope.route),
        "models": envelope.models,
        "cost": envelope.cost,
        "cache_hit": envelope.cache_hit,
        "degraded": envelope.degraded,
        "warnings": envelope.warnings,
        "latency_ms": envelope.latency_ms,
    }


#: The fields :func:`_route` writes by hand (else it dumps the model).
_ROUTE_FIELDS = ("method", "ref", "rule", "scores")
_ROUTE_BY_HAND = tuple(RouteDecision.model_fields) == _ROUTE_FIELDS


def _route(route: RouteDecision) -> dict[str, Any]:
    """``route.model_dump(mode="json")``, built by hand where that is plainly the same."""
    if route.scores or not _ROUTE_BY_HAND or type(route) is not RouteDecision:
        return route.model_dump(mode="json")  # (a score may be a float JSON has no literal for)
    return {"method": route.method, "ref": route.ref, "rule": route.rule, "scores": {}}


def _vector(ref: PluginRef, envelope: Envelope) -> list[float]:
    output = envelope.output
    for field in ("embedding", "vector"):
        value = output.get(field)
        if isinstance(value, list):
            return [float(x) for x in value]
    for field in ("embeddings", "vectors"):
        value = output.get(field)
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
            return [float(x) for x in value[0]]
    raise InvalidRequestError(
        f"{ref} does not produce embeddings (its output has no 'embedding' field)", plugin=str(ref)
    )


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def _finished(task: asyncio.Task[Envelope], queue: asyncio.Queue[str | None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved here, so a client that left does not leave it unretrieved
    queue.put_nowait(None)


def _sse(data: Any) -> bytes:
    return b"data: " + to_json(data) + b"\n\n"


async def _events(
    api: OpenAIAPI,
    task: asyncio.Task[Envelope],
    queue: asyncio.Queue[str | None],
    first: str | None,
    model: str,
    created: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The SSE stream of one chat completion; the run is cancelled if the client leaves."""
    chat_id = f"chatcmpl-{secrets.token_hex(16)}"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(
            {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
        )

    try:
        yield chunk({"role": "assistant", "content": ""})
        item = first
        streamed = item is not None
        while item is not None:
            yield chunk({"content": item})
            item = await queue.get()
        exc = task.exception()
        if exc is not None:
            error = exc if isinstance(exc, BrickworkError) else _internal(exc)
            yield _sse(error_body(error))
            return
        envelope = task.result()
        text, finish = api._reply(envelope)
        # (What streamed is the text: the runtime checked it, and no fallback answers
        # after text was sent.) A plugin that does not stream sends it now.
        if not streamed and text:
            yield chunk({"content": text})
        final = chunk({}, finish)
        yield final
        if include_usage:
            yield _sse(
                {
                    "id": chat_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": _usage(envelope),
                    "brickwork": api._chat_facts(envelope),
                }
            )
        yield b"data: [DONE]\n\n"
    finally:
        if not task.done():
            task.cancel()


def _internal(exc: BaseException) -> BrickworkError:
    return InternalError(f"internal error ({type(exc).__name__}); see the server log")
