"""The shapes of the gateway's request and response bodies.

Brickwork's own routes forbid unknown fields (a typo is an error, not ignored).
The OpenAI-compatible ones ignore what they do not use, as OpenAI clients send
fields (``user``, ``tools``, ``seed`` …) that a plugin has no use for.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from brickwork.contracts.errors import InvalidRequestError

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "EmbeddingRequest",
    "ErrorBody",
    "ErrorDetail",
    "InvokeRequest",
    "RouteRequest",
    "StreamOptions",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InvokeRequest(_Strict):
    """``POST /v1/plugins/{ref}/invoke``: the plugin comes from the path, the tenant from the key."""

    input: dict[str, Any] | str = Field(
        description="the plugin's input object, or plain text for plugins with a `text` field"
    )
    metadata: dict[str, str] = Field(default_factory=dict, description="routing and experiment metadata")
    subject: str | None = Field(default=None, max_length=256, description="sticky key for experiments")
    cache_bypass: bool = Field(default=False, description="skip the cache read (still writes)")


class RouteRequest(InvokeRequest):
    """``POST /v1/route``: no plugin named; metadata rules, intent or the default decide."""


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine code (see brickwork.contracts.errors)")
    message: str
    plugin: str | None = None
    retry_after: float | None = Field(default=None, description="seconds")
    type: str | None = Field(default=None, description="OpenAI-style error category")
    param: str | None = None
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# --- OpenAI-compatible ---------------------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: str
    text: str | None = None


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise InvalidRequestError(f"only text content is supported, got a {part.type!r} part")
            parts.append(part.text)
        return "".join(parts)


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str = Field(min_length=1, max_length=256, description="a plugin ref, or 'provider:model'")
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="only 1 is supported")
    metadata: dict[str, str] | None = None


class EmbeddingRequest(_Lenient):
    model: str = Field(min_length=1, max_length=256)
    input: str | Annotated[list[str], Field(max_length=2048)] = Field(
        description="a text or a list of at most 2048 texts (token arrays are not supported)"
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
