"""JSON responses, and the guard that turns every endpoint error into one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic_core import to_json
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from brickwork.contracts.errors import BrickworkError
from brickwork.gateway.errors import error_response, internal_error_response

__all__ = ["Endpoint", "JSONBytesResponse", "endpoint", "json_response"]

Endpoint = Callable[[HTTPRequest], Awaitable[Response]]

_JSON = b"application/json"


class JSONBytesResponse(Response):
    """A 200 (or ``status``) whose body is JSON, serialised already.

    ``headers`` are raw, lower-case and without ``content-length`` or
    ``content-type`` (the list is taken, not copied): those two are added after
    them, as Starlette's ``Response``
    adds them, so status, headers (in order) and body are what
    ``Response(body, status, headers, media_type="application/json")`` sends,
    without its generic rendering and header normalisation on every request.
    """

    media_type = "application/json"

    def __init__(
        self, body: bytes, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        raw = headers if headers is not None else []
        if not (status < 200 or status in (204, 304)):
            raw.append((b"content-length", str(len(body)).encode("latin-1")))
        raw.append((b"content-type", _JSON))
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.background is not None:
            return await super().__call__(scope, receive, send)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


_FRAMING = (b"content-length", b"content-type")


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = to_json(data)
    if not headers:
        return JSONBytesResponse(body, status)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if any(name in _FRAMING for name, _ in raw):  # the caller sets them: Starlette's rules
        return Response(body, status_code=status, headers=headers, media_type="application/json")
    return JSONBytesResponse(body, status, raw)


def endpoint(fn: Endpoint) -> Endpoint:
    """Every error an endpoint raises becomes the one JSON error shape; never a bare 500."""

    async def guarded(request: HTTPRequest) -> Response:
        try:
            return await fn(request)
        except BrickworkError as exc:
            return error_response(exc)
        except Exception as exc:
            return internal_error_response(exc)

    guarded.__name__ = getattr(fn, "__name__", "endpoint")
    guarded.__doc__ = fn.__doc__
    return guarded
