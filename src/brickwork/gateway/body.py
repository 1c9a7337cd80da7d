"""Request bodies: read with a size limit, parsed and validated in one step.

Anything wrong with a body is a 4xx with a message that says what: too large
(413, refused before it is all read), not JSON (415), malformed JSON, or the
wrong shape (400, with each problem's location).

Headers and the body are read from the ASGI scope and ``receive`` directly: the
same values Starlette's ``Request.headers`` / ``Request.stream()`` give, without
their per-request objects (this is on the path of every request).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar, cast

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from brickwork.contracts.errors import InvalidRequestError
from brickwork.gateway.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from brickwork.guards.contract import describe_validation_error

__all__ = ["parse_body", "read_body", "request_headers"]

M = TypeVar("M", bound=BaseModel)


def request_headers(request: Request) -> dict[bytes, bytes]:
    """The request's headers by name (lower-case, as ASGI servers send names).

    Of a repeated header, the first: what ``request.headers.get(name)`` gives,
    without a ``Headers`` object and a scan of the list for every name.
    """
    raw: list[tuple[bytes, bytes]] = request.scope["headers"]
    if type(raw) is not list:  # an ASGI server may send any iterable (Starlette does the same)
        raw = request.scope["headers"] = list(raw)
    return dict(reversed(raw))


async def read_body(request: Request, limit: int, headers: Mapping[bytes, bytes] | None = None) -> bytes:
    """The raw body, refused as soon as it is known to exceed ``limit`` bytes.

    ``headers``: :func:`request_headers`, if the caller has them already.
    """
    if headers is None:
        headers = request_headers(request)
    raw_type = headers.get(b"content-type")
    if raw_type:
        content_type = raw_type.decode("latin-1")
        if "json" not in content_type.lower():
            raise UnsupportedMediaTypeError(
                f"send the body as application/json, not {content_type.split(';')[0].strip()[:64]!r}"
            )
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            size = int(declared.decode("latin-1"))
        except ValueError:
            raise InvalidRequestError("the Content-Length header is not a number") from None
        if size > limit:
            raise PayloadTooLargeError(f"the request body is {size} bytes; the limit is {limit}")
        # (The server frames the body by its Content-Length, so this read is
        # bounded; the limit is checked again for an ASGI server that does not.)
    if request._stream_consumed:  # already read (Starlette keeps it) or consumed
        body = await request.body()
    else:
        # As ``Request.stream()`` reads it, with the limit checked on the way.
        message = await request.receive()
        if message["type"] != "http.request" or message.get("more_body", False):
            return await _receive_rest(request, message, limit)
        # The common case: the whole body in one message.
        request._stream_consumed = True
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = bytes(body)
    if len(body) > limit:
        raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes")
    return body


async def _receive_rest(request: Request, message: Message, limit: int) -> bytes:
    """A body in several messages, from the first of them."""
    receive = request.receive
    chunks: list[bytes] = []
    total = 0
    while True:
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit:
                    raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                request._stream_consumed = True
                return b"".join(chunks)
        elif kind == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
        message = await receive()


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a JSON body against ``model``; every failure is an InvalidRequestError."""
    if not body or body.isspace():  # (isspace: the ASCII whitespace strip() removes)
        raise InvalidRequestError("the request body is empty; send a JSON object")
    try:
        return cast(M, model.__pydantic_validator__.validate_json(body))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise InvalidRequestError(f"the request body is not valid JSON: {errors[0]['msg']}") from None
        problems = describe_validation_error(exc)
        summary = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems[:5])
        raise InvalidRequestError(
            f"the request body does not fit {model.__name__}: {summary}", details={"errors": problems}
        ) from None
