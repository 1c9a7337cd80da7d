"""One HTTP/1.1 client connection: an :class:`asyncio.Protocol` that sends a request
and parses its reply with ``httptools``, the reply itself, and the errors a reply
can end in. :mod:`brickwork.providers._transport` pools these connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Final, cast

import httptools

if TYPE_CHECKING:
    from brickwork.providers._transport import _Pool

__all__ = [
    "MAX_HEAD",
    "Headers",
    "IncompleteReplyError",
    "MalformedReplyError",
    "PoolClosedError",
    "Reply",
    "ReplyTooLargeError",
    "ServerDisconnectedError",
    "TransportTimeoutError",
]

#: The most bytes a status line and headers may take.
MAX_HEAD: Final = 256 * 1024


# --- errors --------------------------------------------------------------------


class MalformedReplyError(Exception):
    """The server's reply is not HTTP/1.x we can read (bad status line, bad
    framing, a protocol switch, headers or body past their limits)."""


class ReplyTooLargeError(MalformedReplyError):
    """The reply body is larger than the transport's ``max_body``."""


class ServerDisconnectedError(ConnectionResetError):
    """The connection ended before a single byte of the reply arrived."""


class IncompleteReplyError(ConnectionError):
    """The connection ended in the middle of the reply (the body was cut off)."""


class PoolClosedError(ConnectionAbortedError):
    """:meth:`Transport.aclose` was called while this call was waiting or running."""


class TransportTimeoutError(TimeoutError):
    """No complete reply within the call's time.

    Attributes:
        partial: whether part of the reply (at least its first byte) had arrived.
    """

    def __init__(self, message: str, *, partial: bool = False) -> None:
        super().__init__(message)
        self.partial = partial


class _Stop(Exception):
    """Raised inside a parser callback to stop parsing (the reason is kept apart)."""


# --- the reply -----------------------------------------------------------------


class Headers(Mapping[str, str]):
    """A reply's headers, looked up by name in any case; repeated headers joined
    by ``", "``. Names iterate in lower case."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw  # (lower-case name, value), in order received

    def __getitem__(self, key: str) -> str:
        name = key.lower().encode("latin-1")
        value: bytes | None = None
        for k, v in self._raw:
            if k == name:
                value = v if value is None else value + b", " + v
        if value is None:
            raise KeyError(key)
        return value.decode("utf-8", "surrogateescape")

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        name = key.lower().encode("latin-1")
        return any(k == name for k, _ in self._raw)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k.decode("latin-1") for k, _ in self._raw))

    def __len__(self) -> int:
        return len({k for k, _ in self._raw})

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"

    def raw(self) -> list[tuple[bytes, bytes]]:
        """The headers as received: ``(lower-case name, value)`` byte pairs."""
        return list(self._raw)


class Reply:
    """A whole reply: status, headers and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Reply(status={self.status}, {len(self.body)} bytes)"


