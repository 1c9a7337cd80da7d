"""Build a ready runtime from a config: the one entry point the CLI, the gateway
and Python users share.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from brickwork.contracts.clock import Clock
from brickwork.contracts.provider import Provider
from brickwork.contracts.record import Recorder
from brickwork.guards.contract import InputContractGuard
from brickwork.runtime.config import Config, ProviderConfig, load_config
from brickwork.runtime.intent import IntentRouter, ProviderEmbedder
from brickwork.runtime.models import ModelPrice, Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.runtime.routing import MetadataRule, Router, RouteStrategy
from brickwork.state.base import StateBackend

if TYPE_CHECKING:
    from brickwork.observability.tracing import Tracing

__all__ = ["CONFIG_ENV", "build", "load", "make_providers"]

#: Environment variable naming the config file when none is given.
CONFIG_ENV = "BRICKWORK_CONFIG"


def build(
    config: Config | None = None,
    *,
    registry: Registry | None = None,
    entry_points: bool = True,
    state: StateBackend | None = None,
    clock: Clock | None = None,
    recorders: Sequence[Recorder] | None = None,
) -> Orchestrator:
    """An orchestrator for ``config``, with installed plugins loaded from entry points."""
    config = config or Config()
    if registry is None:
        registry = Registry(
            {
                name: PluginSettings(
                    enabled=pc.enabled,
                    versions=tuple(pc.versions) if pc.versions is not None else None,
                    labels=pc.labels,
                    model=pc.model,
                    embedding_model=pc.embedding_model,
                    policy=pc.policy,
                )
                for name, pc in config.plugins.items()
            }
        )
        if entry_points:
            registry.load_entry_points()
    providers = make_providers(config)
    for provider in registry.providers:  # from installed packages' register_providers hook
        providers.add(provider)
    routing = config.routing
    strategies: list[RouteStrategy] = []
    if routing.intent:
        strategies.append(
            IntentRouter(
                registry,
                ProviderEmbedder(providers, routing.intent_model),
                default=routing.default,
                floor=routing.intent_floor,
            )
        )
    router = Router(
        rules=[MetadataRule(r.name, r.match, r.plugin) for r in routing.rules],
        strategies=strategies,
        default=routing.default,
    )
    return Orchestrator(
        registry,
        providers=providers,
        state=state,
        clock=clock,
        router=router,
        recorders=recorders,
        input_guard=InputContractGuard(max_bytes=config.runtime.max_input_bytes),
        max_call_depth=config.runtime.max_call_depth,
        tracing=_tracing(config),
    )


def _tracing(config: Config) -> Tracing | None:
    tracing = config.observability.tracing
    if tracing.exporter == "none":
        return None  # OpenTelemetry is not even imported
    from brickwork.observability.tracing import configure_tracing

    return configure_tracing(tracing.exporter, endpoint=tracing.endpoint, service_name=tracing.service_name)


def make_providers(config: Config) -> Providers:
    """The provider table: the embedded local provider (always; it loads nothing until
    used) and every provider the config declares, with the price table."""
    providers = Providers(prices={model: ModelPrice(p.input, p.output) for model, p in config.prices.items()})
    declared = dict(config.providers)
    declared.setdefault("local", ProviderConfig())
    for name, pc in declared.items():
        providers.add(_provider(name, pc))
    return providers


def _provider(name: str, pc: ProviderConfig) -> Provider:
    # Imported on demand: a deployment that uses no remote provider never loads aiohttp.
    kind = pc.kind(name)
    if kind == "local":
        from brickwork.providers.local import LocalProvider

        opts = pc.options
        return LocalProvider(
            threads=opts.get("threads"),
            cache_dir=Path(opts["cache_dir"]) if opts.get("cache_dir") else None,
            n_ctx=int(opts.get("n_ctx", 4096)),
        )
    if kind == "openai":
        from brickwork.providers.openai import OpenAIProvider

        return OpenAIProvider(
            name,
            base_url=pc.base_url or "https://api.openai.com/v1",
            api_key=pc.api_key(),
            timeout=pc.timeout,
        )
    if kind == "anthropic":
        from brickwork.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            name,
            base_url=pc.base_url or "https://api.anthropic.com",
            api_key=pc.api_key(),
            timeout=pc.timeout,
        )
    from brickwork.providers.ollama import OllamaProvider

    return OllamaProvider(name, base_url=pc.base_url or "http://127.0.0.1:11434", timeout=pc.timeout)


def load(path: str | os.PathLike[str] | None = None) -> Orchestrator:
    """Build from a config file (``path``, else ``$BRICKWORK_CONFIG``, else defaults)."""
    path = path or os.environ.get(CONFIG_ENV)
    config = load_config(Path(path)) if path else Config()
    return build(config)
