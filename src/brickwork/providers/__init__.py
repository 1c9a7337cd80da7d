"""Model providers, one module per backend. Test doubles live in :mod:`brickwork.testing`.

This module is also the entry point (``builtin-providers`` in the ``brickwork``
group) through which the built-in provider *types* register, exactly as an
installed package adds its own: a config entry ``providers.<name>`` with
``type: openai`` (or named ``openai``) is built by the factory registered here.
Each factory imports its backend only when called, so a deployment that uses no
remote provider never loads aiohttp.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from brickwork.contracts.hooks import hookimpl
from brickwork.contracts.provider import Provider, ProviderFactory, ProviderSettings

__all__ = ["register_provider_types"]


@hookimpl
def register_provider_types(register: Callable[[str, ProviderFactory], None]) -> None:
    register("local", _local)
    register("openai", _openai)
    register("anthropic", _anthropic)
    register("ollama", _ollama)


def _local(settings: ProviderSettings) -> Provider:
    from brickwork.providers.local import LocalProvider

    opts = settings.options
    return LocalProvider(
        threads=opts.get("threads"),
        cache_dir=Path(opts["cache_dir"]) if opts.get("cache_dir") else None,
        n_ctx=int(opts.get("n_ctx", 4096)),
    )


def _openai(settings: ProviderSettings) -> Provider:
    from brickwork.providers.openai import DEFAULT_BASE_URL, OpenAIProvider

    return OpenAIProvider(
        settings.name,
        base_url=settings.base_url or DEFAULT_BASE_URL,
        api_key=settings.api_key,
        timeout=settings.timeout,
    )


def _anthropic(settings: ProviderSettings) -> Provider:
    from brickwork.providers.anthropic import DEFAULT_BASE_URL, AnthropicProvider

    return AnthropicProvider(
        settings.name,
        base_url=settings.base_url or DEFAULT_BASE_URL,
        api_key=settings.api_key,
        timeout=settings.timeout,
    )


def _ollama(settings: ProviderSettings) -> Provider:
    from brickwork.providers.ollama import DEFAULT_BASE_URL, OllamaProvider

    return OllamaProvider(
        settings.name, base_url=settings.base_url or DEFAULT_BASE_URL, timeout=settings.timeout
    )