# --- one connection ------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection and the parser of its replies (one call at a time)."""

    __slots__ = (
        "_lost",
        "alive",
        "chunks",
        "done",
        "error",
        "fut",
        "got",
        "head_done",
        "head_only",
        "headers",
        "idle",
        "idle_since",
        "keep",
        "max_body",
        "parser",
        "pool",
        "served",
        "size",
        "status",
        "trailer_bytes",
        "transport",
        "version_ok",
    )

    def __init__(self, pool: _Pool, max_body: int) -> None:
        self.pool = pool
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.fut: asyncio.Future[Reply] | None = None
        self.alive = True  # open, and in step with the server
        self.idle = False  # in the pool's idle list
        self.idle_since = 0.0
        self.served = 0  # whole replies read on this connection
        self._lost: asyncio.Future[None] | None = None
        self._reset(head_only=False)

    def _reset(self, *, head_only: bool) -> None:
        self.head_only = head_only
        self.got = 0  # bytes of the current reply received
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.trailer_bytes = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.head_done = False
        self.version_ok = False
        self.done = False  # the current reply is complete
        self.keep = False  # ... and the connection may serve another
        self.error: BaseException | None = None

    # --- driving one exchange ----------------------------------------------------

    def send(
        self, loop: asyncio.AbstractEventLoop, data: bytes, body: bytes | None, head_only: bool
    ) -> asyncio.Future[Reply]:
        self._reset(head_only=head_only)
        fut: asyncio.Future[Reply] = loop.create_future()
        self.fut = fut
        transport = self.transport
        assert transport is not None
        if body is None:
            transport.write(data)
        else:
            transport.writelines((data, body))
        return fut

    def expire(self, fut: asyncio.Future[Reply], seconds: float | None) -> None:
        if not fut.done():
            partial = self.got > 0
            what = "no complete reply" if partial else "no reply"
            self.fail(TransportTimeoutError(f"{what} within {seconds or 0:g}s", partial=partial))

    def fail(self, exc: BaseException) -> None:
        """End the current call with ``exc`` and drop the connection."""
        self.alive = False
        if self.transport is not None:
            self.transport.abort()
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()

    def abandon(self) -> None:
        """The caller gave up (cancelled, timed out): drop the connection now."""
        self.alive = False
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        fut = self.fut
        if fut is None or self.done:
            # Bytes nobody asked for (or past the reply's end): out of step, drop it.
            self.close()
            return
        self.got += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self.fail(self.error or MalformedReplyError(f"bad HTTP reply: {exc}"))
        except httptools.HttpParserUpgrade:
            self.fail(MalformedReplyError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self.fail(MalformedReplyError(f"bad HTTP reply: {exc}"))
        else:
            if not self.head_done and self.got > MAX_HEAD:
                self.fail(MalformedReplyError(f"the reply's head passed {MAX_HEAD} bytes"))

    def eof_received(self) -> bool:
        return False  # close; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self.idle:
            self.pool.forget_idle(self)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        fut = self.fut
        if fut is None or fut.done():
            return
        framed_by_close = self.head_done and self.status >= 200 and self._close_delimited()
        if framed_by_close and not self.done and exc is None:
            self._finish()  # a body framed by the close: ended by a clean close, not a reset
        elif self.got == 0:
            error = ServerDisconnectedError(
                "the server closed the connection without replying"
                + (f" ({type(exc).__name__})" if exc is not None else "")
            )
            error.__cause__ = exc
            fut.set_exception(error)
        else:
            error2 = IncompleteReplyError(
                "the connection closed before the reply was complete"
                + (f" ({type(exc).__name__})" if exc is not None else "")
            )
            error2.__cause__ = exc
            fut.set_exception(error2)

    def wait_closed(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Done once :meth:`connection_lost` ran (ask before closing the transport)."""
        if self._lost is None:
            self._lost = loop.create_future()
        return self._lost

    def _close_delimited(self) -> bool:
        return not any(k in (b"content-length", b"transfer-encoding") for k, _ in self.headers)

    # --- httptools callbacks -----------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            self.error = MalformedReplyError("data after the end of the reply")
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            # A chunked reply's trailer: never mixed into the reply's headers (it
            # could change what Content-Type or Retry-After appear to be), and
            # bounded like the head.
            self.trailer_bytes += len(name) + len(value)
            if self.trailer_bytes > MAX_HEAD:
                self.error = MalformedReplyError(f"the reply's trailer passed {MAX_HEAD} bytes")
                raise _Stop
            return
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.status = parser.get_status_code()
        self.head_done = True
        self.version_ok = parser.get_http_version() == "1.1"
        if self.head_only and self.status >= 200:
            # A reply to HEAD has no body whatever its headers say; the parser does
            # not know the method, so stop here and never reuse the connection.
            self.keep = False
            self._finish()
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            self.error = ReplyTooLargeError(f"the reply body passed {self.max_body} bytes")
            raise _Stop
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:  # an interim 1xx reply: the real one follows
            self.headers = []
            self.chunks = []
            self.size = 0
            self.head_done = False
            return
        self.keep = self.version_ok and self.parser.should_keep_alive()
        self._finish()
        if not self.keep:
            self.close()

    def _finish(self) -> None:
        self.done = True
        fut = self.fut
        if fut is not None and not fut.done():
            chunks = self.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            fut.set_result(Reply(self.status, Headers(self.headers), body))
