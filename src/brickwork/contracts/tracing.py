"""The tracing interface the runtime opens its spans through.

The runtime never imports OpenTelemetry or :mod:`brickwork.observability`: it
holds a :class:`Tracer` (or ``None``, and then makes no tracing call at all).
:class:`brickwork.observability.tracing.Tracing` is the implementation; it meets
this protocol structurally, so nothing here names it.

Spans carry only names, versions, codes and counts: never input or output text,
keys or secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

__all__ = ["AttributeValue", "Span", "Tracer"]

#: What a span attribute may hold (the OpenTelemetry attribute types).
AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]


class Span(Protocol):
    """An open span: the runtime only adds attributes to it."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...


class Tracer(Protocol):
    """Opens the three kinds of span of a request; each is a context manager.

    A span ends when its block does; an exception leaving the block marks the
    span as failed with the error's code.
    """

    def request(self, *, trace_id: str, tenant: str, depth: int) -> AbstractContextManager[Span]:
        """The span of one request (nested calls from plugins get their own)."""
        ...

    def plugin(self, *, name: str, version: str, prompt_version: str | None) -> AbstractContextManager[Span]:
        """A child span for one run of a plugin version."""
        ...

    def model_call(self, *, operation: str, provider: str, model: str) -> AbstractContextManager[Span]:
        """A child span for one model call (``operation`` as in the GenAI conventions)."""
        ...
