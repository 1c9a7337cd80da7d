"""Build a ready runtime from a config: the one entry point the CLI, the gateway
and Python users share.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from brickwork.contracts.clock import Clock
from brickwork.guards.contract import InputContractGuard
from brickwork.runtime.config import Config, load_config
from brickwork.runtime.models import ModelPrice, Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import Recorder
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.runtime.routing import MetadataRule, Router
from brickwork.state.base import StateBackend

__all__ = ["CONFIG_ENV", "build", "load"]

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
    providers = Providers(prices={model: ModelPrice(p.input, p.output) for model, p in config.prices.items()})
    router = Router(
        rules=[MetadataRule(r.name, r.match, r.plugin) for r in config.routing.rules],
        default=config.routing.default,
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
    )


def load(path: str | os.PathLike[str] | None = None) -> Orchestrator:
    """Build from a config file (``path``, else ``$BRICKWORK_CONFIG``, else defaults)."""
    path = path or os.environ.get(CONFIG_ENV)
    config = load_config(Path(path)) if path else Config()
    return build(config)
