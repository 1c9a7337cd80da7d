"""Request bodies: read with a size limit, parsed and validated in one step.

Anything wrong with a body is a 4xx with a message that says what: too large
(413, refused before it is all read), not JSON (415), malformed JSON, or the
wrong shape (400, with each problem's location).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from brickwork.contracts.errors import InvalidRequestError
from brickwork.gateway.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from brickwork.guards.contract import describe_validation_error

__all__ = ["parse_body", "read_body"]

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it is known to exceed ``limit`` bytes."""
    content_type = request.headers.get("content-type")
    if content_type and "json" not in content_type.lower():
        raise UnsupportedMediaTypeError(
            f"send the body as application/json, not {content_type.split(';')[0].strip()[:64]!r}"
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequestError("the Content-Length header is not a number") from None
        if size > limit:
            raise PayloadTooLargeError(f"the request body is {size} bytes; the limit is {limit}")
        # The server frames the body by its Content-Length, so this read is bounded.
        body = await request.body()
        if len(body) > limit:  # an ASGI server that does not frame bodies
            raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes")
        return body
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a JSON body against ``model``; every failure is an InvalidRequestError."""
    if not body.strip():
        raise InvalidRequestError("the request body is empty; send a JSON object")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise InvalidRequestError(f"the request body is not valid JSON: {errors[0]['msg']}") from None
        problems = describe_validation_error(exc)
        summary = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems[:5])
        raise InvalidRequestError(
            f"the request body does not fit {model.__name__}: {summary}", details={"errors": problems}
        ) from None
