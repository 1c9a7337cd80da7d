"""The request path's own readers and writers give what Starlette's would.

The gateway reads headers from the ASGI scope and the body from ``receive()``
itself, and writes JSON responses with their raw headers built by hand (see
``body.py`` and ``responses.py``); these tests hold them to Starlette's
``Request.headers`` / ``Request.body()`` and ``Response`` on the same input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import to_json
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.types import Message

from brickwork.contracts.errors import BrickworkError, InvalidRequestError
from brickwork.contracts.request import RouteDecision
from brickwork.gateway import Gateway
from brickwork.gateway.body import parse_body, read_body, request_headers
from brickwork.gateway.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from brickwork.gateway.openai_api import _route
from brickwork.gateway.responses import JSONBytesResponse, json_response
from brickwork.gateway.schemas import ChatCompletionRequest
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry
from brickwork.storage.keys import ApiKey, SQLiteKeyStore

LIMIT = 100


def _request(messages: list[Message], headers: Iterable[tuple[bytes, bytes]] = ()) -> HTTPRequest:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return HTTPRequest({"type": "http", "method": "POST", "headers": list(headers)}, receive)


def _body(data: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": data, "more_body": more}


# --- headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        [],
        [(b"content-type", b"application/json"), (b"authorization", b"Bearer x")],
        # A repeated header: the first one, as Starlette's Headers.get gives it.
        [(b"authorization", b"Bearer first"), (b"authorization", b"Bearer second")],
        [(b"x-latin", "caf\xe9".encode("latin-1")), (b"content-length", b"12")],
    ],
)
def test_request_headers_are_what_starlette_reads(raw: list[tuple[bytes, bytes]]) -> None:
    request = _request([], raw)
    ours = request_headers(request)
    theirs = Headers(raw=raw)
    for name in ("content-type", "authorization", "content-length", "x-latin", "missing"):
        value = ours.get(name.encode())
        assert (None if value is None else value.decode("latin-1")) == theirs.get(name)


def test_request_headers_from_an_iterable_that_is_not_a_list() -> None:
    scope: dict[str, Any] = {"type": "http", "headers": ((b"authorization", b"Bearer k"),)}
    request = HTTPRequest(scope)
    assert request_headers(request) == {b"authorization": b"Bearer k"}
    assert request.headers.get("authorization") == "Bearer k"


# --- the body -------------------------------------------------------------------------


async def test_body_in_one_message() -> None:
    request = _request([_body(b'{"a": 1}')], [(b"content-length", b"8")])
    assert await read_body(request, LIMIT) == b'{"a": 1}'
    # Consumed, as Starlette marks it: a second read fails instead of waiting.
    with pytest.raises(RuntimeError, match="Stream consumed"):
        await request.body()


async def test_body_in_chunks_without_content_length() -> None:
    request = _request([_body(b'{"a"', True), _body(b"", True), _body(bytearray(b": 1}"))])
    body = await read_body(request, LIMIT)
    assert body == b'{"a": 1}'
    assert type(body) is bytes


async def test_body_already_read_by_starlette() -> None:
    request = _request([_body(b"[1]")])
    assert await request.body() == b"[1]"
    assert await read_body(request, LIMIT) == b"[1]"


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    request = _request([], [(b"content-length", b"101")])
    with pytest.raises(PayloadTooLargeError, match="the request body is 101 bytes; the limit is 100"):
        await read_body(request, LIMIT)


@pytest.mark.parametrize(
    "messages",
    [
        [_body(b"x" * 60, True), _body(b"x" * 60)],  # chunked
        [_body(b"x" * 101)],  # one message, no Content-Length
    ],
)
async def test_a_body_over_the_limit_is_refused(messages: list[Message]) -> None:
    with pytest.raises(PayloadTooLargeError, match="over the limit of 100 bytes"):
        await read_body(_request(messages), LIMIT)


async def test_a_body_longer_than_its_declared_length_is_refused_over_the_limit() -> None:
    # An ASGI server that does not frame bodies by their Content-Length.
    request = _request([_body(b"x" * 101)], [(b"content-length", b"10")])
    with pytest.raises(PayloadTooLargeError, match="over the limit of 100 bytes"):
        await read_body(request, LIMIT)


async def test_a_content_length_that_is_not_a_number() -> None:
    request = _request([_body(b"{}")], [(b"content-length", b"ten")])
    with pytest.raises(InvalidRequestError, match="the Content-Length header is not a number"):
        await read_body(request, LIMIT)


@pytest.mark.parametrize(
    ("content_type", "refused"),
    [
        (b"application/json", False),
        (b"Application/JSON; charset=utf-8", False),
        (b"application/vnd.api+json", False),
        (b"", False),
        (b"text/plain; charset=utf-8", True),
    ],
)
async def test_the_content_type(content_type: bytes, refused: bool) -> None:
    request = _request([_body(b"{}")], [(b"content-type", content_type)])
    if refused:
        with pytest.raises(
            UnsupportedMediaTypeError, match="send the body as application/json, not 'text/plain'"
        ):
            await read_body(request, LIMIT)
    else:
        assert await read_body(request, LIMIT) == b"{}"


async def test_a_client_that_disconnects() -> None:
    request = _request([_body(b"{", True), {"type": "http.disconnect"}])
    with pytest.raises(ClientDisconnect):
        await read_body(request, LIMIT)


@pytest.mark.parametrize("body", [b"", b" \t\r\n\x0b\x0c"])
def test_an_empty_body(body: bytes) -> None:
    with pytest.raises(InvalidRequestError, match="the request body is empty"):
        parse_body(ChatCompletionRequest, body)


def test_parse_errors_keep_their_messages() -> None:
    with pytest.raises(InvalidRequestError, match="the request body is not valid JSON"):
        parse_body(ChatCompletionRequest, b"{")
    with pytest.raises(BrickworkError, match="the request body does not fit ChatCompletionRequest: messages"):
        parse_body(ChatCompletionRequest, b'{"model": "m"}')


# --- responses ------------------------------------------------------------------------


async def _sent(response: Response) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        raise AssertionError("a response does not read")

    await response({"type": "http"}, receive, send)
    return sent


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, None),
        (200, {}),
        (200, {"x-brickwork-trace-id": "abc"}),
        (201, {"X-Mixed-Case": "v", "retry-after": "3"}),
        (204, None),
        (304, {"etag": "x"}),
        (101, None),
        # The caller sets a framing header: Starlette's own rules apply.
        (200, {"Content-Type": "application/problem+json"}),
        (200, {"content-length": "2"}),
    ],
)
async def test_json_responses_are_starlettes(status: int, headers: dict[str, str] | None) -> None:
    data = {"a": [1, 2.5, None], "b": "é"}
    ours = json_response(data, status, headers)
    theirs = Response(to_json(data), status_code=status, headers=headers, media_type="application/json")
    assert ours.status_code == theirs.status_code
    assert ours.raw_headers == theirs.raw_headers
    assert ours.body == theirs.body
    assert dict(ours.headers) == dict(theirs.headers)
    assert await _sent(ours) == await _sent(theirs)


def test_a_json_bytes_response_with_raw_headers() -> None:
    response = JSONBytesResponse(b"{}", 200, [(b"x-brickwork-trace-id", b"t")])
    assert response.raw_headers == [
        (b"x-brickwork-trace-id", b"t"),
        (b"content-length", b"2"),
        (b"content-type", b"application/json"),
    ]
    assert response.headers["x-brickwork-trace-id"] == "t"


@pytest.mark.parametrize(
    "route",
    [
        RouteDecision(method="explicit", ref="passthrough-openai"),
        RouteDecision(method="metadata", ref="rules", rule="to-rules"),
        RouteDecision(method="intent", ref="a", scores={"a": 0.5, "b": math.inf, "c": math.nan}),
    ],
)
def test_route_facts_are_the_models_dump(route: RouteDecision) -> None:
    assert to_json(_route(route)) == to_json(route.model_dump(mode="json"))


# --- principals -------------------------------------------------------------------------


async def test_principals_are_kept_per_key_object_and_model(tmp_path: Path) -> None:
    keys = SQLiteKeyStore(tmp_path / "keys.db")
    gateway = Gateway(Orchestrator(Registry()), keys=keys)
    key = ApiKey(id="k1", tenant="t", plugins=("openai:*",))
    first = gateway.principal(key, "openai:gpt")
    assert gateway.principal(key, "openai:gpt") is first
    assert gateway.principal(key, None) is not first
    assert gateway.principal(key, None).model is None
    # The same key re-read (another object, say revoked since): a principal of its own.
    again = ApiKey(id="k1", tenant="t", plugins=())
    assert gateway.principal(again, "openai:gpt").key is again
    assert not gateway.principal(again, "openai:gpt").key.allows("openai:gpt")
    await gateway.aclose()
