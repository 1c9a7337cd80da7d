"""A request's answer as it is produced: the plugin's text piece by piece, then the
envelope (:meth:`Orchestrator.stream`), and the text of an answer (its plugin's
``text_field``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from brickwork.contracts.errors import BrickworkError
from brickwork.contracts.request import Envelope, Principal, Request
from brickwork.runtime.context import TextSink
from brickwork.runtime.registry import Registry

__all__ = ["stream_answer", "text_of"]

#: ``Orchestrator.handle`` as this module calls it.
Handle = Callable[..., Awaitable[Envelope]]


async def stream_answer(
    handle: Handle,
    registry: Registry,
    request: Request | Mapping[str, Any],
    *,
    principal: Principal | None = None,
) -> AsyncIterator[str | Envelope]:
    """``handle(request)`` as one iterator: each piece of the plugin's text as it is
    produced, then the envelope (a failure is raised, after the pieces that came).
    A plugin that does not stream (or an answer from the cache) gives its text as
    one piece before the envelope. Closing the iterator early cancels the run."""
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    on_text: TextSink = pieces.put_nowait
    task = asyncio.ensure_future(handle(request, principal=principal, on_text=on_text))
    task.add_done_callback(lambda _: pieces.put_nowait(None))
    try:
        streamed = False
        while (piece := await pieces.get()) is not None:
            streamed = True
            yield piece
        envelope = task.result()
        if not streamed and (text := text_of(registry, envelope)):
            yield text
        yield envelope
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, BrickworkError):
                await task


def text_of(registry: Registry, envelope: Envelope) -> str | None:
    """The text of an answer: its plugin's ``text_field``, else a ``text`` field."""
    try:
        entry = registry.resolve(f"{envelope.plugin}@{envelope.version}")
    except BrickworkError:  # unregistered since it answered
        field = None
    else:
        field = entry.cls.text_field
    text = envelope.output.get(field or "text")
    return text if isinstance(text, str) else None
