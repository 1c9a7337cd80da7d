"""The shared HTTP plumbing: status → error, Retry-After, SSE and NDJSON parsing,
the lazy session, connection reuse and limits, and secrets kept out of errors."""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
from collections.abc import AsyncIterator, Iterable

import pytest

from brickwork.contracts.errors import (
    ConfigurationError,
    ProviderAuthenticationError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    http_status,
)
from brickwork.providers.http import (
    HttpClient,
    SSEEvent,
    error_for_status,
    iter_lines,
    ndjson_objects,
    parse_retry_after,
    sse_events,
    upstream_message,
)
from brickwork.testing import FakeUpstream, Fault

KEY = "sk-test-0123456789abcdef"


async def feed(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def splits(data: bytes) -> Iterable[tuple[bytes, ...]]:
    """``data`` cut in two at every position, and one byte at a time."""
    for i in range(len(data) + 1):
        yield (data[:i], data[i:])
    yield tuple(data[i : i + 1] for i in range(len(data)))


async def events_of(*chunks: bytes) -> list[SSEEvent]:
    return [e async for e in sse_events(feed(*chunks))]


# --- Retry-After -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"RETRY-AFTER": " 3 "}, 3.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "20", "Retry-After": "9"}, 0.02),  # the precise one wins
        ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "whenever"}, None),
        ({}, None),
    ],
)
def test_retry_after_in_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 120, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(120, abs=1)
    past = email.utils.formatdate(now - 60, usegmt=True)
    assert parse_retry_after({"Retry-After": past}, now=now) == 0.0


# --- status → error --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls", "gateway_status"),
    [
        (400, ProviderRejectedError, 502),
        (401, ProviderAuthenticationError, 502),
        (403, ProviderAuthenticationError, 502),
        (404, ProviderRejectedError, 502),
        (408, ProviderTimeoutError, 504),
        (413, ProviderRejectedError, 502),
        (422, ProviderRejectedError, 502),
        (429, ProviderRateLimitedError, 429),
        (500, ProviderUnavailableError, 503),
        (502, ProviderUnavailableError, 503),
        (503, ProviderUnavailableError, 503),
        (504, ProviderTimeoutError, 504),
        (529, ProviderUnavailableError, 503),
    ],
)
def test_each_upstream_status_has_one_typed_error(
    status: int, cls: type[ProviderError], gateway_status: int
) -> None:
    error = error_for_status(status, "boom", retry_after=4)
    assert type(error) is cls
    assert http_status(error) == gateway_status
    # Waiting is only worth it for what a retry can fix.
    assert error.retry_after == (4 if cls.retryable else None)


def test_upstream_auth_failure_is_not_the_callers_auth_failure() -> None:
    error = error_for_status(401, "bad key")
    assert not error.retryable
    assert http_status(error) != 401  # the caller's own key was fine


def test_a_404_says_what_to_check() -> None:
    assert "model name or the base URL" in error_for_status(404, "no such model").message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"error": {"message": "Bad thing", "type": "invalid_request_error"}}',
            "invalid_request_error: Bad thing",
        ),
        (
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            "overloaded_error: Overloaded",
        ),
        (b'{"error": "model \'llama9\' not found"}', "model 'llama9' not found"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b"<html>\n<body>502   Bad Gateway</body></html>", "<html> <body>502 Bad Gateway</body></html>"),
        (b"", "(empty body)"),
    ],
)
def test_upstream_message_reads_each_dialect(body: bytes, expected: str) -> None:
    assert upstream_message(body) == expected


def test_upstream_message_is_shortened() -> None:
    assert upstream_message("x" * 5000, limit=50) == "x" * 50 + "…"


# --- lines, SSE, NDJSON -----------------------------------------------------------

SSE_SAMPLE = (
    b": keep-alive comment\r\n\r\n"
    b'event: message_start\r\ndata: {"a": 1}\r\n\r\n'
    b"data: first line\ndata:second line\nid: 7\n\n"
    b"retry: 1000\nunknown: field\ndata: caf\xc3\xa9\n\n"
    b"event: ping\n\n"  # no data: not dispatched
    b"data: [DONE]\n\n"
)
SSE_EXPECTED = [
    SSEEvent('{"a": 1}', "message_start"),
    SSEEvent("first line\nsecond line", "message", "7"),
    SSEEvent("café", "message", "7"),
    SSEEvent("[DONE]", "message", "7"),
]


