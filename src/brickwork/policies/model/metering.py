"""Metering: each operation's usage and cost into the run's account, and its trace span."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brickwork.contracts.provider import ModelId, ModelPrice, StreamChunk
from brickwork.policies.model.base import Ended, Item, Model, ModelCall, ModelRun, WrapperModel

if TYPE_CHECKING:
    from brickwork.contracts.tracing import Tracer

__all__ = ["MeteredModel"]


class MeteredModel(WrapperModel):
    """What an operation used (reported, else estimated: see :meth:`Ended.usage`) is
    added to the run's account at its price, failed operations included once items
    flowed; a stream's first chunk names the model that answers. With a tracer,
    each attempt is one span under GenAI conventions (``gen_ai.operation.name``,
    provider, request and response model, token usage as the provider reported it,
    finish reason), a stream's from its opening to its last chunk."""

    def __init__(self, inner: Model, *, model: ModelId, price: ModelPrice, tracer: Tracer | None) -> None:
        super().__init__(inner)
        self.model = model
        self.name = str(model)
        self.price = price
        self.tracer = tracer

    async def enter(self, call: ModelCall, run: ModelRun) -> Any:
        if self.tracer is None:
            return None
        operation = "chat" if call.operation == "stream" else call.operation
        span = self.tracer.model_call(
            operation=operation, provider=self.model.provider, model=self.model.model
        )
        return span, span.__enter__()

    async def first(self, call: ModelCall, run: ModelRun, state: Any) -> tuple[Any, Item | None]:
        items, item = await super().first(call, run, state)
        if state is not None and item is not None:
            model = getattr(item, "model", None)
            if isinstance(model, str):  # what the provider says answered
                state[1].set_attribute("gen_ai.response.model", model)
        if isinstance(item, StreamChunk) and item.model is None:
            item = item.model_copy(update={"model": self.model.model})  # which model answers
        return items, item

    async def exit(self, call: ModelCall, run: ModelRun, state: Any, ended: Ended) -> None:
        usage = ended.usage(call)
        if usage is not None:
            account = run.account
            account.usage.add(usage)
            account.cost += self.price.cost(usage)
            if self.name not in account.models:
                account.models.append(self.name)
        if state is not None:
            manager, span = state
            if usage is not None and ended.reported is not None:  # (never an estimate)
                span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            if ended.finish is not None:
                span.set_attribute("gen_ai.response.finish_reasons", [ended.finish])
            error = ended.error
            manager.__exit__(type(error) if error else None, error, error.__traceback__ if error else None)
