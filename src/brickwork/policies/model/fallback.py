"""Fallback models: the next model of the chain when one fails before its first item."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from brickwork.contracts.errors import BrickworkError, FallbacksExhaustedError
from brickwork.contracts.provider import ModelId
from brickwork.policies.model.base import Item, Model, ModelCall, ModelRun, WrapperModel

__all__ = ["FallbackModel"]


class FallbackModel(WrapperModel):
    """Tries each model in order while one fails with a code of ``fallback.on``
    (an open breaker included) before its first item; once items flowed, a failure is
    the operation's. A warning says which model failed when another one is tried;
    all failing is ``fallbacks_exhausted`` with every error (one model: its error).

    ``inner`` is the first model; ``models`` the whole chain, each already wrapped in
    its own per-model policies.
    """

    def __init__(self, models: Sequence[tuple[ModelId, Model]], *, on: Sequence[str]) -> None:
        super().__init__(models[0][1])
        self.models = tuple(models)
        self.on = frozenset(on)

    async def first(
        self, call: ModelCall, run: ModelRun, state: Any
    ) -> tuple[AsyncIterator[Item], Item | None]:
        errors: list[BrickworkError] = []
        last = len(self.models) - 1
        for position, (model_id, model) in enumerate(self.models):
            items = model.open(call, run).__aiter__()
            try:
                return items, await items.__anext__()
            except StopAsyncIteration:
                return items, None
            except BrickworkError as exc:
                if exc.code not in self.on:
                    raise
                errors.append(exc)
                if position < last:
                    run.account.warnings.append(f"model {model_id} failed ({exc.code}); trying next")
        raise exhausted(errors, plugin=run.plugin)


def exhausted(errors: list[BrickworkError], *, plugin: str) -> BrickworkError:
    if len(errors) == 1:
        return errors[0]
    return FallbacksExhaustedError(
        f"all {len(errors)} models failed for {plugin}: " + "; ".join(f"{e.code}" for e in errors),
        errors=errors,
        plugin=plugin,
    )
