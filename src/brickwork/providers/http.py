"""Shared HTTP plumbing for the providers that reach a model over the network.

One :class:`HttpClient` per provider, opened lazily on first use (never at
import): whole JSON calls go through :class:`~brickwork.providers._transport.Transport`
(a small keep-alive HTTP/1.1 client on asyncio protocols and ``httptools``, a
fraction of aiohttp's CPU per call), streams through an :mod:`aiohttp` session;
each has its own bounded connection pool. Timeouts, and one translation of every
way a call can fail into :mod:`brickwork.contracts.errors`:

======================  ==========================================================
upstream                error
======================  ==========================================================
401, 403                :class:`ProviderAuthenticationError` (our key, not the caller's)
400, 404, 409, 413, 422 :class:`ProviderRejectedError`: the backend refused the request
                        itself (a wrong model name or parameter); breakers ignore it
408, 504, timeouts      :class:`ProviderTimeoutError`
429                     :class:`ProviderRateLimitedError`, ``retry_after`` from
                        ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP-date)
other 5xx (529 too)     :class:`ProviderUnavailableError` (``Retry-After`` honoured)
other 4xx               :class:`ProviderResponseError` with the upstream's message
refused / reset         :class:`ProviderUnavailableError`
bad JSON, cut body,     :class:`ProviderResponseError` — never a success with
wrong content type,     partial text
not HTTP, body past
:data:`MAX_REPLY_BODY`
======================  ==========================================================

Streams are parsed here too: :func:`sse_events` (server-sent events) and
:func:`ndjson_objects` (one JSON value a line). Both read raw chunks, so a line may
be split across network reads and no line-length limit of the HTTP library applies.
Whether a stream *finished* is the provider's call (``[DONE]``, ``message_stop``,
``"done": true``): these parsers only guarantee that an event cut off by the end
of the stream is never delivered as if whole.

Every message an error carries passes through :meth:`HttpClient.redact`, so a key
never reaches a log, even when an upstream echoes it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from brickwork.contracts.errors import (
    ConfigurationError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from brickwork.providers._transport import (
    IncompleteReplyError,
    MalformedReplyError,
    Reply,
    ReplyTooLargeError,
    Transport,
    TransportTimeoutError,
)
from brickwork.providers._wire import (
    MAX_LINE,
    MAX_MESSAGE,
    MAX_RETRY_AFTER,
    SSEEvent,
    _snippet,
    error_for_status,
    iter_lines,
    ndjson_objects,
    parse_retry_after,
    sse_events,
    upstream_message,
)

__all__ = [
    "MAX_LINE",
    "MAX_MESSAGE",
    "MAX_RETRY_AFTER",
    "HttpClient",
    "SSEEvent",
    "error_for_status",
    "iter_lines",
    "ndjson_objects",
    "parse_retry_after",
    "sse_events",
    "upstream_message",
]

M = TypeVar("M", bound=BaseModel)


JSON_TYPES = ("application/json",)
#: The largest whole reply read (256 MiB: a big batch of large embeddings is ~100 MiB
#: of JSON); past it a call is a ProviderResponseError.
MAX_REPLY_BODY = 256 * 1024 * 1024
#: After a stream's last event: how long, and how much, to read to reach the end
#: of the body (then the connection is reused rather than closed).
DRAIN_SECONDS = 0.5
DRAIN_BYTES = 64 * 1024

#: What aiohttp raises for a failed exchange (our own ProviderErrors pass through).
_TRANSPORT_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)
#: What a :class:`Transport` call raises for a failed exchange.
_REPLY_ERRORS = (TimeoutError, OSError, MalformedReplyError)


# --- the client ----------------------------------------------------------------


class HttpClient:
    """The HTTP connections of one provider, opened on first use.

    Args:
        provider: the provider's name, the prefix of every error message.
        base_url: prefix of every path (``https://api.openai.com/v1``).
        headers: sent with every request (keys go here).
        timeout: seconds for a whole non-streaming call; for a stream, seconds to
            connect and the longest silence allowed between two reads.
        max_connections: size of the connection pool (``0``: unbounded).
        secrets: strings that must never appear in an error (the API key).

    Whole calls (:meth:`request_raw`, :meth:`request_json`, :meth:`call`) use a
    :class:`~brickwork.providers._transport.Transport`; streams (:meth:`stream`) an
    aiohttp session. Both belong to the event loop that opened them. Once that loop
    is closed (``asyncio.run`` returned) new ones are opened on the next call; using
    one client from two live loops at once is a :class:`ConfigurationError`.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        max_connections: int = 100,
        secrets: Sequence[str | None] = (),
    ) -> None:
        if timeout <= 0:
            raise ConfigurationError(f"{provider}: timeout must be positive, got {timeout}")
        if max_connections < 0:
            raise ConfigurationError(f"{provider}: max_connections must be >= 0, got {max_connections}")
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            shown = f"{url.scheme}://{url.hostname or ''}{url.path}" if url.scheme else base_url.split("?")[0]
            raise ConfigurationError(
                f"{provider}: base URL must be http(s)://host[:port][/path], got {shown[:80]!r}"
            )
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_connections = max_connections
        self._headers = dict(headers or {})
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self._session: aiohttp.ClientSession | None = None
        self._transport: Transport | None = None
        self._transport_url = ""  # the base URL self._transport was made for
        self._loop: asyncio.AbstractEventLoop | None = None
        self._call_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)

    def __repr__(self) -> str:
        return f"HttpClient({self.provider!r}, {self.base_url!r})"

    @property
    def closed(self) -> bool:
        """True before the first call and after :meth:`aclose`."""
        return (self._session is None or self._session.closed) and (
            self._transport is None or self._transport.closed
        )

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def error(
        self, cls: type[ProviderError], message: str, *, details: dict[str, Any] | None = None
    ) -> ProviderError:
        """``cls`` with ``"<provider>: <message>"``, secrets redacted."""
        text = self.redact(f"{self.provider}: {message}")
        return cls(text, details={"provider": self.provider, **(details or {})})

    async def aclose(self) -> None:
        """Close the connections; the next call opens new ones."""
        session, self._session, self._loop = self._session, None, None
        transport, self._transport = self._transport, None
        try:
            if transport is not None:
                await transport.aclose()
        finally:
            if session is not None and not session.closed:
                await session.close()

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called when ``loop`` is not the loop this client is bound to."""
        if self._loop is not None and not self.closed:
            if not self._loop.is_closed():
                raise ConfigurationError(
                    f"{self.provider}: provider used from two running event loops; "
                    "create one provider per loop"
                )
            # Its loop is gone and its sockets with it: closing only marks them closed.
            session, self._session = self._session, None
            if session is not None:
                with contextlib.suppress(Exception):
                    await session.close()
            transport, self._transport = self._transport, None
            if transport is not None:
                with contextlib.suppress(Exception):
                    await transport.aclose()
        self._loop = loop

    async def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            await self._bind(loop)
        if self._session is not None and not self._session.closed:
            return self._session
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, timeout=self._call_timeout
        )
        return self._session

    async def _new_transport(self) -> Transport:
        """A transport for the current ``base_url`` (the old one closed if it changed)."""
        old, self._transport = self._transport, None
        if old is not None:
            await old.aclose()
        try:
            transport = Transport(
                self.base_url,
                headers=self._headers,
                max_connections=self.max_connections,
                timeout=self.timeout,
                max_body=MAX_REPLY_BODY,
            )
        except ValueError as exc:
            raise ConfigurationError(self.redact(f"{self.provider}: {exc}")) from None
        self._transport, self._transport_url = transport, self.base_url
        return transport

    # --- calls -------------------------------------------------------------------

    async def request_json(self, method: str, path: str, body: Any = None) -> Any:
        """One call answered by a JSON body; any failure is a :class:`ProviderError`."""
        raw = await self.request_raw(method, path, body)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise self.error(
                ProviderResponseError,
                f"malformed JSON from {method} {path}: {_snippet(raw)}",
                details={"reason": "malformed"},
            ) from exc

    async def request_raw(self, method: str, path: str, body: Any = None) -> bytes:
        """:meth:`request_json` without decoding: the JSON reply's bytes."""
        if self._loop is not asyncio.get_running_loop():
            await self._bind(asyncio.get_running_loop())
        transport = self._transport
        if transport is None or self._transport_url != self.base_url:
            transport = await self._new_transport()
        # Encoded here (pydantic-core, in Rust); the transport's timeout is self.timeout.
        data = None if body is None else to_json(body)
        try:
            reply = await transport.request(
                method, path, data, content_type="application/json" if data is not None else None
            )
        except _REPLY_ERRORS as exc:
            raise self._reply_error(exc, f"{method} {path}") from exc
        raw = reply.body
        if reply.status >= 400:
            raise self._reply_status_error(reply, f"{method} {path}")
        ctype = _reply_content_type(reply)
        if ctype not in JSON_TYPES:
            raise self._type_error(ctype, JSON_TYPES, raw, f"{method} {path}")
        return raw

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, body: Any, *, content_types: Sequence[str]
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST ``body`` and yield the raw chunks of a streamed reply.

        Statuses, content type and transport failures are checked here; whether the
        stream ended where it should is for the caller to judge. Leaving the block
        normally (the caller read its stream's last event) waits briefly for the end
        of the body so the connection can be reused; leaving it by an exception
        (an error, or a consumer that stopped reading) closes the connection.
        """
        what = f"POST {path}"
        session = await self._get_session()
        try:
            response = await session.post(self.base_url + path, json=body, timeout=self._stream_timeout)
        except _TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc, what) from exc
        finished = False
        try:
            if response.status >= 400:
                raw = await self._read(response, what)
                raise self._status_error(response, raw, what)
            if _content_type(response) not in content_types:
                raw = await self._read(response, what)
                self._check_type(response, content_types, raw, what)
            async with contextlib.aclosing(self._chunks(response, what)) as chunks:
                yield chunks
            finished = await _drain(response)
        finally:
            if finished:
                response.release()
            else:
                response.close()

    async def _chunks(self, response: aiohttp.ClientResponse, what: str) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise self.error(
                ProviderTimeoutError, f"{what}: the stream went silent for {self.timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise self.error(
                ProviderResponseError,
                f"{what}: the stream was cut off ({type(exc).__name__})",
                details={"reason": "truncated"},
            ) from exc

    async def _read(self, response: aiohttp.ClientResponse, what: str) -> bytes:
        try:
            return await response.read()
        except TimeoutError as exc:
            raise self.error(
                ProviderTimeoutError, f"{what}: no complete reply within {self.timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise self.error(
                ProviderResponseError,
                f"{what}: the reply body was cut off ({type(exc).__name__})",
                details={"reason": "truncated"},
            ) from exc

    def status_error(self, status: int, message: str, *, retry_after: float | None = None) -> ProviderError:
        """The error for an HTTP status (or an in-stream error given one), redacted."""
        return error_for_status(
            status,
            self.redact(f"{self.provider}: {message}"),
            retry_after=retry_after,
            details={"provider": self.provider, "status": status},
        )

    async def call(self, model: type[M], method: str, path: str, body: Any = None) -> M:
        """:meth:`request_json`, read as the wire model ``model`` (parsed in one pass)."""
        return self.parse_json(model, await self.request_raw(method, path, body))

    def parse(self, model: type[M], data: Any) -> M:
        """``data`` (decoded JSON) as a wire model; a wrong shape is a ProviderResponseError."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise self._shape_error(exc) from exc

    def parse_json(self, model: type[M], text: str | bytes) -> M:
        """JSON text (one stream event) as a wire model; bad JSON or shape is a
        ProviderResponseError."""
        try:
            return model.model_validate_json(text)
        except ValidationError as exc:
            raise self._shape_error(exc, text) from exc

    def _shape_error(self, exc: ValidationError, text: str | bytes | None = None) -> ProviderError:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        kind = "malformed JSON" if first["type"].startswith("json") else "unexpected reply"
        seen = f": {_snippet(text)}" if text is not None else ""
        return self.error(
            ProviderResponseError, f"{kind} ({where}: {first['msg']}){seen}", details={"reason": "malformed"}
        )

    def _status_error(self, response: aiohttp.ClientResponse, raw: bytes, what: str) -> ProviderError:
        status = response.status
        return self.status_error(
            status,
            f"HTTP {status} from {what}: {upstream_message(raw)}",
            retry_after=parse_retry_after(response.headers),
        )

    def _reply_status_error(self, reply: Reply, what: str) -> ProviderError:
        status = reply.status
        return self.status_error(
            status,
            f"HTTP {status} from {what}: {upstream_message(reply.body)}",
            retry_after=parse_retry_after(reply.headers),
        )

    def _check_type(
        self, response: aiohttp.ClientResponse, expected: Sequence[str], raw: bytes, what: str
    ) -> None:
        ctype = _content_type(response)
        if ctype not in expected:
            raise self._type_error(ctype, expected, raw, what)

    def _type_error(self, ctype: str, expected: Sequence[str], raw: bytes, what: str) -> ProviderError:
        return self.error(
            ProviderResponseError,
            f"{what} answered {ctype or 'no content type'}, expected {' or '.join(expected)}: "
            f"{_snippet(raw)}",
            details={"reason": "content_type"},
        )

    def _reply_error(self, exc: BaseException, what: str) -> ProviderError:
        """The error for a failed :class:`Transport` call (see its module's doc)."""
        if isinstance(exc, TimeoutError):
            partial = isinstance(exc, TransportTimeoutError) and exc.partial
            reply = "complete reply" if partial else "reply"
            return self.error(ProviderTimeoutError, f"{what}: no {reply} within {self.timeout:g}s")
        if isinstance(exc, IncompleteReplyError):
            return self.error(
                ProviderResponseError,
                f"{what}: the reply body was cut off ({type(exc).__name__})",
                details={"reason": "truncated"},
            )
        if isinstance(exc, ReplyTooLargeError):
            return self.error(ProviderResponseError, f"{what}: {exc}", details={"reason": "too_large"})
        if isinstance(exc, MalformedReplyError):
            return self.error(ProviderResponseError, f"{what}: bad HTTP reply ({exc})")
        return self.error(ProviderUnavailableError, f"{what}: cannot reach the server ({type(exc).__name__})")

    def _transport_error(self, exc: BaseException, what: str) -> ProviderError | ConfigurationError:
        if isinstance(exc, TimeoutError):
            return self.error(ProviderTimeoutError, f"{what}: no reply within {self.timeout:g}s")
        if isinstance(exc, aiohttp.InvalidURL):
            return ConfigurationError(self.redact(f"{self.provider}: invalid base URL {self.base_url!r}"))
        if isinstance(exc, aiohttp.ClientConnectionError | OSError):
            return self.error(
                ProviderUnavailableError, f"{what}: cannot reach the server ({type(exc).__name__})"
            )
        return self.error(ProviderResponseError, f"{what}: bad HTTP reply ({type(exc).__name__})")


async def _drain(response: aiohttp.ClientResponse) -> bool:
    """Read what follows a stream's last event (usually just the end of the body).

    True when the body ended within :data:`DRAIN_SECONDS` and :data:`DRAIN_BYTES`,
    so the connection may go back to the pool.
    """
    left = DRAIN_BYTES
    with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while left > 0 and not response.content.at_eof():
                left -= len(await response.content.readany())
    return response.content.at_eof()


def _content_type(response: aiohttp.ClientResponse) -> str:
    return response.content_type.lower() if "Content-Type" in response.headers else ""


def _reply_content_type(reply: Reply) -> str:
    """The media type of a reply (``application/json``), lower case; ``""`` if none."""
    value = reply.headers.get("content-type")
    return "" if value is None else value.partition(";")[0].strip().lower()
