"""The gateway's cost per request, against a bare proxy and the LiteLLM proxy.

One command, one run, loopback only, bounded in time::

    .venv/bin/python bench/gateway.py [--seconds 3] [--rounds 2] [--litellm 1.82.6 | --no-litellm]
        [--no-diagnostic] [--upstream-impl lean|fake] [--client lean|aiohttp]

Every server is its own process, all OpenAI-compatible, all in front of one mock
upstream (:class:`LeanUpstream`, below):

(a) the upstream, called directly — the floor;
(b) a bare pass-through: Starlette + one aiohttp session, no auth, no checks;
(c) Brickwork's full path: ``python -m brickwork.gateway`` (uvicorn, uvloop,
    httptools) with key authentication, routing to the ``passthrough-up`` plugin
    and its default policies (timeout, breaker, bulkhead), Prometheus metrics
    and the SQLite audit log (group commit, durability "process": WAL with
    ``synchronous=NORMAL``, every answered record survives a kill -9), calling
    ``up:fake-model``;
(c0) the same without the audit log (``--audit off``), to show how much of (c) the
    durable record is (skip with ``--no-diagnostic``);
(d) the LiteLLM proxy (``litellm --config``), installed into a venv of its own
    under ``~/.cache/brickwork-bench`` (reused on later runs), one worker, no
    database.

For each, at concurrency 1, 16 and 64 (a warm-up, then ``--seconds`` of closed-loop
load from this process): requests per second, the server's CPU time per request
(user + system, its whole process tree, from ``/proc``), and the p50 and p99
latency added to the upstream's at the same concurrency. Every point is measured
``--rounds`` times, interleaved, and keeps its best pass. Max RPS is the best of
the three concurrencies; CPU per request is taken at that concurrency. Each pass
also prints the load generator's own CPU per request.

The upstream and the load generator share the machine's cores with the gateway
under test, so both are lean, or they, not the gateway, would set every max RPS
(an aiohttp server and an aiohttp client each cost about 100-150 µs of CPU per
request, as much as a bare proxy): the upstream (:class:`LeanUpstream`, a
subprocess) and the load generator (:class:`LeanLoad`) are raw asyncio protocols
on uvloop with httptools' parsers, keep-alive, a canned answer and a precomputed
request, at roughly 15 µs of CPU per request each. ``--upstream-impl fake`` runs
the test suite's :class:`~brickwork.testing.upstream.FakeUpstream` (aiohttp)
instead, and ``--client aiohttp`` the old aiohttp load generator, to compare.
Everything shares this machine's cores, so numbers are for comparison, not for a
capacity plan.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

import aiohttp
import httptools

CONCURRENCY = (1, 16, 64)
#: Clean LiteLLM release (1.82.7 and 1.82.8 were the compromised uploads: never those).
LITELLM_VERSION = "1.82.6"
BAD_LITELLM = {"1.82.7", "1.82.8"}
UPSTREAM_KEY = "sk-bench-upstream"
PROMPT = {"role": "user", "content": "Say hello to the benchmark, politely and briefly."}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the servers under test (run as subcommands of this file) -----------------------


async def run_upstream() -> None:
    """``--upstream-impl fake``: the test suite's :class:`FakeUpstream` (aiohttp)."""
    from brickwork.testing.upstream import FakeUpstream

    async with FakeUpstream(api_key=UPSTREAM_KEY) as upstream:
        print(f"READY {upstream.url}", flush=True)
        while True:  # it records every request: keep the record from growing
            await asyncio.sleep(1)
            upstream.requests.clear()


async def run_lean_upstream() -> None:
    """``--upstream-impl lean`` (the default): :class:`LeanUpstream` until killed."""
    server = await serve_lean_upstream()
    port = server.sockets[0].getsockname()[1]
    print(f"READY http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


async def serve_lean_upstream(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(LeanUpstream, host, port, backlog=1024)


def _openai_error(message: str, kind: str) -> bytes:
    error = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return json.dumps(error, separators=(",", ":")).encode()


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
_UNAUTHORIZED = _openai_error("Incorrect API key provided.", "authentication_error")
_NOT_FOUND = _openai_error("Unknown path.", "not_found_error")
_NOT_ALLOWED = _openai_error("Method not allowed.", "invalid_request_error")
_MODELS = json.dumps(
    {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "bench"}]},
    separators=(",", ":"),
).encode()
#: The canned answer: "Hello, benchmark." (2 words) to :data:`PROMPT` (8 words).
REPLY = "Hello, benchmark."
REPLY_USAGE = {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}