async def test_sse_events_survive_any_split_across_reads() -> None:
    for chunks in splits(SSE_SAMPLE):
        assert await events_of(*chunks) == SSE_EXPECTED, chunks


async def test_an_sse_event_cut_before_its_blank_line_is_dropped() -> None:
    # The stream ends inside the last event: "[DONE]" must not count.
    assert await events_of(b"data: one\n\ndata: [DONE]\n") == [SSEEvent("one")]
    assert await events_of(b"data: one\n\ndata: [DO") == [SSEEvent("one")]


async def test_lines_end_at_lf_crlf_or_a_lone_cr() -> None:
    for chunks in splits(b"a\rb\r\nc\nd\r"):
        assert [x async for x in iter_lines(feed(*chunks), keep_partial=False)] == [b"a", b"b", b"c", b"d"]
    assert [x async for x in iter_lines(feed(b"a\nrest"), keep_partial=False)] == [b"a"]
    assert [x async for x in iter_lines(feed(b"a\nrest"), keep_partial=True)] == [b"a", b"rest"]


async def test_an_endless_line_is_refused() -> None:
    with pytest.raises(ProviderResponseError, match="passed 16 bytes"):
        async for _ in iter_lines(feed(b"x" * 10, b"x" * 10), keep_partial=True, max_line=16):
            pass


async def test_sse_that_is_not_utf8_is_a_response_error() -> None:
    with pytest.raises(ProviderResponseError, match="not UTF-8"):
        await events_of(b"data: \xff\xfe\n\n")


async def test_ndjson_objects_across_reads() -> None:
    data = b'{"n": 1}\n\n{"n": 2, "s": "\xc3\xa9"}\r\n{"n": 3}'  # the last line unterminated but whole
    for chunks in splits(data):
        got = [x async for x in ndjson_objects(feed(*chunks))]
        assert got == [{"n": 1}, {"n": 2, "s": "é"}, {"n": 3}], chunks


async def test_a_cut_ndjson_line_is_a_response_error_not_a_shorter_stream() -> None:
    seen: list[object] = []

    async def read() -> None:
        async for obj in ndjson_objects(feed(b'{"n": 1}\n{"n": 2, "te')):
            seen.append(obj)

    with pytest.raises(ProviderResponseError, match="malformed stream line") as caught:
        await read()
    assert seen == [{"n": 1}]
    assert caught.value.details == {"reason": "malformed"}


# --- the client ----------------------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(api_key=KEY) as up:
        yield up


def client(upstream: FakeUpstream, **kwargs: object) -> HttpClient:
    options: dict[str, object] = {
        "headers": {"Authorization": f"Bearer {KEY}"},
        "secrets": [KEY],
        "timeout": 2.0,
    }
    options.update(kwargs)
    return HttpClient("test", upstream.openai_url, **options)  # type: ignore[arg-type]


async def test_the_session_opens_on_first_use_and_closes_with_aclose(upstream: FakeUpstream) -> None:
    http = client(upstream)
    assert http.closed  # nothing opened by the constructor
    assert (await http.request_json("GET", "/models"))["data"][0]["id"] == "fake-model"
    assert not http.closed
    await http.aclose()
    assert http.closed
    await http.aclose()  # twice is fine
    await http.request_json("GET", "/models")  # and a later call opens a new one
    assert not http.closed
    await http.aclose()


async def test_connections_are_reused_after_whole_replies_and_streams(upstream: FakeUpstream) -> None:
    # Whole calls (the transport) and streams (aiohttp) have a pool each: each reuses its connection.
    http = client(upstream)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi there"}], "stream": True}

    async def read_stream() -> None:
        async with http.stream("/chat/completions", body, content_types=["text/event-stream"]) as chunks:
            async for event in sse_events(chunks):
                if event.data == "[DONE]":
                    break

    await http.request_json("GET", "/models")
    await read_stream()
    await http.request_json("GET", "/models")
    await read_stream()
    await http.aclose()
    assert len(upstream.requests) == 4
    whole = {r.client_port for r in upstream.requests if r.method == "GET"}
    streams = {r.client_port for r in upstream.requests if r.method == "POST"}
    assert len(whole) == 1
    assert len(streams) == 1


