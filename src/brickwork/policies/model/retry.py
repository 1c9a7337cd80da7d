"""Retries: the inner model opened again while it fails before its first item."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import BrickworkError
from brickwork.contracts.policy import RetryPolicy
from brickwork.policies.model.base import Item, Model, ModelCall, ModelRun, WrapperModel
from brickwork.policies.retry import Retry

__all__ = ["RetryModel"]


class RetryModel(WrapperModel):
    """The retry policy (backoff, ``Retry-After``, bounded attempts, the run's deadline)
    on the way to the first item; once items flowed, an operation is never tried again."""

    def __init__(self, inner: Model, *, policy: RetryPolicy, clock: Clock, rng: random.Random) -> None:
        super().__init__(inner)
        self.retry = Retry(policy, clock, rng)
        self.clock = clock

    async def first(
        self, call: ModelCall, run: ModelRun, state: Any
    ) -> tuple[AsyncIterator[Item], Item | None]:
        attempt = 1
        while True:
            try:
                return await super().first(call, run, state)
            except BrickworkError as exc:
                delay = self.retry.delay_after(exc, attempt, run.deadline)
            await self.clock.sleep(delay)
            attempt += 1
