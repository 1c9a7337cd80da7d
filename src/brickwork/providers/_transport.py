"""A small HTTP/1.1 client for whole request/reply calls to one origin.

:class:`Transport` is what :class:`~brickwork.providers.http.HttpClient` uses for
its non-streaming JSON calls: ``asyncio`` protocols and the ``llhttp`` parser of
:mod:`httptools`, nothing else, so one call costs a fraction of the CPU an
:mod:`aiohttp` session spends on it. It does less, on purpose:

- one origin (scheme, host, port of a base URL); ``http`` and ``https`` (TLS with
  :func:`ssl.create_default_context`, certificate and host name checked, SNI);
- a bounded pool of keep-alive connections (callers queue in FIFO order when all
  are busy; the most recently used idle connection is reused first); a connection
  is dropped when the server says ``Connection: close``, on an HTTP/1.0 reply, on
  any parse error, after a timeout or a cancellation mid-call: a connection whose
  reply was not read to its end is never reused;
- replies framed by ``Content-Length``, chunked encoding or the end of the
  connection; the whole body is read into memory, up to ``max_body`` bytes;
- ``Accept-Encoding: identity``: no decompression is needed, none is done;
- one timeout for the whole call (waiting for a connection, connecting, sending,
  reading), and a connect timeout;
- one transparent retry of an idempotent request (GET, HEAD, PUT, DELETE …) when
  a *reused* idle connection turns out to have been closed by the server before a
  single byte of the reply came back (the keep-alive race); never once a reply
  byte arrived, and never for a POST, which the server may have run already;

Not supported: proxies, redirects, compressed replies, streaming bodies, HTTP/2,
``Expect: 100-continue``, credentials in the URL.

Failures are :class:`OSError` (refused, reset, TLS, DNS), :class:`TimeoutError`
(:class:`TransportTimeoutError`) and :class:`MalformedReplyError` (not HTTP, or a
body past the limit); a reply cut off mid-way is :class:`IncompleteReplyError`.

A transport belongs to the event loop it was first used on. Once that loop is
closed, the next call forgets its connections and binds to the running loop;
using it from a second live loop raises :class:`RuntimeError`. :meth:`aclose`
closes every connection; a later call opens new ones.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Final

from brickwork.providers._http1 import (
    Headers,
    IncompleteReplyError,
    MalformedReplyError,
    PoolClosedError,
    Reply,
    ReplyTooLargeError,
    ServerDisconnectedError,
    TransportTimeoutError,
    _Conn,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "Headers",
    "IncompleteReplyError",
    "MalformedReplyError",
    "PoolClosedError",
    "Reply",
    "ReplyTooLargeError",
    "ServerDisconnectedError",
    "Transport",
    "TransportTimeoutError",
]

#: The largest reply body read by default (64 MiB).
DEFAULT_MAX_BODY: Final = 64 * 1024 * 1024
#: Idle keep-alive connections older than this are closed rather than reused.
DEFAULT_KEEPALIVE_EXPIRY: Final = 15.0
#: Bodies below this are sent in one write together with the head.
_JOIN_BELOW = 16 * 1024
#: Headers the transport writes itself; a caller may not set them.
_RESERVED = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "te"})
#: Methods that announce an empty body with ``Content-Length: 0``.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Only these are sent again after the keep-alive race (as aiohttp does): a POST the
#: server dropped may already have run (and been billed) before the connection died.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PATH_SAFE = "/?#[]@!$&'()*+,;=:-._~%"
_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- the pool ------------------------------------------------------------------


class _Pool:
    """The connections of one transport on one event loop."""

    __slots__ = ("closed", "conns", "count", "idle", "loop", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: list[_Conn] = []  # LIFO
        self.conns: set[_Conn] = set()  # every open connection
        self.count = 0  # slots taken: open connections and connections being opened
        self.waiters: collections.deque[asyncio.Future[_Conn | None]] = collections.deque()
        self.closed = False

    def forget_idle(self, conn: _Conn) -> None:
        """An idle connection the server closed: out of the pool, its slot freed."""
        conn.idle = False
        try:
            self.idle.remove(conn)
        except ValueError:
            return
        self.discard(conn)

    def discard(self, conn: _Conn) -> None:
        """Close ``conn`` (if open) and give its slot to the next waiter."""
        conn.close()
        if conn in self.conns:
            self.conns.discard(conn)
            self.free_slot()

    def free_slot(self) -> None:
        self.count -= 1
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                self.count += 1
                waiter.set_result(None)  # a slot: open a connection
                return

    def release(self, conn: _Conn) -> None:
        """The call on ``conn`` is over: keep it for the next, or drop it."""
        conn.fut = None
        if not (conn.alive and conn.keep) or self.closed:
            self.discard(conn)
            return
        conn.served += 1
        self.put(conn)

    def put(self, conn: _Conn) -> None:
        """A reusable connection: to the first waiter, else to the idle list."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle = True
        conn.idle_since = self.loop.time()
        self.idle.append(conn)


