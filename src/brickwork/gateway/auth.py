"""Who is calling: the API key from the ``Authorization`` header, as a principal.

The orchestrator asks the principal about every plugin it is about to run (after
routing, version selection, each fallback and every nested call), so the key's
patterns hold on every path. :class:`KeyPrincipal` adds one rule for pass-through
plugins: they run only for the ``provider:model`` the request named, and only if
the key's patterns allow that model id (``openai:*``), whatever they say about
plugin names.

No raw key is ever logged, echoed in an error, or kept beyond the request (the
key store caches by digest).
"""

from __future__ import annotations

from dataclasses import dataclass

from brickwork.contracts.errors import AuthenticationError, PermissionDeniedError
from brickwork.storage.keys import ApiKey

__all__ = ["KeyPrincipal", "bearer", "require_admin"]


def bearer(value: str | None) -> str:
    """The key from the value of an ``Authorization: Bearer <key>`` header (``None``:
    there is none); never part of an error message."""
    if value is None:
        raise AuthenticationError("missing API key: send the header 'Authorization: Bearer <key>'")
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("malformed Authorization header: expected 'Bearer <key>'")
    return token


def require_admin(key: ApiKey) -> None:
    if not key.admin:
        raise PermissionDeniedError("this endpoint needs an admin key")


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """An API key as the orchestrator's :class:`~brickwork.contracts.request.Principal`.

    Attributes:
        key: the authenticated key.
        passthrough: names of the pass-through plugins (``passthrough-openai``).
        model: the ``provider:model`` this request may pass through to, if any.
    """

    key: ApiKey
    passthrough: frozenset[str] = frozenset()
    model: str | None = None
    model_plugin: str | None = None

    @property
    def tenant(self) -> str:
        return self.key.tenant

    def allows(self, plugin: str) -> bool:
        if plugin in self.passthrough:
            # A pass-through plugin's scope is the model it calls, not its own name:
            # only the one bound to this request, and only if the key allows it.
            return plugin == self.model_plugin and self.model is not None and self.key.allows(self.model)
        return self.key.allows(plugin)