class LeanUpstream(asyncio.Protocol):
    """One connection to the lean mock upstream: an OpenAI chat endpoint at about
    15 µs of CPU per request (system calls included), so that it is never what limits
    a benchmark.

    A raw asyncio protocol (on uvloop) with httptools' request parser, HTTP/1.1
    keep-alive and pipelining (answers go out in order), ``Connection: close`` and
    ``Expect: 100-continue`` honoured. ``POST /v1/chat/completions`` with
    ``Authorization: Bearer sk-bench-upstream`` answers a canned, well-formed
    ``chat.completion`` (a unique id, the request's model, one assistant message,
    ``finish_reason: "stop"``, usage); ``GET /v1/models`` lists ``fake-model``; a
    wrong key is a 401, another path a 404, a malformed request a 400, all with an
    OpenAI error body. No streaming (a 400 says so).
    """

    #: The chat.completion body after its id, by (model, second): built once a second.
    _tails: ClassVar[dict[tuple[str, int], bytes]] = {}
    _date: ClassVar[tuple[int, bytes]] = (0, b"")
    _ids: ClassVar[Iterator[int]] = itertools.count(1)
    _auth: ClassVar[bytes] = f"Bearer {UPSTREAM_KEY}".encode()

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.authorization = b""
        self.expect_continue = False
        self.body: list[bytes] = []

    # asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None  # a client that went away: nothing more to answer

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # a bug here: say so in the log
            print(f"bench upstream: {exc!r} from {exc.__cause__!r}", file=sys.stderr, flush=True)
            self.respond(400, _openai_error("Bad request.", "invalid_request_error"), keep_alive=False)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self.respond(400, _openai_error("Malformed HTTP request.", "invalid_request_error"), False)

    # httptools (each may come more than once per request: URL and body arrive in pieces)

    def on_message_begin(self) -> None:
        self.url = b""
        self.authorization = b""
        self.expect_continue = False
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"authorization":
            self.authorization = value
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        if self.expect_continue and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        if path == b"/v1/chat/completions":
            if method != b"POST":
                status, body = 405, _NOT_ALLOWED
            elif self.authorization != self._auth:
                status, body = 401, _UNAUTHORIZED
            else:
                status, body = self.chat(b"".join(self.body))
        elif path == b"/v1/models":
            if method != b"GET":
                status, body = 405, _NOT_ALLOWED
            elif self.authorization != self._auth:
                status, body = 401, _UNAUTHORIZED
            else:
                status, body = 200, _MODELS
        else:
            status, body = 404, _NOT_FOUND
        self.respond(status, body, keep_alive)

    # answers

    def chat(self, raw: bytes) -> tuple[int, bytes]:
        try:
            request = json.loads(raw)
        except ValueError:
            return 400, _openai_error("The body is not JSON.", "invalid_request_error")
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            return 400, _openai_error("'messages' is required.", "invalid_request_error")
        model = request.get("model")
        if not isinstance(model, str) or not model:
            return 400, _openai_error("'model' is required.", "invalid_request_error")
        if request.get("stream"):
            return 400, _openai_error("The bench upstream does not stream.", "invalid_request_error")
        now = int(time.time())
        tail = self._tails.get((model, now))
        if tail is None:
            if len(self._tails) > 64:
                self._tails.clear()
            payload = {
                "id": "\x00",
                "object": "chat.completion",
                "created": now,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": REPLY},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": REPLY_USAGE,
            }
            # "id" comes first, and json escapes NUL: the first "\u0000" is the id's place.
            tail = json.dumps(payload, separators=(",", ":")).encode().split(b"\\u0000", 1)[1]
            self._tails[(model, now)] = tail
        return 200, b'{"id":"chatcmpl-bench-%d' % next(self._ids) + tail

    def respond(self, status: int, body: bytes, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        now = int(time.time())
        if self._date[0] != now:
            LeanUpstream._date = (now, formatdate(now, usegmt=True).encode())
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"date: %s\r\nserver: brickwork-bench-upstream\r\n"
            % (status, _REASONS[status].encode(), len(body), self._date[1])
        )
        if keep_alive:
            transport.write(head + b"\r\n" + body)
        else:
            transport.write(head + b"connection: close\r\n\r\n" + body)
            transport.close()


