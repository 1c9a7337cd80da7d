"""The pluggy hooks third-party packages implement (entry-point group ``brickwork``).

A package declares, in its ``pyproject.toml``::

    [project.entry-points.brickwork]
    my_plugins = "my_package.brickwork_plugins"

and that module implements a hook::

    from brickwork.plugin_api import hookimpl

    @hookimpl
    def register_plugins(register):
        register(MyPlugin)

Built-in plugins are registered through exactly the same path.

The markers are pure (a name, no state): a contract that plugins, providers and
the registry share without importing one another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["ENTRY_POINT_GROUP", "Hooks", "hookimpl", "hookspec"]

ENTRY_POINT_GROUP = "brickwork"
hookspec = pluggy.HookspecMarker("brickwork")
hookimpl = pluggy.HookimplMarker("brickwork")


class Hooks:
    """Hook specifications."""

    @hookspec
    def register_plugins(self, register: Callable[[type[Any]], None]) -> None:
        """Call ``register(PluginClass)`` once per plugin class (one version each)."""

    @hookspec
    def register_providers(self, register: Callable[[Any], None]) -> None:
        """Call ``register(provider)`` once per model provider instance."""