# --- the transport -------------------------------------------------------------


class Transport:
    """Keep-alive HTTP/1.1 calls to the origin of ``base_url``.

    Args:
        base_url: ``http(s)://host[:port][/path]``; ``path`` prefixes every call's path.
        headers: sent with every request (``Authorization`` goes here).
        max_connections: the most connections open at once (``0``: no limit).
        timeout: default seconds for a whole call (``None``: no limit).
        connect_timeout: seconds to open a connection, TLS included (default:
            ``timeout``); never past the call's own deadline.
        max_body: the largest reply body read, in bytes.
        keepalive_expiry: idle connections older than this are not reused.
        ssl_context: for ``https`` (default: :func:`ssl.create_default_context`,
            made on the first connection).
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
        timeout: float | None = 60.0,
        connect_timeout: float | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        keepalive_expiry: float | None = DEFAULT_KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in _DEFAULT_PORTS or not url.hostname:
            raise ValueError(f"the base URL must be http(s)://host[:port][/path], got {base_url[:80]!r}")
        if url.username is not None or url.password is not None:
            raise ValueError("credentials in the base URL are not supported; send an Authorization header")
        if max_connections < 0:
            raise ValueError(f"max_connections must be >= 0, got {max_connections}")
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if max_body < 0:
            raise ValueError(f"max_body must be >= 0, got {max_body}")
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port or _DEFAULT_PORTS[url.scheme]
        self.base_path = url.path.rstrip("/")
        self.max_connections = max_connections
        self.timeout = timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self.max_body = max_body
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != _DEFAULT_PORTS[self.scheme]:
            host = f"{host}:{self.port}"
        given = dict(headers or {})
        fixed = {"Host": host}
        if not any(k.lower() == "user-agent" for k in given):
            fixed["User-Agent"] = "brickwork"
        if not any(k.lower() == "accept" for k in given):
            fixed["Accept"] = "*/*"
        fixed["Accept-Encoding"] = "identity"
        self._fixed = _encode_fields(fixed, allow_reserved=True) + _encode_fields(given)
        self._lines: dict[tuple[str, str], bytes] = {}  # request lines, by (method, path)
        self._ctypes: dict[str, bytes] = {}  # Content-Type lines, by value
        self._pool: _Pool | None = None

    def __repr__(self) -> str:
        return f"Transport({self.scheme}://{self.host}:{self.port}{self.base_path})"

    @property
    def closed(self) -> bool:
        """True before the first call and after :meth:`aclose`."""
        return self._pool is None

    @property
    def open_connections(self) -> int:
        """Connections open now, idle or busy (on the loop in use)."""
        return 0 if self._pool is None else len(self._pool.conns)

    @property
    def idle_connections(self) -> int:
        return 0 if self._pool is None else len(self._pool.idle)

    # --- calls -------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = -1.0,  # noqa: ASYNC109 - a deadline on the reply, not a cancellation
    ) -> Reply:
        """Send one request and read the whole reply.

        Args:
            method: ``GET``, ``POST``, ...
            path: after the base URL's path (``/chat/completions``), query included.
            body: the request body (``Content-Length`` is set from it).
            content_type: sent as ``Content-Type`` (with a body).
            headers: more headers for this call only.
            timeout: seconds for the whole call; default the transport's; ``None``: no limit.

        Raises:
            TransportTimeoutError: no complete reply in time.
            OSError: the server cannot be reached, or closed the connection
                (:class:`ServerDisconnectedError`, :class:`IncompleteReplyError`).
            MalformedReplyError: the reply is not readable HTTP, or too large.
        """
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            pool = self._bind(loop)
        if timeout is not None and timeout < 0:
            timeout = self.timeout
        deadline = None if timeout is None else loop.time() + timeout

        line = self._lines.get((method, path))
        if line is None:
            line = self._request_line(method, path)
        parts = [line, self._fixed]
        if headers:
            parts.append(_encode_fields(headers))
        if content_type is not None:
            ctype = self._ctypes.get(content_type)
            if ctype is None:
                ctype = _encode_fields({"Content-Type": content_type})
                if len(self._ctypes) < 16:
                    self._ctypes[content_type] = ctype
            parts.append(ctype)
        if body is not None:
            parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
        elif method in _BODY_METHODS:
            parts.append(b"Content-Length: 0\r\n\r\n")
        else:
            parts.append(b"\r\n")
        data = b"".join(parts)
        if body is not None and len(body) < _JOIN_BELOW:
            data += body
            body = None
        head_only = method == "HEAD"

        for attempt in (0, 1):
            conn = self._idle_conn(pool, loop)
            if conn is None:
                conn = await self._new_or_waited(pool, loop, deadline, timeout)
            reused = conn.served > 0
            fut = conn.send(loop, data, body, head_only)
            timer = None if deadline is None else loop.call_at(deadline, conn.expire, fut, timeout)
            try:
                return await fut
            except ServerDisconnectedError:
                if attempt == 0 and reused and conn.got == 0 and method in _IDEMPOTENT:
                    continue  # the keep-alive race: try once more, on another connection
                raise
            except BaseException:
                if not conn.done:  # cancelled, or failed: never reuse a half-read reply
                    conn.abandon()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                pool.release(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Close every connection (calls in flight fail); a later call opens new ones."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.closed = True
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosedError("the transport was closed"))
        pool.idle.clear()
        conns = list(pool.conns)
        pool.conns.clear()
        if pool.loop.is_closed():
            for conn in conns:  # its loop is gone: nothing can be awaited
                _abort_quietly(conn)
            return
        if asyncio.get_running_loop() is not pool.loop:  # closed from another thread's loop
            for conn in conns:
                pool.loop.call_soon_threadsafe(conn.fail, PoolClosedError("the transport was closed"))
            return
        waits = []
        for conn in conns:
            conn.idle = False
            if conn.transport is not None and not conn.transport.is_closing():
                waits.append(conn.wait_closed(pool.loop))
            conn.fail(PoolClosedError("the transport was closed"))
        if waits:
            await asyncio.wait(waits, timeout=1.0)

    # --- internals -----------------------------------------------------------------

    def _bind(self, loop: asyncio.AbstractEventLoop) -> _Pool:
        old = self._pool
        if old is not None:
            if not old.loop.is_closed():
                raise RuntimeError(f"{self!r} is used from two running event loops; create one per loop")
            for conn in list(old.conns):  # its loop is gone, its sockets with it
                _abort_quietly(conn)
        pool = self._pool = _Pool(loop)
        return pool

    def _request_line(self, method: str, path: str) -> bytes:
        if not method or not set(method) <= _TOKEN_CHARS:
            raise ValueError(f"invalid HTTP method {method!r}")
        target = self.base_path + path
        if not target.startswith("/"):
            target = "/" + target
        if not (target.isascii() and target.isprintable()) or " " in target:
            target = urllib.parse.quote(target, safe=_PATH_SAFE)
        line = f"{method} {target} HTTP/1.1\r\n".encode("ascii")
        if len(self._lines) < 256:
            self._lines[(method, path)] = line
        return line

    def _idle_conn(self, pool: _Pool, loop: asyncio.AbstractEventLoop) -> _Conn | None:
        idle = pool.idle
        expiry = self.keepalive_expiry
        while idle:
            conn = idle.pop()
            conn.idle = False
            if conn.alive and not (expiry is not None and loop.time() - conn.idle_since > expiry):
                transport = conn.transport
                if transport is not None and not transport.is_closing():
                    return conn
            pool.discard(conn)
        return None

    async def _new_or_waited(
        self, pool: _Pool, loop: asyncio.AbstractEventLoop, deadline: float | None, seconds: float | None
    ) -> _Conn:
        """A connection handed over by a finished call, or a new one."""
        while True:
            if pool.closed:
                raise PoolClosedError("the transport was closed")
            if not self.max_connections or pool.count < self.max_connections:
                pool.count += 1
                return await self._connect(pool, loop, deadline, seconds)
            waiter: asyncio.Future[_Conn | None] = loop.create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    got = await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    handed = waiter.result()  # handed over just as we gave up: pass it on
                    if handed is None:
                        pool.free_slot()
                    elif handed.alive and not pool.closed:
                        pool.put(handed)
                    else:
                        pool.discard(handed)
                else:
                    with contextlib.suppress(ValueError):
                        pool.waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    raise TransportTimeoutError(
                        f"no free connection within {seconds or 0:g}s (all {self.max_connections} busy)"
                    ) from exc
                raise
            if got is None:  # a slot: open a connection in it
                return await self._connect(pool, loop, deadline, seconds)
            if got.alive and got.transport is not None and not got.transport.is_closing():
                return got
            pool.discard(got)  # died on the way: try again

    async def _connect(
        self, pool: _Pool, loop: asyncio.AbstractEventLoop, deadline: float | None, seconds: float | None
    ) -> _Conn:
        """Open a connection in a slot already taken (given back on failure)."""
        limit = deadline
        by_connect = False
        if self.connect_timeout is not None:
            own = loop.time() + self.connect_timeout
            by_connect = limit is None or own < limit
            limit = own if by_connect else limit
        ctx = None
        if self.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        try:
            async with asyncio.timeout_at(limit):
                _, conn = await loop.create_connection(
                    lambda: _Conn(pool, self.max_body),
                    self.host,
                    self.port,
                    ssl=ctx,
                    server_hostname=self.host if ctx is not None else None,
                )
        except BaseException as exc:
            pool.free_slot()
            if isinstance(exc, TimeoutError) and not isinstance(exc, TransportTimeoutError):
                spent = self.connect_timeout if by_connect else seconds
                raise TransportTimeoutError(f"could not connect within {spent or 0:g}s") from exc
            raise
        if pool.closed:
            conn.close()
            pool.count -= 1
            raise PoolClosedError("the transport was closed")
        pool.conns.add(conn)
        return conn


def _encode_fields(fields: Mapping[str, str], *, allow_reserved: bool = False) -> bytes:
    out = []
    for name, value in fields.items():
        if not name or not set(name) <= _TOKEN_CHARS:
            raise ValueError(f"invalid header name {name!r}")
        if not allow_reserved and name.lower() in _RESERVED:
            raise ValueError(f"header {name!r} is set by the transport")
        value = str(value)
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name!r} has a line break in its value")
        out.append(f"{name}: {value.strip()}\r\n")
    return "".join(out).encode("utf-8")


def _abort_quietly(conn: _Conn) -> None:
    """Drop a connection whose event loop may be closed already."""
    conn.alive = False
    conn.idle = False
    transport = conn.transport
    if transport is None:
        return
    try:
        transport.abort()
    except RuntimeError:  # its loop is closed: abort() could not schedule the socket's close
        # asyncio's own transports close their socket in _call_connection_lost: run it
        # now, or the socket waits for the garbage collector (and warns). uvloop closes
        # its handles with the loop.
        lost = getattr(transport, "_call_connection_lost", None)
        if callable(lost):
            with contextlib.suppress(Exception):
                lost(None)