async def test_a_stream_left_early_closes_its_connection(upstream: FakeUpstream) -> None:
    http = client(upstream)
    body = {"model": "m", "messages": [{"role": "user", "content": "one two three four"}], "stream": True}
    upstream.enqueue(Fault(chunk_delay=0.05))  # still sending when the consumer leaves

    async def leave_early() -> None:
        async with http.stream("/chat/completions", body, content_types=["text/event-stream"]) as chunks:
            async for _ in chunks:
                raise RuntimeError("consumer stops")

    with pytest.raises(RuntimeError, match="consumer stops"):
        await leave_early()
    await http.request_json("GET", "/models")
    await http.aclose()
    first, second = upstream.requests
    assert first.client_port != second.client_port  # half-read body: never back to the pool


async def test_max_connections_bounds_concurrent_calls(upstream: FakeUpstream) -> None:
    http = client(upstream, max_connections=2)
    upstream.enqueue(*[Fault(delay=0.1) for _ in range(6)])
    started = time.perf_counter()
    await asyncio.gather(*(http.request_json("GET", "/models") for _ in range(6)))
    elapsed = time.perf_counter() - started
    await http.aclose()
    assert len({r.client_port for r in upstream.requests}) == 2
    assert elapsed >= 0.29  # three waves of two


async def test_a_refused_connection_is_unavailable() -> None:
    # Bind a port, then free it: nothing listens there.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    http = HttpClient("test", f"http://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(ProviderUnavailableError, match="cannot reach the server") as caught:
        await http.request_json("GET", "/models")
    assert caught.value.retryable
    await http.aclose()


async def test_a_key_echoed_by_the_upstream_is_redacted(upstream: FakeUpstream) -> None:
    http = client(upstream)
    upstream.enqueue(Fault(status=400, message=f"Incorrect API key provided: {KEY}"))
    with pytest.raises(ProviderResponseError) as caught:
        await http.request_json("POST", "/chat/completions", {"model": "m", "messages": []})
    await http.aclose()
    assert "Incorrect API key provided: ***" in caught.value.message
    assert KEY not in str(caught.value)
    assert KEY not in json.dumps(caught.value.to_dict())
    assert KEY not in repr(http)


@pytest.mark.parametrize("url", ["not a url", "127.0.0.1:8000", "ftp://host/v1", "http://"])
def test_a_base_url_that_is_not_http_is_refused_at_once(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base URL must be"):
        HttpClient("test", url)


def test_bad_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        HttpClient("test", "http://127.0.0.1:1", timeout=0)
    with pytest.raises(ConfigurationError, match="max_connections"):
        HttpClient("test", "http://127.0.0.1:1", max_connections=-1)


def test_a_client_outlives_the_event_loop_that_opened_it() -> None:
    """``asyncio.run`` twice (what ``run_sync`` does): the second run opens a new session."""
    http = HttpClient("test", "http://unused", timeout=2.0)
    results: list[str] = []

    async def once() -> None:
        async with FakeUpstream() as up:
            http.base_url = up.openai_url
            results.append((await http.request_json("GET", "/models"))["data"][0]["id"])

    def runs() -> None:
        asyncio.run(once())
        asyncio.run(once())
        asyncio.run(http.aclose())

    thread = threading.Thread(target=runs)  # no pytest-asyncio loop in this thread
    thread.start()
    thread.join(20)
    assert results == ["fake-model", "fake-model"]
    assert http.closed


async def test_one_client_on_two_live_loops_is_refused(upstream: FakeUpstream) -> None:
    http = client(upstream)
    await http.request_json("GET", "/models")
    errors: list[BaseException] = []

    def other_loop() -> None:
        try:
            asyncio.run(http.request_json("GET", "/models"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=other_loop)
    thread.start()
    thread.join(10)
    await http.aclose()
    assert len(errors) == 1
    assert isinstance(errors[0], ConfigurationError)
    assert "two running event loops" in str(errors[0])