def run_bare(port: int, upstream: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    session: aiohttp.ClientSession | None = None

    async def chat(request: Request) -> Response:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        body = await request.body()
        async with session.post(
            upstream + "/v1/chat/completions",
            data=body,
            headers={"content-type": "application/json", "authorization": f"Bearer {UPSTREAM_KEY}"},
        ) as reply:
            payload = await reply.read()
            return Response(payload, status_code=reply.status, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and every process below it."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += times.get(current, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == current)
    return total


@dataclass
class Target:
    name: str
    url: str
    model: str
    process: subprocess.Popen[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    results: dict[int, Result] = field(default_factory=dict)


@dataclass
class Result:
    rps: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: the load generator's own CPU per request (this process), for comparison
    client_us: float = float("nan")


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its whole group is stopped at the end
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


async def wait_ready(target: Target, within: float, logs: Path) -> None:
    body = {"model": target.model, "messages": [PROMPT], "max_tokens": 16}
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if target.process.poll() is not None:
                raise SystemExit(f"{target.name} exited:\n{tails(logs)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.post(target.url, json=body, headers=target.headers) as reply:
                    text = await reply.text()
                    if reply.status == 200:
                        return
                    raise SystemExit(f"{target.name} answered {reply.status}: {text[:500]}")
            await asyncio.sleep(0.2)
    raise SystemExit(f"{target.name} did not start within {within:.0f}s:\n{tails(logs)}")


def tails(logs: Path) -> str:
    """The end of every server log (the directory goes away with the run)."""
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}" for log in sorted(logs.glob("*.log"))
    )


# --- load ---------------------------------------------------------------------------------


def summary(latencies: list[float], errors: int, elapsed: float, cpu: float, client: float) -> Result:
    latencies.sort()
    done = len(latencies)
    if not done:
        return Result(0.0, float("nan"), float("nan"), float("nan"), errors)
    return Result(
        rps=done / elapsed,
        cpu_us=cpu / done * 1e6,
        p50_ms=latencies[done // 2] * 1000,
        p99_ms=latencies[min(done - 1, int(done * 0.99))] * 1000,
        errors=errors,
        client_us=client / done * 1e6,
    )


async def load(target: Target, concurrency: int, seconds: float, warmup: float) -> Result:
    """``--client lean`` (the default): closed-loop load from :class:`LeanLoad`: a
    warm-up, then ``seconds`` measured, the server's process-tree CPU around it."""
    generator = LeanLoad(target, concurrency)
    try:
        await generator.phase(warmup, measuring=False)
        cpu0 = tree_cpu(target.process.pid)
        client0 = time.process_time()
        began = time.perf_counter()
        await generator.phase(seconds, measuring=True)
        elapsed = time.perf_counter() - began
        client = time.process_time() - client0
        cpu = tree_cpu(target.process.pid) - cpu0
    finally:
        generator.close()
    return summary(generator.latencies, generator.errors, elapsed, cpu, client)


class LeanLoad:
    """A load generator at about 15 µs of CPU per request (system calls included), so
    that it is never what limits a benchmark: ``concurrency`` keep-alive connections (raw asyncio protocols),
    each with one request in flight, the next one sent as soon as the answer's last
    byte is in (from the protocol's callback, no task per request); the request is
    one precomputed blob; httptools' response parser finds the end of each answer
    (content-length or chunked). A status other than 200, a malformed answer or a lost
    connection is an error; a connection the server closes is opened again."""

    def __init__(self, target: Target, concurrency: int) -> None:
        url = urlsplit(target.url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        body = json.dumps({"model": target.model, "messages": [PROMPT], "max_tokens": 16}).encode()
        headers = {
            "Host": url.netloc,
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            **target.headers,
        }
        head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.request = (head + "\r\n").encode() + body
        self.slots = [LeanSlot(self) for _ in range(concurrency)]
        self.latencies: list[float] = []
        self.errors = 0
        self.measuring = False
        self.stop_at = 0.0
        self.busy = 0
        self.done: asyncio.Future[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def phase(self, seconds: float, *, measuring: bool) -> None:
        """Every slot sends requests until ``seconds`` are up, then the phase ends with
        the last answer in."""
        self.measuring = measuring
        self.stop_at = time.perf_counter() + seconds
        self.busy = len(self.slots)
        self.done = done = asyncio.get_running_loop().create_future()
        for slot in self.slots:
            slot.next()
        await done

    def idle(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def record(self, started: float, ok: bool) -> None:
        if self.measuring:
            if ok:
                self.latencies.append(time.perf_counter() - started)
            else:
                self.errors += 1

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        for slot in self.slots:
            if slot.connection is not None:
                slot.connection.close()
        for task in self.tasks:
            task.cancel()


class LeanSlot:
    """One unit of concurrency of :class:`LeanLoad`: one request in flight at a time,
    over its current connection (opened again when the server closed it)."""

    def __init__(self, load: LeanLoad) -> None:
        self.load = load
        self.connection: LeanConnection | None = None
        self.started = 0.0

    def next(self) -> None:
        load = self.load
        now = time.perf_counter()
        if now >= load.stop_at:
            load.idle()
            return
        self.started = now
        if self.connection is None:
            load.spawn(self.connect())  # its time counts in the request's latency
        else:
            self.connection.send(load.request)

    async def connect(self) -> None:
        load = self.load
        with contextlib.suppress(OSError):
            # connection_made makes it this slot's connection; connection_lost unmakes it
            await asyncio.get_running_loop().create_connection(
                lambda: LeanConnection(self), load.host, load.port
            )
        if self.connection is None:  # refused, or closed at once
            load.record(self.started, ok=False)
            await asyncio.sleep(0.05)
            self.next()
        else:
            self.connection.send(load.request)

    def answered(self, ok: bool) -> None:
        self.load.record(self.started, ok)
        self.next()


class LeanConnection(asyncio.Protocol):
    """One connection of a :class:`LeanSlot`: sends the request blob, parses answers."""

    def __init__(self, slot: LeanSlot) -> None:
        self.slot = slot
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.in_flight = False
        self.status = 0  # set when an answer is complete
        self.keep_alive = True

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.in_flight = True
        self.transport.write(request)

    def close(self) -> None:
        if self.slot.connection is self:
            self.slot.connection = None
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.slot.connection = self

    def connection_lost(self, exc: Exception | None) -> None:
        if self.slot.connection is self:
            self.slot.connection = None
        if self.in_flight:  # cut off before the answer was whole
            self.in_flight = False
            self.slot.answered(False)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self.close()  # connection_lost counts the request as failed
            return
        if self.status:  # an answer is whole
            status, self.status = self.status, 0
            if not self.keep_alive:
                self.close()
            if self.in_flight:
                self.in_flight = False
                self.slot.answered(status == 200)  # sends the next one (outside the parser)

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()


async def load_aiohttp(target: Target, concurrency: int, seconds: float, warmup: float) -> Result:
    """``--client aiohttp``: the same load from an aiohttp session (for comparison; it
    costs about as much CPU per request as a gateway does)."""
    body = json.dumps({"model": target.model, "messages": [PROMPT], "max_tokens": 16}).encode()
    headers = {"content-type": "application/json", **target.headers}
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop_at = 0.0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    async with session.post(target.url, data=body, headers=headers) as reply:
                        await reply.read()
                        ok = reply.status == 200
                except (aiohttp.ClientError, OSError):
                    ok = False
                if measuring:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        stop_at = time.perf_counter() + warmup
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        measuring = True
        cpu0 = tree_cpu(target.process.pid)
        client0 = time.process_time()
        began = time.perf_counter()
        stop_at = began + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        client = time.process_time() - client0
        cpu = tree_cpu(target.process.pid) - cpu0
    return summary(latencies, errors, elapsed, cpu, client)


# --- setting up each target ---------------------------------------------------------------


def start_upstream(tmp: Path, impl: str = "lean") -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "upstream", "--upstream-impl", impl],
        stdout=subprocess.PIPE,
        stderr=(tmp / "upstream.log").open("ab"),
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("READY "):
        raise SystemExit(f"the upstream did not start: {line!r}")
    return process, line.split(" ", 1)[1]


def start_brickwork(
    tmp: Path, upstream: str, *, audit: bool = True
) -> tuple[subprocess.Popen[bytes], str, str]:
    from brickwork.storage.keys import SQLiteKeyStore

    config = tmp / "brickwork.yaml"
    config.write_text(
        f"providers:\n  up:\n    type: openai\n    base_url: {upstream}/v1\n    api_key_env: UPSTREAM_KEY\n"
    )

    async def key() -> str:
        store = SQLiteKeyStore(tmp / "keys.db")
        try:
            _, raw = await store.create(tenant="bench", plugins=["up:*"], name="bench")
        finally:
            await store.aclose()
        return raw

    raw = asyncio.run(key())
    port = free_port()
    name = "brickwork" if audit else "brickwork-no-audit"
    process = spawn(
        [
            sys.executable,
            "-m",
            "brickwork.gateway",
            "--config",
            str(config),
            "--port",
            str(port),
            "--keys",
            f"sqlite:///{tmp / 'keys.db'}",
            "--audit",
            f"sqlite:///{tmp / 'audit.db'}" if audit else "off",
            "--log-level",
            "warning",
        ],
        tmp / f"{name}.log",
        env={"UPSTREAM_KEY": UPSTREAM_KEY, "BRICKWORK_HOME": str(tmp)},
    )
    return process, f"http://127.0.0.1:{port}/v1/chat/completions", raw


def litellm_venv(version: str) -> Path:
    if version in BAD_LITELLM:
        raise SystemExit(f"litellm {version} is a compromised release; pick another")
    venv = Path.home() / ".cache" / "brickwork-bench" / f"litellm-{version}"
    marker = venv / ".installed"
    if not marker.exists():
        print(f"installing litellm[proxy]=={version} into {venv} (once) …", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                f"litellm[proxy]=={version}",
            ],
            check=True,
            timeout=240,
        )
        marker.touch()
    return venv


def start_litellm(tmp: Path, upstream: str, version: str) -> tuple[subprocess.Popen[bytes], str]:
    venv = litellm_venv(version)
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: fake-model\n"
        "    litellm_params:\n"
        "      model: openai/fake-model\n"
        f"      api_base: {upstream}/v1\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    port = free_port()
    process = spawn(
        [str(venv / "bin" / "litellm"), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        tmp / "litellm.log",
        env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "true"},
    )
    return process, f"http://127.0.0.1:{port}/v1/chat/completions"


# --- the run ------------------------------------------------------------------------------


def table(targets: list[Target]) -> Iterator[str]:
    base = targets[0].results
    head = ["target", "max RPS", "CPU µs/req"]
    for c in CONCURRENCY:
        head += [f"+p50 @{c} (ms)", f"+p99 @{c} (ms)"]
    yield "| " + " | ".join(head) + " |"
    yield "|" + "---|" * len(head)
    for target in targets:
        best = max(target.results.values(), key=lambda r: r.rps)
        row = [target.name, f"{best.rps:,.0f}", f"{best.cpu_us:,.0f}"]
        for c in CONCURRENCY:
            r = target.results[c]
            if target is targets[0]:
                row += [f"({r.p50_ms:.2f})", f"({r.p99_ms:.2f})"]
            else:
                row += [f"{r.p50_ms - base[c].p50_ms:+.2f}", f"{r.p99_ms - base[c].p99_ms:+.2f}"]
        yield "| " + " | ".join(row) + " |"


Loader = Callable[[Target, int, float, float], Awaitable[Result]]
LOADERS: dict[str, Loader] = {"lean": load, "aiohttp": load_aiohttp}


async def measure(
    targets: list[Target], seconds: float, warmup: float, rounds: int, loader: Loader = load
) -> None:
    """``rounds`` passes over every target and concurrency; each point keeps its best
    pass (highest RPS), so a burst of load from elsewhere on the machine during one
    pass does not decide the comparison."""
    for n in range(rounds):
        for target in targets:
            for c in CONCURRENCY:
                r = await loader(target, c, seconds, warmup)
                print(
                    f"  pass {n + 1}  {target.name:<30} c={c:<3} {r.rps:8,.0f} rps  "
                    f"{r.cpu_us:7,.0f} µs CPU/req  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
                    f"(client {r.client_us:,.0f} µs CPU/req)",
                    flush=True,
                )
                if r.errors:
                    raise SystemExit(f"{target.name}: {r.errors} requests failed; see its log")
                best = target.results.get(c)
                if best is None or r.rps > best.rps:
                    target.results[c] = r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "upstream", "bare"])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per point")
    parser.add_argument("--rounds", type=int, default=2, help="passes over every point (best kept)")
    parser.add_argument("--litellm", default=LITELLM_VERSION, help="LiteLLM version to compare with")
    parser.add_argument("--no-litellm", action="store_true", help="skip (d)")
    parser.add_argument("--no-diagnostic", action="store_true", help="skip (c0): Brickwork without audit")
    parser.add_argument(
        "--upstream-impl",
        default="lean",
        choices=["lean", "fake"],
        help="the mock upstream: lean (raw asyncio + httptools) or fake (FakeUpstream, aiohttp)",
    )
    parser.add_argument(
        "--client",
        default="lean",
        choices=sorted(LOADERS),
        help="the load generator: lean (raw asyncio + httptools) or aiohttp",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", default="")
    args = parser.parse_args()
    import uvloop

    if args.role == "upstream":
        uvloop.run(run_lean_upstream() if args.upstream_impl == "lean" else run_upstream())
        return
    if args.role == "bare":
        run_bare(args.port, args.upstream)
        return
    started = time.monotonic()
    print(
        f"bench/gateway.py on {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"upstream {args.upstream_impl}, client {args.client}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="brickwork-bench-") as name:
        tmp = Path(name)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            targets = start_targets(tmp, args, processes)

            async def run() -> None:
                for target in targets:
                    await wait_ready(target, 120, tmp)
                await measure(targets, args.seconds, args.warmup, args.rounds, LOADERS[args.client])

            uvloop.run(run())
        finally:
            for process in reversed(processes):
                stop(process)
        report(targets, tmp)
    print(f"total run {time.monotonic() - started:.0f}s")


def start_targets(
    tmp: Path, args: argparse.Namespace, processes: list[subprocess.Popen[bytes]]
) -> list[Target]:
    upstream_process, upstream = start_upstream(tmp, args.upstream_impl)
    processes.append(upstream_process)
    chat = "/v1/chat/completions"
    targets = [
        Target(
            "(a) upstream direct",
            upstream + chat,
            "fake-model",
            upstream_process,
            {"authorization": f"Bearer {UPSTREAM_KEY}"},
        )
    ]
    port = free_port()
    bare = spawn(
        [sys.executable, __file__, "bare", "--port", str(port), "--upstream", upstream], tmp / "bare.log"
    )
    processes.append(bare)
    targets.append(Target("(b) Starlette+aiohttp bare", f"http://127.0.0.1:{port}{chat}", "fake-model", bare))
    variants = [("(c) Brickwork full path", True)]
    if not args.no_diagnostic:
        # The same without the audit log: how much of (c) the durable record is.
        variants.append(("(c0) Brickwork, audit off", False))
    for label, audit in variants:
        process, url, raw = start_brickwork(tmp, upstream, audit=audit)
        processes.append(process)
        targets.append(Target(label, url, "up:fake-model", process, {"authorization": f"Bearer {raw}"}))
    if not args.no_litellm:
        process, url = start_litellm(tmp, upstream, args.litellm)
        processes.append(process)
        targets.append(Target(f"(d) LiteLLM {args.litellm} proxy", url, "fake-model", process))
    return targets


def report(targets: list[Target], tmp: Path) -> None:
    print()
    for line in table(targets):
        print(line)
    print()
    best = {t.name.split(")")[0] + ")": max(t.results.values(), key=lambda r: r.rps) for t in targets}
    by = {t.name.split(")")[0] + ")": t for t in targets}
    bw, bare = best["(c)"], best["(b)"]
    print(f"CPU per request, Brickwork ÷ bare pass-through: {bw.cpu_us / bare.cpu_us:.2f}× (target ≤ 2×)")
    if "(c0)" in best:
        print(f"  without the audit log: {best['(c0)'].cpu_us / bare.cpu_us:.2f}×")
    added = by["(c)"].results[1].p50_ms - by["(a)"].results[1].p50_ms
    print(f"added p50 at concurrency 1, Brickwork: {added:.3f} ms (target ≤ 0.5 ms)")
    if "(c0)" in by:
        added0 = by["(c0)"].results[1].p50_ms - by["(a)"].results[1].p50_ms
        print(f"  without the audit log: {added0:.3f} ms")
    if "(d)" in best:
        print(f"max RPS, Brickwork ÷ LiteLLM: {bw.rps / best['(d)'].rps:.1f}× (target ≥ 20×)")
    print(f"the audit log was a SQLite file (WAL, synchronous=NORMAL: survives kill -9) under {tmp.parent}")


if __name__ == "__main__":
    main()
