"""The per-attempt limit: on the wait for the first item, never past the run's deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import ProviderTimeoutError
from brickwork.contracts.provider import ModelId
from brickwork.policies.model.base import Item, Model, ModelCall, ModelRun, WrapperModel

__all__ = ["DeadlineModel"]


class DeadlineModel(WrapperModel):
    """``timeout.attempt`` seconds (at most the run's time left) for a call's answer or a
    stream's first chunk; each later chunk within the run's deadline.

    Only waits are timed, never the ``yield``: a timeout around a yield would fire in
    the reader's code, where it cannot be told from a cancellation of the request. A
    wait with no limit of its own, in the task the run's timer already covers, gets
    no second timer: the run ends with ``deadline_exceeded`` when it passes.
    """

    def __init__(self, inner: Model, *, model: ModelId, attempt: float | None, clock: Clock) -> None:
        super().__init__(inner)
        self.model = model
        self.attempt = attempt
        self.clock = clock

    def open(self, call: ModelCall, run: ModelRun) -> AsyncIterator[Item]:
        if call.operation != "stream" and self.attempt is None and run.timed_by_run():
            # A call is read where it is made: in the task the run's timer covers.
            return self.inner.open(call, run)
        return super().open(call, run)

    async def first(
        self, call: ModelCall, run: ModelRun, state: Any
    ) -> tuple[AsyncIterator[Item], Item | None]:
        if self.attempt is None and run.timed_by_run():
            return await super().first(call, run, state)
        limit = run.deadline.attempt(self.attempt)
        try:
            async with self.clock.timeout(limit):
                return await super().first(call, run, state)
        except TimeoutError:
            raise ProviderTimeoutError(
                f"{self.model} did not answer within {limit:.3g}s", plugin=run.plugin
            ) from None

    async def following(self, items: AsyncIterator[Item], run: ModelRun) -> Item | None:
        if run.timed_by_run():
            return await super().following(items, run)
        try:
            async with self.clock.timeout(run.deadline.remaining()):
                return await super().following(items, run)
        except TimeoutError:
            raise ProviderTimeoutError(
                f"stream from {self.model} passed the run's deadline", plugin=run.plugin
            ) from None
