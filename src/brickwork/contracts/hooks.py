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

from brickwork.contracts.provider import ProviderFactory

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
        """Call ``register(provider)`` once per model provider instance.

        Each is checked when it registers: it must be a
        :class:`~brickwork.contracts.provider.Provider`, with a name that model ids
        can carry, and no other provider may have that name.
        """

    @hookspec
    def register_provider_types(self, register: Callable[[str, ProviderFactory], None]) -> None:
        """Call ``register(type_name, factory)`` once per kind of provider a config can declare.

        A ``providers`` entry of the config with ``type: <type_name>`` (or named like
        the type) is built by ``factory(ProviderSettings)``. The built-in types
        (``local``, ``openai``, ``anthropic``, ``ollama``) register here too.
        """
