"""JSON responses, and the guard that turns every endpoint error into one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_core import to_json
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from brickwork.contracts.errors import BrickworkError
from brickwork.gateway.errors import error_response, internal_error_response

__all__ = ["Endpoint", "endpoint", "json_response"]

Endpoint = Callable[[HTTPRequest], Awaitable[Response]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(to_json(data), status_code=status, headers=headers, media_type="application/json")


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
