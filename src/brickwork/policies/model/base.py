"""The one interface every model policy wraps, and the relay they share.

A model call and a model stream are the same thing here: :meth:`Model.open`
yields the items of one operation — a chat completion, an embedding batch or a
set of scores is one item, a stream is its chunks. So a policy is written once
and serves both: its limit on the wait for the first item is a call's attempt
limit and a stream's time to its first chunk; what it counts when the items end
is a call's result and a stream's whole reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from brickwork.contracts.provider import (
    Completion,
    CompletionRequest,
    Embeddings,
    EmbedRequest,
    Message,
    ScoreRequest,
    Scores,
    StreamChunk,
    Usage,
    estimate_tokens,
)
from brickwork.policies.timeout import Deadline

__all__ = [
    "CallAccount",
    "Ended",
    "Item",
    "Model",
    "ModelCall",
    "ModelRun",
    "Operation",
    "WrapperModel",
    "aclose",
]

#: What a model operation yields: one result, or a stream's chunks.
Item = Completion | StreamChunk | Embeddings | Scores
#: The operations, named as OpenTelemetry's GenAI conventions name them (``stream``
#: is a chat whose reply comes in chunks).
Operation = Literal["chat", "stream", "embeddings", "score"]


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One operation a plugin asks of its model chain, independent of the model."""

    operation: Operation
    messages: Sequence[Message] = ()
    texts: Sequence[str] = ()
    candidates: Sequence[str] = ()
    max_tokens: int = 256
    temperature: float = 0.0
    json_schema: dict[str, Any] | None = None
    stop: Sequence[str] = ()
    purpose: Literal["query", "passage"] = "query"

    @property
    def permission(self) -> str:
        """The plugin permission the operation needs."""
        return "embed" if self.operation == "embeddings" else "model"

    def request(self, model: str) -> CompletionRequest | EmbedRequest | ScoreRequest:
        """The provider request for ``model`` (a name within its provider)."""
        if self.operation == "embeddings":
            return EmbedRequest(model=model, texts=list(self.texts), purpose=self.purpose)
        if self.operation == "score":
            return ScoreRequest(model=model, messages=list(self.messages), candidates=list(self.candidates))
        return CompletionRequest(
            model=model,
            messages=list(self.messages),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stop=list(self.stop),
            json_schema=self.json_schema,
        )

    def estimate(self) -> Usage:
        """The most the operation can use, before it is made (for budgets)."""
        if self.operation == "embeddings":
            return Usage(input_tokens=estimate_tokens(self.texts))
        prompt = estimate_tokens([m.content for m in self.messages])
        if self.operation == "score":
            return Usage(
                input_tokens=prompt * len(self.candidates), output_tokens=estimate_tokens(self.candidates)
            )
        return Usage(input_tokens=prompt, output_tokens=self.max_tokens)


@dataclass
class CallAccount:
    """What a run's model calls used; the orchestrator puts it in the envelope."""

    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    models: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ModelRun:
    """What one plugin run brings to each of its model calls."""

    plugin: str
    tenant: str
    deadline: Deadline
    account: CallAccount
    #: The task the run's own timer covers (the orchestrator sets it): a wait in
    #: that task with no limit of its own needs no second timer.
    deadline_task: asyncio.Task[Any] | None = None

    def timed_by_run(self) -> bool:
        return self.deadline_task is not None and asyncio.current_task() is self.deadline_task


class Model(Protocol):
    """The model-client interface every policy wraps: one operation's items."""

    def open(self, call: ModelCall, run: ModelRun) -> AsyncIterator[Item]: ...


@dataclass(slots=True)
class Ended:
    """How an operation's items ended, for the policies that count it."""

    items: int = 0
    #: The last usage the provider reported (a result's, or a stream's final chunk's).
    reported: Usage | None = None
    error: BaseException | None = None
    #: The reader stopped before the end: nobody's fault.
    stopped: bool = False
    #: Why the model stopped, as it said (a call's, or a stream's last chunk's).
    finish: str | None = None

    def see(self, item: Item) -> None:
        self.items += 1
        usage = item.usage
        if usage is not None:
            self.reported = usage
        finish = getattr(item, "finish_reason", None)
        if finish is not None:
            self.finish = finish

    def usage(self, call: ModelCall) -> Usage | None:
        """What the operation used (``None`` if nothing flowed): as reported, else the
        input estimated and one output token a chunk; always one call."""
        if not self.items:
            return None
        reported = self.reported
        if reported is None:
            return Usage(input_tokens=call.estimate().input_tokens, output_tokens=self.items, calls=1)
        if reported.calls == 1:
            return reported  # (read, never changed, by those who count it)
        return Usage(input_tokens=reported.input_tokens, output_tokens=reported.output_tokens, calls=1)


async def aclose(items: AsyncIterator[Item]) -> None:
    close = getattr(items, "aclose", None)
    if close is not None:
        await close()


class WrapperModel:
    """A policy around ``inner`` (the shape of pydantic-ai's ``WrapperModel``).

    :meth:`open` relays the inner model's items and calls the hooks a policy
    overrides: :meth:`enter` before the inner model opens, :meth:`first` to open
    it and wait for its first item, :meth:`following` for each later item,
    :meth:`exit` once the items ended (however they did). (A hook a policy does
    not override is not even awaited: a model call goes through every layer.)
    """

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        kind = type(self)
        self._enters = kind.enter is not WrapperModel.enter
        self._exits = kind.exit is not WrapperModel.exit

    async def enter(self, call: ModelCall, run: ModelRun) -> Any:
        """Before the inner model opens; what it returns is handed to the other hooks."""
        return None

    async def first(
        self, call: ModelCall, run: ModelRun, state: Any
    ) -> tuple[AsyncIterator[Item], Item | None]:
        """Open the inner model and wait for its first item (``None``: it had none).

        On failure the inner items are closed and the first error is raised.
        """
        items = self.inner.open(call, run).__aiter__()
        try:
            return items, await items.__anext__()
        except StopAsyncIteration:
            return items, None
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                await aclose(items)
            raise

    async def following(self, items: AsyncIterator[Item], run: ModelRun) -> Item | None:
        """The next item once the first flowed (``None`` at the end)."""
        try:
            return await items.__anext__()
        except StopAsyncIteration:
            return None

    async def exit(self, call: ModelCall, run: ModelRun, state: Any, ended: Ended) -> None:
        """After the last item, an error, or the reader stopping early."""

    async def open(self, call: ModelCall, run: ModelRun) -> AsyncIterator[Item]:
        state = await self.enter(call, run) if self._enters else None
        ended = Ended()
        try:
            items, item = await self.first(call, run, state)
            try:
                while item is not None:
                    ended.see(item)
                    try:
                        yield item
                    except GeneratorExit:
                        ended.stopped = True
                        raise
                    item = await self.following(items, run)
            finally:
                if ended.stopped:
                    # The reader is gone: an error closing the inner items now is
                    # nobody's to handle, nor the model's fault.
                    with contextlib.suppress(Exception):
                        await aclose(items)
                elif item is not None:  # (ended by an error: an exhausted one needs no close)
                    await aclose(items)
        except GeneratorExit:
            raise
        except BaseException as exc:
            ended.error = exc
            raise
        finally:
            if self._exits:
                await self.exit(call, run, state, ended)
