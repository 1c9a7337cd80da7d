"""Brickwork: a plugin platform for LLM-powered products.

Each capability is a plugin with a typed contract, versioned prompts, its own
model binding and its own operational policy; the orchestrator routes, applies
policy, guards and records every call.

Quick use::

    import brickwork

    runtime = brickwork.load()              # config from $BRICKWORK_CONFIG, or defaults
    envelope = runtime.run_sync({"plugin": "sentiment", "input": "I love it"})
"""

from brickwork.bootstrap import build, load
from brickwork.contracts import *  # noqa: F403 - the public types are re-exported whole
from brickwork.contracts import __all__ as _contracts_all
from brickwork.contracts.hooks import hookimpl
from brickwork.runtime.config import Config, load_config
from brickwork.runtime.models import ModelPrice, Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import PluginEntry, PluginSettings, Registry
from brickwork.runtime.routing import MetadataRule, Router

__version__ = "0.1.0"

__all__ = [
    *_contracts_all,
    "Config",
    "MetadataRule",
    "ModelPrice",
    "Orchestrator",
    "PluginEntry",
    "PluginSettings",
    "Providers",
    "Registry",
    "Router",
    "build",
    "hookimpl",
    "load",
    "load_config",
]
