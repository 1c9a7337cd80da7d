"""A fake model server on loopback, with faults on demand.

:class:`FakeUpstream` speaks three wire formats on one ephemeral port:

- OpenAI: ``POST /v1/chat/completions`` (JSON, or SSE with ``stream: true`` and the
  usage chunk of ``stream_options.include_usage``), ``POST /v1/embeddings``,
  ``GET /v1/models``; key as ``Authorization: Bearer``.
- Anthropic: ``POST /v1/messages`` (JSON, or the ``message_start`` …
  ``message_stop`` event stream), ``GET /v1/models``; key as ``x-api-key``,
  ``anthropic-version`` required.
- Ollama: ``POST /api/chat`` (JSON, or NDJSON ending with ``"done": true``),
  ``POST /api/embed``, ``GET /api/tags``.

Each request takes the next scripted item: a reply text, or a :class:`Fault` (an
HTTP error with ``Retry-After``, a delay, a malformed or cut-off body, a stream
cut mid-way, a wrong content type). With nothing scripted it answers with text
that echoes the last user message, or a schema-valid JSON object when structured
output was asked for. Token counts are words, so tests can check them by hand.
Every request is recorded, secret headers masked::

    async with FakeUpstream(api_key="sk-test") as upstream:
        upstream.enqueue(Fault(status=429, retry_after=1), "hello there")
        provider = OpenAIProvider(base_url=upstream.openai_url, api_key="sk-test")
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from brickwork.testing.providers import sample_from_schema

__all__ = ["FakeUpstream", "Fault", "RecordedRequest"]

Dialect = Literal["openai", "anthropic", "ollama"]

#: Headers whose values are masked in :attr:`FakeUpstream.requests`.
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "cookie", "proxy-authorization"})
MASK = "<redacted>"

_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Fault:
    """What goes wrong with one reply.

    Attributes:
        status: an HTTP error status (>= 400) answered with the dialect's error body.
        message: the error body's message.
        error_type: the error body's type (default: from the status).
        retry_after: sent as ``Retry-After`` (seconds, or an HTTP-date string).
        headers: more response headers (``retry-after-ms``, say).
        delay: seconds to wait before answering (to trigger client timeouts).
        body: a raw body sent instead of the reply (malformed JSON, say).
        content_type: overrides the reply's content type.
        text: the reply text, when the fault is in how a good reply is delivered.
        cut_after: stop after this many stream events (or NDJSON lines); for a JSON
            body, after this many bytes.
        cut: ``"close"`` drops the connection mid-body; ``"end"`` ends the HTTP
            response cleanly, only without the stream's last events (or with a JSON
            body cut short).
        chunk_delay: seconds between stream events.
        stream_error_after: send the dialect's in-stream error event after this many
            events, then end the stream.
    """

    status: int = 200
    message: str = "injected fault"
    error_type: str | None = None
    retry_after: float | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes | str | None = None
    content_type: str | None = None
    text: str | None = None
    cut_after: int | None = None
    cut: Literal["close", "end"] = "close"
    chunk_delay: float = 0.0
    stream_error_after: int | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """One request the upstream received (secret header values masked).

    ``client_port`` tells connections apart: equal ports mean a reused connection.
    """

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    client_port: int | None = None


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    """Stream deltas: a word each, spaces kept, so ``"".join(pieces) == text``."""
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]] if text else []


def _vector(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:dims]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def _content(value: Any) -> str:
    """Message content as text (a string, or Anthropic's list of text blocks)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(b.get("text", "") for b in value if isinstance(b, dict))
    return ""


class FakeUpstream:
    """The fake server; an async context manager that starts it on 127.0.0.1.

    Args:
        api_key: when set, OpenAI and Anthropic requests without it get a 401.
        models: the ids the model lists return.
    """

    def __init__(self, *, api_key: str | None = None, models: Sequence[str] = ("fake-model",)) -> None:
        self.api_key = api_key
        self.models = list(models)
        self.requests: list[RecordedRequest] = []
        self._script: deque[str | Fault] = deque()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> FakeUpstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/embeddings", self._openai_embed)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/messages", self._anthropic_messages)
        app.router.add_post("/api/chat", self._ollama_chat)
        app.router.add_post("/api/embed", self._ollama_embed)
        app.router.add_get("/api/tags", self._ollama_tags)
        # Cancel a handler when its client hangs up (a timed-out call), and do not
        # wait long for slow ones at shutdown: delays here are on purpose.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the Anthropic and Ollama base URL."""
        if self._port is None:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def openai_url(self) -> str:
        """The OpenAI base URL (``…/v1``)."""
        return self.url + "/v1"

    # --- script ------------------------------------------------------------------

    def enqueue(self, *items: str | Fault) -> FakeUpstream:
        """Script the next replies, in order: a text, or a :class:`Fault`."""
        self._script.extend(items)
        return self

    @property
    def pending(self) -> int:
        return len(self._script)

    async def _begin(
        self, request: web.Request, dialect: Dialect
    ) -> tuple[dict[str, Any], Fault, web.Response | None]:
        """Record the request and pick its fault; a response here ends the request."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k: (MASK if k.lower() in SECRET_HEADERS else v) for k, v in request.headers.items()}
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        port = int(peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else None
        self.requests.append(RecordedRequest(request.method, request.path, headers, body, port))
        if request.method == "POST" and not isinstance(body, dict):
            fault = Fault(status=400, message="the body must be a JSON object")
            return {}, fault, self._error(dialect, fault)
        body = body if isinstance(body, dict) else {}
        if dialect == "anthropic" and "anthropic-version" not in request.headers:
            fault = Fault(status=400, message="anthropic-version header is required")
            return body, fault, self._error(dialect, fault)
        if self.api_key is not None and dialect != "ollama" and self._key(request, dialect) != self.api_key:
            fault = Fault(status=401, message="invalid api key")
            return body, fault, self._error(dialect, fault)
        item = self._script.popleft() if self._script else None
        fault = item if isinstance(item, Fault) else Fault(text=item)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status >= 400:
            return body, fault, self._error(dialect, fault)
        if fault.body is not None:
            raw_body = fault.body.encode() if isinstance(fault.body, str) else fault.body
            response = web.Response(body=raw_body, headers=dict(fault.headers))
            response.content_type = fault.content_type or "application/json"
            return body, fault, response
        return body, fault, None

    @staticmethod
    def _key(request: web.Request, dialect: Dialect) -> str | None:
        if dialect == "anthropic":
            return request.headers.get("x-api-key")
        auth = request.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def _error(self, dialect: Dialect, fault: Fault) -> web.Response:
        headers = dict(fault.headers)
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        return web.json_response(self._error_body(dialect, fault), status=fault.status, headers=headers)

    @staticmethod
    def _error_body(dialect: Dialect, fault: Fault) -> dict[str, Any]:
        if dialect == "anthropic":
            kind = fault.error_type or _ANTHROPIC_ERROR_TYPES.get(fault.status, "api_error")
            return {
                "type": "error",
                "error": {"type": kind, "message": fault.message},
                "request_id": "req_fake",
            }
        if dialect == "ollama":
            return {"error": fault.message}
        kind = fault.error_type or _OPENAI_ERROR_TYPES.get(
            fault.status, "server_error" if fault.status >= 500 else "requests"
        )
        return {"error": {"message": fault.message, "type": kind, "param": None, "code": None}}

    def _text(self, fault: Fault, messages: list[Any], schema: Any) -> str:
        if fault.text is not None:
            return fault.text
        if isinstance(schema, dict):
            return json.dumps(sample_from_schema(schema))
        users = [
            _content(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"
        ]
        return f"you said: {users[-1]}" if users else "hello"

    # --- delivery ----------------------------------------------------------------

    async def _send_json(self, request: web.Request, fault: Fault, payload: Any) -> web.StreamResponse:
        data = json.dumps(payload).encode()
        content_type = fault.content_type or "application/json"
        if fault.cut_after is None:
            response = web.Response(body=data, headers=dict(fault.headers))
            response.content_type = content_type
            return response
        cut = data[: fault.cut_after]
        if fault.cut == "end":
            response = web.Response(body=cut)
            response.content_type = content_type
            return response
        stream = web.StreamResponse(headers={"Content-Type": content_type})
        stream.content_length = len(data)
        await stream.prepare(request)
        await stream.write(cut)
        await self._drop(request)
        return stream

    async def _send_stream(
        self,
        request: web.Request,
        fault: Fault,
        content_type: str,
        frames: list[bytes],
        error_frame: bytes,
    ) -> web.StreamResponse:
        stream = web.StreamResponse(
            headers={"Content-Type": fault.content_type or content_type, **fault.headers}
        )
        await stream.prepare(request)
        for n, frame in enumerate(frames):
            if fault.stream_error_after is not None and n == fault.stream_error_after:
                await stream.write(error_frame)
                break
            if fault.cut_after is not None and n == fault.cut_after:
                if fault.cut == "close":
                    await self._drop(request)
                    return stream
                break
            if fault.chunk_delay and n:
                await asyncio.sleep(fault.chunk_delay)
            await stream.write(frame)
        await stream.write_eof()
        return stream

    @staticmethod
    async def _drop(request: web.Request) -> None:
        """Close the connection without ending the body: the client sees it cut."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Give the event loop a turn so the abort reaches the socket first.
        await asyncio.sleep(0)

    # --- OpenAI ------------------------------------------------------------------

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        body, fault, done = await self._begin(request, "openai")
        if done is not None:
            return done
        messages = body.get("messages", [])
        response_format = body.get("response_format") or {}
        schema = (response_format.get("json_schema") or {}).get("schema")
        text, finish = _limit(self._text(fault, messages, schema), body.get("max_tokens"))
        model = body.get("model", "fake-model")
        usage = {
            "prompt_tokens": sum(_words(_content(m.get("content"))) for m in messages),
            "completion_tokens": _words(text),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            payload = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            return await self._send_json(request, fault, payload)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return {**base, "object": "chat.completion.chunk", "choices": [choice]}

        events: list[Any] = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in _pieces(text)]
        events.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        frames = [b": keep-alive\n\n"] + [f"data: {json.dumps(e)}\n\n".encode() for e in events]
        frames.append(b"data: [DONE]\n\n")
        error = {"error": self._error_body("openai", _stream_fault(fault))["error"]}
        error_frame = f"data: {json.dumps(error)}\n\n".encode()
        return await self._send_stream(request, fault, "text/event-stream", frames, error_frame)

    async def _openai_embed(self, request: web.Request) -> web.StreamResponse:
        body, fault, done = await self._begin(request, "openai")
        if done is not None:
            return done
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else texts
        data = [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(texts)]
        tokens = sum(_words(t) for t in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": body.get("model", "fake-model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return await self._send_json(request, fault, payload)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        dialect: Dialect = "anthropic" if "anthropic-version" in request.headers else "openai"
        _, fault, done = await self._begin(request, dialect)
        if done is not None:
            return done
        if dialect == "anthropic":
            data = [{"type": "model", "id": m, "display_name": m} for m in self.models]
            payload: dict[str, Any] = {"data": data, "has_more": False}
        else:
            payload = {
                "object": "list",
                "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in self.models],
            }
        return await self._send_json(request, fault, payload)

    # --- Anthropic ---------------------------------------------------------------

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        body, fault, done = await self._begin(request, "anthropic")
        if done is not None:
            return done
        if not isinstance(body.get("max_tokens"), int):
            return self._error("anthropic", Fault(status=400, message="max_tokens: Field required"))
        messages = body.get("messages", [])
        schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
        text, finish = _limit(self._text(fault, messages, schema), body["max_tokens"])
        stop_reason = "max_tokens" if finish == "length" else "end_turn"
        system = _content(body.get("system", ""))
        input_tokens = _words(system) + sum(_words(_content(m.get("content"))) for m in messages)
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake-model"),
            "stop_sequence": None,
        }
        if not body.get("stream"):
            payload = {
                **message,
                "content": [{"type": "text", "text": text}],
                "stop_reason": stop_reason,
                "usage": {"input_tokens": input_tokens, "output_tokens": _words(text)},
            }
            return await self._send_json(request, fault, payload)
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        events: list[tuple[str, Any]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ("ping", {"type": "ping"}),
        ]
        for piece in _pieces(text):
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            events.append(("content_block_delta", delta))
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": _words(text)},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        frames = [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]
        error = self._error_body("anthropic", _stream_fault(fault, "overloaded_error"))
        error_frame = f"event: error\ndata: {json.dumps(error)}\n\n".encode()
        return await self._send_stream(request, fault, "text/event-stream", frames, error_frame)

    # --- Ollama ------------------------------------------------------------------

    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        body, fault, done = await self._begin(request, "ollama")
        if done is not None:
            return done
        messages = body.get("messages", [])
        schema = body.get("format")
        options = body.get("options") or {}
        text, finish = _limit(self._text(fault, messages, schema), options.get("num_predict"))
        model = body.get("model", "fake-model")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        final = {
            "model": model,
            "created_at": created,
            "done": True,
            "done_reason": finish,
            "total_duration": 1000,
            "prompt_eval_count": sum(_words(_content(m.get("content"))) for m in messages),
            "eval_count": _words(text),
        }
        if body.get("stream") is False:
            payload = {**final, "message": {"role": "assistant", "content": text}}
            return await self._send_json(request, fault, payload)
        lines = [
            {
                "model": model,
                "created_at": created,
                "message": {"role": "assistant", "content": p},
                "done": False,
            }
            for p in _pieces(text)
        ]
        lines.append({**final, "message": {"role": "assistant", "content": ""}})
        frames = [json.dumps(line).encode() + b"\n" for line in lines]
        error_frame = json.dumps({"error": _stream_fault(fault).message}).encode() + b"\n"
        return await self._send_stream(request, fault, "application/x-ndjson", frames, error_frame)

    async def _ollama_embed(self, request: web.Request) -> web.StreamResponse:
        body, fault, done = await self._begin(request, "ollama")
        if done is not None:
            return done
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else texts
        payload = {
            "model": body.get("model", "fake-model"),
            "embeddings": [_vector(t) for t in texts],
            "prompt_eval_count": sum(_words(t) for t in texts),
        }
        return await self._send_json(request, fault, payload)

    async def _ollama_tags(self, request: web.Request) -> web.StreamResponse:
        _, fault, done = await self._begin(request, "ollama")
        if done is not None:
            return done
        payload = {"models": [{"name": m, "model": m, "size": 1} for m in self.models]}
        return await self._send_json(request, fault, payload)


def _limit(text: str, max_tokens: Any) -> tuple[str, str]:
    """At most ``max_tokens`` words, and the finish reason that goes with it."""
    if isinstance(max_tokens, int) and _words(text) > max_tokens:
        return " ".join(text.split()[:max_tokens]), "length"
    return text, "stop"


def _stream_fault(fault: Fault, default_type: str = "server_error") -> Fault:
    """The in-stream error: the fault's type and message, a 5xx-like type by default."""
    if fault.error_type is None:
        return Fault(status=500, message=fault.message, error_type=default_type)
    return fault
