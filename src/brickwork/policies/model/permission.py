"""The permission check: an operation the plugin did not declare is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from brickwork.contracts.errors import PermissionDeniedError
from brickwork.policies.model.base import Item, Model, ModelCall, ModelRun, WrapperModel

__all__ = ["AvailableModel", "PermittedModel"]


class PermittedModel(WrapperModel):
    """Refuses, before anything else, an operation whose permission (``model`` for
    chat, streams and scores, ``embed`` for embeddings) the plugin did not declare,
    or one with no model bound for it."""

    def __init__(self, inner: Model | None, *, permissions: frozenset[str], what: str) -> None:
        super().__init__(inner if inner is not None else _NoModel())
        self.permissions = permissions
        self.bound = inner is not None
        self.what = what

    def open(self, call: ModelCall, run: ModelRun) -> AsyncIterator[Item]:
        # Refused when asked (``ctx.model.stream()`` raises at once, as a call does);
        # past the check, it adds nothing to relay.
        if call.permission not in self.permissions:
            raise PermissionDeniedError(
                f"plugin {run.plugin} did not declare the {call.permission!r} permission", plugin=run.plugin
            )
        if not self.bound:
            raise PermissionDeniedError(f"plugin {run.plugin} has no {self.what} bound", plugin=run.plugin)
        return self.inner.open(call, run)


class AvailableModel(WrapperModel):
    """Refuses a model whose provider is missing or may not be called (``check`` raises:
    ``configuration_error``, ``real_provider_forbidden``) before any policy around
    it counts the call: no breaker permit, budget reservation or span for a call
    that was never made."""

    def __init__(self, inner: Model, *, check: Callable[[], object]) -> None:
        super().__init__(inner)
        self.check = check

    def open(self, call: ModelCall, run: ModelRun) -> AsyncIterator[Item]:
        self.check()
        return self.inner.open(call, run)


class _NoModel:
    """Stands in for a chain with no model: :meth:`PermittedModel.enter` refuses first."""

    def open(self, call: ModelCall, run: ModelRun) -> AsyncIterator[Item]:  # pragma: no cover
        raise AssertionError("an operation on a chain with no model was not refused")
