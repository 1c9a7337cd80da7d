"""Model policies: ``ctx.model``'s chain wrapped once in its policies.

Each policy is one small wrapper over one interface (:class:`Model`: an
operation's items), serving calls and streams with the same lines — the shape of
pydantic-ai's ``WrapperModel``, ``FallbackModel`` and ``InstrumentedModel``.
:func:`compose` puts them in their order once per binding.
"""

from brickwork.policies.model.base import (
    CallAccount,
    Ended,
    Item,
    Model,
    ModelCall,
    ModelRun,
    Operation,
    WrapperModel,
)
from brickwork.policies.model.breaker import BreakerModel
from brickwork.policies.model.budget import BudgetModel
from brickwork.policies.model.deadline import DeadlineModel
from brickwork.policies.model.fallback import FallbackModel
from brickwork.policies.model.metering import MeteredModel
from brickwork.policies.model.permission import AvailableModel, PermittedModel
from brickwork.policies.model.retry import RetryModel
from brickwork.policies.model.stack import Breakers, compose

__all__ = [
    "AvailableModel",
    "BreakerModel",
    "Breakers",
    "BudgetModel",
    "CallAccount",
    "DeadlineModel",
    "Ended",
    "FallbackModel",
    "Item",
    "MeteredModel",
    "Model",
    "ModelCall",
    "ModelRun",
    "Operation",
    "PermittedModel",
    "RetryModel",
    "WrapperModel",
    "compose",
]
