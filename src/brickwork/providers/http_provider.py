"""The base of providers that speak HTTP with an API key (OpenAI, Anthropic)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from brickwork.contracts.errors import ConfigurationError
from brickwork.providers.http import HttpClient

__all__ = ["HttpProvider"]


class HttpProvider:
    """What every provider that speaks HTTP with an API key has in common:
    construction from the environment, a repr without the key, and closing.

    Subclasses set ``env_prefix`` (``OPENAI`` reads ``$OPENAI_API_KEY`` and
    ``$OPENAI_BASE_URL``) and ``default_base_url``, and keep their
    :class:`HttpClient` in ``_http``.
    """

    is_real = True
    env_prefix: ClassVar[str]
    default_base_url: ClassVar[str]
    name: str
    base_url: str
    _http: HttpClient

    def __init__(self, name: str, *, base_url: str, api_key: str | None = None, **kwargs: Any) -> None:
        raise NotImplementedError  # pragma: no cover - each provider defines its own

    @classmethod
    def from_env(
        cls,
        name: str | None = None,
        *,
        key_env: str | None = None,
        base_url_env: str | None = None,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """The key from ``$<PREFIX>_API_KEY`` (required), the base URL from
        ``$<PREFIX>_BASE_URL`` (default: the vendor's)."""
        env = os.environ if environ is None else environ
        name = name or cls.env_prefix.lower()
        key_env = key_env or f"{cls.env_prefix}_API_KEY"
        base_url_env = base_url_env or f"{cls.env_prefix}_BASE_URL"
        api_key = env.get(key_env)
        if not api_key:
            raise ConfigurationError(f"{name}: environment variable {key_env} is not set")
        base_url = env.get(base_url_env) or cls.default_base_url
        return cls(name, base_url=base_url, api_key=api_key, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    def context_window(self, model: str) -> int | None:
        """Unknown: these APIs do not say (a plugin plans for the default window)."""
        return None

    @property
    def closed(self) -> bool:
        """No connection is open (before the first call, and after :meth:`aclose`)."""
        return self._http.closed

    async def aclose(self) -> None:
        """Close the HTTP session; a later call opens a new one."""
        await self._http.aclose()
