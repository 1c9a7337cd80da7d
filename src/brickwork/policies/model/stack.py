"""The model policies composed once per binding, in their one order."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from brickwork.contracts.clock import Clock
from brickwork.contracts.policy import BreakerPolicy, Policy
from brickwork.contracts.provider import ModelId, ModelPrice
from brickwork.policies.breaker import CircuitBreaker
from brickwork.policies.model.base import Model
from brickwork.policies.model.breaker import BreakerModel
from brickwork.policies.model.budget import BudgetModel
from brickwork.policies.model.deadline import DeadlineModel
from brickwork.policies.model.fallback import FallbackModel
from brickwork.policies.model.metering import MeteredModel
from brickwork.policies.model.permission import AvailableModel, PermittedModel
from brickwork.policies.model.retry import RetryModel
from brickwork.state.base import StateBackend

if TYPE_CHECKING:
    from brickwork.contracts.tracing import Tracer

__all__ = ["Breakers", "compose"]

#: Where breakers come from: ``(state key, policy, label)`` → the breaker kept for it.
Breakers = Callable[[str, BreakerPolicy, str], CircuitBreaker]


def compose(
    chain: Sequence[ModelId],
    *,
    plugin: str,
    policy: Policy,
    permissions: frozenset[str],
    what: str,
    leaf: Callable[[ModelId], Model],
    available: Callable[[ModelId], object],
    price: Callable[[ModelId], ModelPrice],
    breakers: Breakers,
    state: StateBackend,
    clock: Clock,
    rng: random.Random,
    tracer: Tracer | None,
) -> Model:
    """``chain`` wrapped in ``policy``, outermost first::

        permission → fallback over the chain → for each model:
            provider available → breaker (plugin + provider) → retry → attempt limit
            → budget → metering → provider

    ``available(model)`` raises when a model's provider is missing or forbidden.

    A policy that is off adds no layer (no retry policy, no budget, one model: no
    fallback). ``what`` names the chain in a refusal ("model", "embedding model").
    """
    models: list[tuple[ModelId, Model]] = []
    for model_id in chain:
        model: Model = MeteredModel(leaf(model_id), model=model_id, price=price(model_id), tracer=tracer)
        if policy.budget is not None:
            model = BudgetModel(model, policy=policy.budget, price=price(model_id), state=state, clock=clock)
        model = DeadlineModel(model, model=model_id, attempt=policy.timeout.attempt, clock=clock)
        if policy.retry is not None:
            model = RetryModel(model, policy=policy.retry, clock=clock, rng=rng)
        if policy.breaker is not None and policy.breaker.per_model:
            label = f"{plugin} via {model_id.provider}"
            breaker = breakers(f"breaker:model:{plugin}:{model_id.provider}", policy.breaker, label)
            model = BreakerModel(model, breaker=breaker, clock=clock)
        model = AvailableModel(model, check=functools.partial(available, model_id))
        models.append((model_id, model))
    inner: Model | None = None
    if len(models) == 1:
        inner = models[0][1]
    elif models:
        inner = FallbackModel(models, on=policy.fallback.on)
    return PermittedModel(inner, permissions=permissions, what=what)
