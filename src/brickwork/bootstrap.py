"""The composition root: a config becomes providers, state, stores and an orchestrator.

The one place that knows every concrete part. The CLI, the gateway and Python users
call :func:`build` or :func:`load` (``brickwork.build`` / ``brickwork.load``); the
runtime itself knows only the contracts it is given.

Provider *types* are not listed here: each registers a factory through the
``register_provider_types`` hook (the built-in ``local``, ``openai``, ``anthropic``
and ``ollama`` from :mod:`brickwork.providers`, like any installed package), and a
config entry's ``type`` resolves through that table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import ConfigFileError, ProviderValidationError
from brickwork.contracts.provider import ProviderFactory, ProviderSettings
from brickwork.contracts.record import Recorder
from brickwork.contracts.tracing import Tracer
from brickwork.guards.contract import InputContractGuard
from brickwork.runtime.config import Config, ProviderConfig, load_config
from brickwork.runtime.models import ModelPrice, Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.runtime.routing import MetadataRule, Router, RouteStrategy
from brickwork.runtime.validation import validate_provider
from brickwork.state.base import StateBackend

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
    """An orchestrator for ``config``, with installed plugins and provider types loaded
    from entry points (``entry_points=False``, or a ``registry`` of your own: only what
    it registered)."""
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
    providers = make_providers(config, registry.provider_types)
    for provider in registry.providers:  # from installed packages' register_providers hook
        if provider.name in providers.providers:
            raise ProviderValidationError(
                f"provider {provider.name!r} ({type(provider).__qualname__}, from the "
                "register_providers hook) has the name of a provider the config declares"
            )
        providers.add(provider)
    return Orchestrator(
        registry,
        providers=providers,
        state=state,
        clock=clock,
        router=_router(config, registry, providers),
        recorders=recorders,
        input_guard=InputContractGuard(max_bytes=config.runtime.max_input_bytes),
        max_call_depth=config.runtime.max_call_depth,
        tracing=_tracing(config),
    )


def load(path: str | os.PathLike[str] | None = None) -> Orchestrator:
    """Build from a config file (``path``, else ``$BRICKWORK_CONFIG``, else defaults)."""
    path = path or os.environ.get(CONFIG_ENV)
    config = load_config(Path(path)) if path else Config()
    return build(config)


def make_providers(config: Config, types: Mapping[str, ProviderFactory]) -> Providers:
    """The provider table: every provider the config declares, each built by the factory
    of its type, and the embedded ``local`` one when that type is known (it loads
    nothing until used); with the price table."""
    providers = Providers(prices={model: ModelPrice(p.input, p.output) for model, p in config.prices.items()})
    declared = dict(config.providers)
    if "local" in types:
        declared.setdefault("local", ProviderConfig())
    for name, pc in declared.items():
        kind = pc.kind(name)
        factory = types.get(kind)
        if factory is None:
            known = ", ".join(sorted(types)) or "none"
            problem = (
                f"providers.{name}: unknown provider type {kind!r} (known types: {known}; "
                "a package adds one through the register_provider_types hook)"
            )
            raise ConfigFileError(f"config is invalid:\n{problem}", details={"errors": [problem]})
        provider = factory(
            ProviderSettings(
                name=name, base_url=pc.base_url, api_key=pc.api_key(), timeout=pc.timeout, options=pc.options
            )
        )
        validate_provider(provider, source=f"provider type {kind!r}")
        providers.add(provider)
    return providers


def _router(config: Config, registry: Registry, providers: Providers) -> Router:
    routing = config.routing
    strategies: list[RouteStrategy] = []
    if routing.intent:
        # Imported only when intent routing is on: it needs numpy.
        from brickwork.runtime.intent import IntentRouter, ProviderEmbedder

        strategies.append(
            IntentRouter(
                registry,
                ProviderEmbedder(providers, routing.intent_model),
                default=routing.default,
                floor=routing.intent_floor,
            )
        )
    return Router(
        rules=[MetadataRule(r.name, r.match, r.plugin) for r in routing.rules],
        strategies=strategies,
        default=routing.default,
    )


def _tracing(config: Config) -> Tracer | None:
    tracing = config.observability.tracing
    if tracing.exporter == "none":
        return None  # OpenTelemetry is not even imported
    from brickwork.observability.tracing import configure_tracing

    return configure_tracing(tracing.exporter, endpoint=tracing.endpoint, service_name=tracing.service_name)
