"""The HTTP/1.1 transport of whole JSON calls, against real local servers.

Every scenario runs on the default asyncio loop and on uvloop (what the gateway
runs on). The servers are raw asyncio servers, so a test decides every byte of a
reply: framing, keep-alive, resets, malformed heads.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop

from brickwork.contracts.errors import (
    ProviderRateLimitedError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from brickwork.providers import http as http_module
from brickwork.providers._transport import (
    Headers,
    IncompleteReplyError,
    MalformedReplyError,
    PoolClosedError,
    ReplyTooLargeError,
    ServerDisconnectedError,
    Transport,
    TransportTimeoutError,
)
from brickwork.providers.http import HttpClient

JSON = b'{"ok": true}'

# --- running a scenario on each loop ------------------------------------------------

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    def runner(scenario: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as r:
            r.run(asyncio.wait_for(scenario, 20))

    return runner


# --- a server that says exactly what a test tells it to ------------------------------


@dataclass
class Req:
    conn: int  # which connection (0, 1, ...)
    n: int  # which request on that connection
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    head: bytes


Handler = Callable[[Req, asyncio.StreamWriter], Awaitable[bool]]  # True: keep the connection


@dataclass
class Server:
    handler: Handler
    tls: ssl.SSLContext | None = None
    requests: list[Req] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    max_open: int = 0
    eofs: int = 0  # connections the client closed
    got_request: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.tls)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn, self.connections = self.connections, self.connections + 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        try:
            for n in range(1000):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.eofs += 1
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                req = Req(conn, n, method, path, headers, body, head)
                self.requests.append(req)
                self.got_request.set()
                if not await self.handler(req, writer):
                    return
        except asyncio.CancelledError:
            pass
        finally:
            self.open_now -= 1
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()


def reply(
    body: bytes = JSON,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    version: str = "1.1",
    length: bool = True,
) -> bytes:
    fields = {"Content-Type": "application/json", **(headers or {})}
    if length:
        fields["Content-Length"] = str(len(body))
    head = f"HTTP/{version} {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode() + b"\r\n" + body


def chunked(*pieces: bytes) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return out + b"0\r\n\r\n"


async def ok(req: Req, writer: asyncio.StreamWriter) -> bool:
    writer.write(reply(b'{"path": "%s"}' % req.path.encode()))
    return True


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --- keep-alive and the pool -----------------------------------------------------------


def test_sequential_calls_share_one_connection(run: Run) -> None:
    async def scenario() -> None:
        async with Server(ok) as server:
            t = Transport(server.url + "/v1", headers={"Authorization": "Bearer k"})
            for i in range(20):
                r = await t.request("POST", f"/call/{i}", b"{}", content_type="application/json")
                assert (r.status, r.body) == (200, b'{"path": "/v1/call/%d"}' % i)
            assert server.connections == 1
            assert t.open_connections == t.idle_connections == 1
            await t.aclose()
            assert t.closed
            assert t.open_connections == 0
            await asyncio.sleep(0.01)
            assert server.eofs == 1  # the server saw it close

    run(scenario())


def test_the_request_head(run: Run) -> None:
    async def scenario() -> None:
        async with Server(ok) as server:
            t = Transport(server.url + "/v1/", headers={"Authorization": "Bearer k", "X-Fixed": "1"})
            await t.request(
                "POST", "/chat?x=1", b'{"a": 1}', content_type="application/json", headers={"X-Call": "2"}
            )
            await t.request("GET", "/models")
            await t.request("POST", "/empty")
            await t.aclose()
        post, get, empty = server.requests
        assert (post.method, post.path, post.body) == ("POST", "/v1/chat?x=1", b'{"a": 1}')
        assert post.headers["host"] == f"127.0.0.1:{server.port}"
        assert post.headers["authorization"] == "Bearer k"
        assert post.headers["x-fixed"] == "1"
        assert post.headers["x-call"] == "2"
        assert post.headers["content-type"] == "application/json"
        assert post.headers["content-length"] == "8"
        assert post.headers["accept-encoding"] == "identity"
        assert post.head.startswith(b"POST /v1/chat?x=1 HTTP/1.1\r\n")
        assert "content-length" not in get.headers  # no body, none announced
        assert "content-type" not in get.headers
        assert empty.headers["content-length"] == "0"

    run(scenario())


def test_a_large_request_body(run: Run) -> None:
    async def echo(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply(req.body))
        return True

    async def scenario() -> None:
        async with Server(echo) as server:
            t = Transport(server.url)
            for size in (0, 100, 16 * 1024, 3 * 1024 * 1024):
                body = bytes(range(256)) * (size // 256)
                assert (await t.request("POST", "/", body)).body == body
            assert server.connections == 1
            await t.aclose()

    run(scenario())


def test_max_connections_holds_under_concurrency(run: Run) -> None:
    async def slow(req: Req, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(reply(req.path.encode()))
        return True

    async def scenario() -> None:
        async with Server(slow) as server:
            t = Transport(server.url, max_connections=3)
            bodies = await asyncio.gather(*(t.request("GET", f"/{i}") for i in range(30)))
            assert [b.body for b in bodies] == [f"/{i}".encode() for i in range(30)]
            assert server.connections == 3
            assert server.max_open == 3
            assert t.open_connections == 3
            await t.aclose()

    run(scenario())


def test_a_call_waiting_for_a_connection_times_out_or_is_cancelled_cleanly(run: Run) -> None:
    async def slow(req: Req, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.3)
        writer.write(reply())
        return True

    async def scenario() -> None:
        async with Server(slow) as server:
            t = Transport(server.url, max_connections=1)
            first = asyncio.create_task(t.request("GET", "/a", timeout=5))
            await server.got_request.wait()
            with pytest.raises(TransportTimeoutError, match="no free connection"):
                await t.request("GET", "/b", timeout=0.05)
            waiting = asyncio.create_task(t.request("GET", "/c"))
            await asyncio.sleep(0.02)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert (await first).status == 200
            assert (await t.request("GET", "/d")).status == 200  # the slot came back
            assert server.connections == 1
            assert [r.path for r in server.requests] == ["/a", "/d"]
            await t.aclose()

    run(scenario())


def test_chunked_replies_and_reuse_after_them(run: Run) -> None:
    async def chunks(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply(length=False, headers={"Transfer-Encoding": "chunked"})[: -len(JSON)])
        for piece in (b'{"a": ', b'"', b"x" * 5000, b'"}'):
            writer.write(chunked(piece)[:-5])  # without the last-chunk marker
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")
        return True

    async def scenario() -> None:
        async with Server(chunks) as server:
            t = Transport(server.url)
            for _ in range(3):
                r = await t.request("GET", "/")
                assert r.body == b'{"a": "' + b"x" * 5000 + b'"}'
                assert r.headers["transfer-encoding"] == "chunked"
            assert server.connections == 1
            await t.aclose()

    run(scenario())


def test_connection_close_and_http_10_replies_are_not_reused(run: Run) -> None:
    async def closing(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.path == "/close":
            writer.write(reply(headers={"Connection": "close"}))
            return False
        writer.write(reply(version="1.0", headers={"Connection": "keep-alive"}))
        return True  # the server would go on, the client must not

    async def scenario() -> None:
        async with Server(closing) as server:
            t = Transport(server.url)
            for path in ("/close", "/close", "/http10", "/http10"):
                assert (await t.request("GET", path)).body == JSON
            assert server.connections == 4
            await t.aclose()

    run(scenario())


def test_a_body_ended_by_the_connection_close(run: Run) -> None:
    async def until_close(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        writer.write(b'{"long": "')
        await writer.drain()
        writer.write(b'body"}')
        return False

    async def scenario() -> None:
        async with Server(until_close) as server:
            t = Transport(server.url)
            assert (await t.request("GET", "/")).body == b'{"long": "body"}'
            assert (await t.request("GET", "/")).body == b'{"long": "body"}'
            assert server.connections == 2
            await t.aclose()

    run(scenario())


def test_interim_1xx_replies_are_skipped(run: Run) -> None:
    async def hints(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n" + reply(status=201))
        return True

    async def scenario() -> None:
        async with Server(hints) as server:
            t = Transport(server.url)
            r = await t.request("GET", "/")
            assert (r.status, r.body, "link" in r.headers) == (201, JSON, False)
            assert (await t.request("GET", "/")).status == 201
            assert server.connections == 1
            await t.aclose()

    run(scenario())


def test_a_head_reply_has_no_body(run: Run) -> None:
    async def head(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply()[: -len(JSON)])  # Content-Length says 12, no body follows
        return True

    async def scenario() -> None:
        async with Server(head) as server:
            t = Transport(server.url)
            r = await t.request("HEAD", "/")
            assert (r.status, r.body, r.headers["content-length"]) == (200, b"", "12")
            await t.aclose()

    run(scenario())


# --- the keep-alive race, resets, cut bodies ------------------------------------------------


def test_a_reused_connection_the_server_had_closed_is_retried_once(run: Run) -> None:
    async def stale(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.n == 1:  # the second request on a connection: it "had" closed it already
            return False
        writer.write(reply())
        return True

    async def scenario() -> None:
        async with Server(stale) as server:
            t = Transport(server.url)
            assert (await t.request("PUT", "/one", b"1")).body == JSON
            assert (await t.request("PUT", "/two", b"2")).body == JSON
            assert [(r.conn, r.path, r.body) for r in server.requests] == [
                (0, "/one", b"1"),
                (0, "/two", b"2"),  # closed without a reply ...
                (1, "/two", b"2"),  # ... sent again, once, on a new connection
            ]
            await t.aclose()

    run(scenario())


def test_a_post_the_server_dropped_is_never_sent_twice(run: Run) -> None:
    # The server may have run it (a model call, billed) before the connection died:
    # the caller gets the error, and its own retry policy decides.
    async def drops_second(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.n == 1:
            return False
        writer.write(reply())
        return True

    async def scenario() -> None:
        async with Server(drops_second) as server:
            t = Transport(server.url)
            assert (await t.request("POST", "/one", b"1")).body == JSON
            with pytest.raises(ServerDisconnectedError):
                await t.request("POST", "/two", b"2")
            assert [(r.conn, r.path) for r in server.requests] == [(0, "/one"), (0, "/two")]
            await t.aclose()

    run(scenario())


def test_the_retry_happens_only_once_and_never_on_a_new_connection(run: Run) -> None:
    async def hangs_up(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.path == "/ok":
            writer.write(reply())
            return True
        return False

    async def scenario() -> None:
        async with Server(hangs_up) as server:
            t = Transport(server.url)
            fresh = Transport(server.url)
            with pytest.raises(ServerDisconnectedError):
                await fresh.request("GET", "/fresh")  # a new connection: no retry
            await fresh.aclose()
            assert len(server.requests) == 1
            await t.request("GET", "/ok")  # conn 1, kept
            with pytest.raises(ServerDisconnectedError):
                await t.request("GET", "/again")  # conn 1 reused, then conn 2: both hang up
            assert [r.path for r in server.requests] == ["/fresh", "/ok", "/again", "/again"]
            assert t.open_connections == 0
            await t.aclose()

    run(scenario())


def test_a_reset_mid_reply_is_not_retried(run: Run) -> None:
    async def cut(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.n == 0:
            writer.write(reply())
            return True
        writer.write(reply(b'{"partial": "' + b"x" * 100)[:-50])
        await writer.drain()
        await asyncio.sleep(0.01)
        reset(writer)
        return False

    async def scenario() -> None:
        async with Server(cut) as server:
            t = Transport(server.url)
            await t.request("POST", "/a", b"1")
            with pytest.raises(IncompleteReplyError):
                await t.request("POST", "/b", b"2")
            assert [r.path for r in server.requests] == ["/a", "/b"]  # sent once
            assert t.open_connections == 0
            await t.aclose()

    run(scenario())


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\n", id="after-the-status-line"),
        # A body without a length ends with a clean close; a reset means it was cut.
        pytest.param(
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"choices": [1, 2',
            id="in-a-body-framed-by-the-close",
        ),
    ],
)
def test_a_reset_mid_reply_is_incomplete(run: Run, sent: bytes) -> None:
    async def cut(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(sent)
        await writer.drain()
        await asyncio.sleep(0.01)
        reset(writer)
        return False

    async def scenario() -> None:
        async with Server(cut) as server:
            t = Transport(server.url)
            with pytest.raises(IncompleteReplyError):
                await t.request("GET", "/")
            await t.aclose()

    run(scenario())


def test_a_chunked_replys_trailer_is_bounded_and_never_a_header(run: Run) -> None:
    async def trailers(req: Req, writer: asyncio.StreamWriter) -> bool:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        body = b"2\r\n{}\r\n0\r\n"
        if req.path == "/small":
            writer.write(head + body + b"Content-Type: text/html\r\nRetry-After: 99\r\n\r\n")
            return True
        writer.write(head + body)
        for _ in range(2_000):
            writer.write(b"X-Filler: " + b"y" * 200 + b"\r\n")
        writer.write(b"\r\n")
        return False

    async def scenario() -> None:
        async with Server(trailers) as server:
            t = Transport(server.url)
            small = await t.request("GET", "/small")
            assert small.body == b"{}"
            assert small.headers["content-type"] == "application/json"
            assert small.headers.get("retry-after") is None
            with pytest.raises(MalformedReplyError, match="trailer"):
                await t.request("GET", "/big")
            await t.aclose()

    run(scenario())


def test_the_body_limit(run: Run) -> None:
    async def big(req: Req, writer: asyncio.StreamWriter) -> bool:
        size = int(req.path.split("/")[2])
        if req.path.startswith("/chunked/"):
            writer.write(reply(length=False, headers={"Transfer-Encoding": "chunked"})[: -len(JSON)])
            writer.write(chunked(*[b"x" * 100] * (size // 100)))
        else:
            writer.write(reply(b"x" * size))
        return True

    async def scenario() -> None:
        async with Server(big) as server:
            t = Transport(server.url, max_body=1000)
            assert len((await t.request("GET", "/len/1000")).body) == 1000
            with pytest.raises(ReplyTooLargeError, match="passed 1000 bytes"):
                await t.request("GET", "/len/1001")
            assert len((await t.request("GET", "/chunked/1000")).body) == 1000
            with pytest.raises(ReplyTooLargeError):
                await t.request("GET", "/chunked/5000")
            assert t.open_connections == 0  # a refused body is not read to its end: dropped
            assert [r.conn for r in server.requests] == [0, 0, 1, 1]
            await t.aclose()

    run(scenario())


def test_malformed_replies(run: Run) -> None:
    heads = {
        "/status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        "/garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        "/framing": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        "/chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "/upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    }

    async def bad(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(heads[req.path])
        return True

    async def scenario() -> None:
        async with Server(bad) as server:
            t = Transport(server.url)
            for path in heads:
                with pytest.raises(MalformedReplyError):
                    await t.request("GET", path)
                assert t.open_connections == 0, path
            assert server.connections == len(heads)
            await t.aclose()

    run(scenario())


def test_bytes_after_the_reply_drop_the_connection(run: Run) -> None:
    async def chatty(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply() + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        return True

    async def scenario() -> None:
        async with Server(chatty) as server:
            t = Transport(server.url)
            assert (await t.request("GET", "/")).body == JSON
            assert (await t.request("GET", "/")).body == JSON
            assert server.connections == 2  # out of step after the first: never reused
            await t.aclose()

    run(scenario())


# --- timeouts, cancellation, closing ---------------------------------------------------


def test_a_timeout_leaves_no_reusable_broken_connection(run: Run) -> None:
    async def late(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.path == "/slow":
            await asyncio.sleep(0.3)
            writer.write(reply(b'{"late": true}'))
        elif req.path == "/half":
            writer.write(reply(b'{"half": true}')[:-5])
            await asyncio.sleep(0.3)
            writer.write(b"true}")
        else:
            writer.write(reply())
        return True

    async def scenario() -> None:
        async with Server(late) as server:
            t = Transport(server.url, timeout=0.1)
            with pytest.raises(TransportTimeoutError, match=r"no reply within 0.1s") as caught:
                await t.request("GET", "/slow")
            assert not caught.value.partial
            assert t.open_connections == 0
            assert (await t.request("GET", "/fast")).body == JSON  # not the late reply
            with pytest.raises(TransportTimeoutError, match="no complete reply") as caught:
                await t.request("GET", "/half")
            assert caught.value.partial
            assert (await t.request("GET", "/fast")).body == JSON
            assert server.connections == 3
            await t.aclose()

    run(scenario())


def test_a_call_cancelled_mid_reply_drops_its_connection(run: Run) -> None:
    async def slow(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.path == "/slow":
            writer.write(reply(b'{"x": "yz"}')[:-3])
            await asyncio.sleep(0.5)
            writer.write(b'z"}')
        else:
            writer.write(reply())
        return True

    async def scenario() -> None:
        async with Server(slow) as server:
            t = Transport(server.url)
            call = asyncio.create_task(t.request("GET", "/slow"))
            await server.got_request.wait()
            await asyncio.sleep(0.02)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert t.open_connections == 0
            with pytest.raises(TimeoutError):  # a caller's own timeout: the same
                async with asyncio.timeout(0.05):
                    await t.request("GET", "/slow")
            assert t.open_connections == 0
            assert (await t.request("GET", "/fast")).body == JSON
            assert server.connections == 3
            await t.aclose()

    run(scenario())


def test_aclose_fails_calls_in_flight_and_the_transport_reopens(run: Run) -> None:
    async def slow(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.path == "/slow":
            await asyncio.sleep(1)
        writer.write(reply())
        return True

    async def scenario() -> None:
        async with Server(slow) as server:
            t = Transport(server.url, max_connections=1)
            assert t.closed
            await t.request("GET", "/fast")
            running = asyncio.create_task(t.request("GET", "/slow"))
            waiting = asyncio.create_task(t.request("GET", "/fast"))
            await asyncio.sleep(0.05)
            await t.aclose()
            assert t.closed
            for call in (running, waiting):
                with pytest.raises(PoolClosedError):
                    await call
            assert t.open_connections == 0
            assert (await t.request("GET", "/fast")).body == JSON
            assert not t.closed
            assert server.connections == 2
            await t.aclose()
            await t.aclose()  # twice is fine

    run(scenario())


def test_idle_connections_the_server_closed_are_not_used(run: Run) -> None:
    async def one_shot(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply())
        await writer.drain()
        return False  # closes after each reply, without saying so

    async def scenario() -> None:
        async with Server(one_shot) as server:
            t = Transport(server.url)
            await t.request("GET", "/1")
            await asyncio.sleep(0.05)  # the FIN arrives while idle
            assert t.open_connections == 0
            await t.request("GET", "/2")
            assert [r.conn for r in server.requests] == [0, 1]  # no retry was needed
            await t.aclose()

    run(scenario())


def test_expired_idle_connections_are_not_reused(run: Run) -> None:
    async def scenario() -> None:
        async with Server(ok) as server:
            t = Transport(server.url, keepalive_expiry=0.05)
            await t.request("GET", "/1")
            await t.request("GET", "/2")
            await asyncio.sleep(0.1)
            await t.request("GET", "/3")
            assert [r.conn for r in server.requests] == [0, 0, 1]
            await t.aclose()

    run(scenario())


def test_connect_failures(run: Run) -> None:
    async def scenario() -> None:
        # Nothing listens: refused.
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        with pytest.raises(ConnectionRefusedError):
            await Transport(f"http://127.0.0.1:{port}").request("GET", "/")
        # A TLS handshake that never ends: the connect timeout. The listener never
        # accepts (the kernel completes the TCP handshake; nobody reads the hello),
        # so no server-side transport is left for the loop's shutdown to race with.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        try:
            port = silent.getsockname()[1]
            t = Transport(f"https://127.0.0.1:{port}", timeout=5, connect_timeout=0.1)
            with pytest.raises(TransportTimeoutError, match=r"could not connect within 0.1s"):
                await t.request("GET", "/")
            assert t.open_connections == 0
            await t.aclose()
        finally:
            silent.close()

    run(scenario())


@pytest.fixture
def threaded_server() -> Iterator[str]:
    """An :func:`ok` server on a loop of its own thread (outliving the test's loops)."""
    ready = threading.Event()
    stop: list[Callable[[], None]] = []
    url: list[str] = []

    def serve() -> None:
        async def main() -> None:
            async with Server(ok) as server:
                url.append(server.url)
                done = asyncio.Event()
                loop = asyncio.get_running_loop()
                stop.append(lambda: loop.call_soon_threadsafe(done.set))
                ready.set()
                await done.wait()

        asyncio.run(main())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert ready.wait(10)
        yield url[0]
    finally:
        for fn in stop:
            fn()
        thread.join(10)


def test_a_transport_moves_to_a_new_loop_once_the_old_one_closed(threaded_server: str) -> None:
    t = Transport(threaded_server)

    async def call() -> None:
        assert (await t.request("GET", "/")).status == 200

    for _ in range(2):
        asyncio.run(call())  # ends with its loop closed and the connection still open
        assert not t.closed

    async def last() -> None:
        await call()
        await t.aclose()  # uvloop warns of handles still open when it closes

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(last())
    assert t.closed


def test_a_transport_refuses_a_second_live_loop(threaded_server: str) -> None:
    t = Transport(threaded_server)
    errors: list[BaseException] = []

    async def main() -> None:
        await t.request("GET", "/")

        def elsewhere() -> None:
            try:
                asyncio.run(t.request("GET", "/"))
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=elsewhere)
        worker.start()
        await asyncio.to_thread(worker.join, 10)
        await t.request("GET", "/")  # still fine here
        await t.aclose()

    asyncio.run(main())
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "two running event loops" in str(errors[0])


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` only (made with the openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl CLI to make a test certificate (and no `cryptography` package)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_against_a_local_tls_server(run: Run, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate

    async def scenario() -> None:
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        async with Server(ok, tls=server_ctx) as server:
            trusting = ssl.create_default_context(cafile=str(cert))
            t = Transport(f"https://localhost:{server.port}/v1", ssl_context=trusting)
            for _ in range(3):
                assert (await t.request("GET", "/x")).body == b'{"path": "/v1/x"}'
            assert server.connections == 1
            assert server.requests[0].headers["host"] == f"localhost:{server.port}"
            await t.aclose()
            # The system's trust store does not know this certificate.
            default = Transport(f"https://localhost:{server.port}")
            with pytest.raises(ssl.SSLCertVerificationError):
                await default.request("GET", "/")
            await default.aclose()
            # Nor is the certificate good for another name than its own.
            t = Transport(f"https://127.0.0.1:{server.port}", ssl_context=trusting)
            with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
                await t.request("GET", "/")
            await t.aclose()

    run(scenario())


# --- construction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "ftp://host"}, "base URL"),
        ({"base_url": "http://"}, "base URL"),
        ({"base_url": "http://u:p@host"}, "credentials"),
        ({"headers": {"X-A": "one\r\nX-B: two"}}, "line break"),
        ({"headers": {"Bad Name": "x"}}, "invalid header name"),
        ({"headers": {"Host": "other"}}, "set by the transport"),
        ({"headers": {"Content-Length": "1"}}, "set by the transport"),
        ({"max_connections": -1}, "max_connections"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = {"base_url": "http://127.0.0.1:1", **kwargs}
    with pytest.raises(ValueError, match=match):
        Transport(**options)


def test_bad_methods_and_call_headers_are_refused(run: Run) -> None:
    async def scenario() -> None:
        t = Transport("http://127.0.0.1:1")
        with pytest.raises(ValueError, match="method"):
            await t.request("GE T", "/")
        with pytest.raises(ValueError, match="line break"):
            await t.request("GET", "/", headers={"X": "a\nb"})
        await t.aclose()

    run(scenario())


def test_headers_are_case_insensitive() -> None:
    h = Headers([(b"content-type", b"application/json"), (b"x-a", b"1"), (b"x-a", b"2")])
    assert h["Content-Type"] == h.get("CONTENT-TYPE") == "application/json"
    assert h["x-A"] == "1, 2"
    assert "X-A" in h
    assert "retry-after" not in h
    assert h.get("retry-after") is None
    assert list(h) == ["content-type", "x-a"]
    assert len(h) == 2
    assert dict(h) == {"content-type": "application/json", "x-a": "1, 2"}


# --- through HttpClient: each failure as its typed error ------------------------------------


def test_http_client_maps_transport_failures(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_module, "MAX_REPLY_BODY", 1000)

    async def script(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.path == "/v1/ok":
            writer.write(reply(headers={"Content-Type": "Application/JSON; charset=utf-8"}))
        elif req.path == "/v1/limited":
            writer.write(
                reply(b'{"error": {"message": "slow down"}}', status=429, headers={"RETRY-AFTER-MS": "1500"})
            )
        elif req.path == "/v1/bad":
            writer.write(b"HTTP/1.1 abc\r\n\r\n")
        elif req.path == "/v1/cut":
            writer.write(reply(b'{"cut": "here"}')[:-4])
            await writer.drain()
            return False
        elif req.path == "/v1/slow":
            await asyncio.sleep(1)
        elif req.path == "/v1/hangup":
            return False
        elif req.path == "/v1/big":
            writer.write(reply(b'"' + b"x" * 2000 + b'"'))
        return True

    async def scenario() -> None:
        async with Server(script) as server:
            http = HttpClient("test", server.url + "/v1", timeout=0.2, secrets=["sk-secret"])
            assert http.closed
            assert await http.request_json("GET", "/ok") == {"ok": True}
            assert not http.closed
            with pytest.raises(ProviderRateLimitedError, match="slow down") as limited:
                await http.request_json("GET", "/limited")
            assert limited.value.retry_after == 1.5
            with pytest.raises(ProviderResponseError, match="bad HTTP reply"):
                await http.request_json("GET", "/bad")
            with pytest.raises(ProviderResponseError, match="cut off") as cut:
                await http.request_json("GET", "/cut")
            assert cut.value.details["reason"] == "truncated"
            with pytest.raises(ProviderTimeoutError, match=r"GET /slow: no reply within 0.2s"):
                await http.request_json("GET", "/slow")
            with pytest.raises(ProviderUnavailableError, match="cannot reach the server"):
                await http.request_json("GET", "/hangup")
            with pytest.raises(
                ProviderResponseError, match="GET /big: the reply body passed 1000 bytes"
            ) as big:
                await http.request_json("GET", "/big")
            assert big.value.details["reason"] == "too_large"
            await http.aclose()
            assert http.closed

    run(scenario())
