"""Step 1, route: which plugin a request is for.

Explicit ref first, then metadata rules in order, then the pluggable strategies
(intent routing plugs in here), then the configured default; else a typed error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Protocol

from brickwork.contracts.errors import NoRouteError
from brickwork.contracts.refs import PluginRef
from brickwork.contracts.request import Request, RouteDecision

__all__ = ["MetadataRule", "RouteStrategy", "Router"]


@dataclass(frozen=True)
class MetadataRule:
    """Route to ``plugin`` when every ``match`` key's metadata value fits its glob."""

    name: str
    match: dict[str, str]
    plugin: str

    def __post_init__(self) -> None:
        PluginRef.parse(self.plugin)

    def matches(self, metadata: dict[str, str]) -> bool:
        return all(
            key in metadata and fnmatchcase(metadata[key], pattern) for key, pattern in self.match.items()
        )


class RouteStrategy(Protocol):
    """A way to choose a plugin for a request with no ref (e.g. intent)."""

    async def route(self, request: Request) -> RouteDecision | None:
        """A decision, or ``None`` to abstain."""
        ...


class Router:
    def __init__(
        self,
        rules: Sequence[MetadataRule] = (),
        strategies: Sequence[RouteStrategy] = (),
        default: str | None = None,
    ) -> None:
        self.rules = list(rules)
        self.strategies = list(strategies)
        self.default = default
        if default is not None:
            PluginRef.parse(default)

    async def route(self, request: Request) -> RouteDecision:
        if request.plugin is not None:
            PluginRef.parse(request.plugin)  # a bad ref is refused here
            return RouteDecision(method="explicit", ref=request.plugin)
        for rule in self.rules:
            if rule.matches(request.metadata):
                return RouteDecision(method="metadata", ref=rule.plugin, rule=rule.name)
        for strategy in self.strategies:
            decision = await strategy.route(request)
            if decision is not None:
                return decision
        if self.default is not None:
            return RouteDecision(method="default", ref=self.default)
        raise NoRouteError(
            "request names no plugin and no routing rule matched its metadata "
            f"{sorted(request.metadata)}; name a plugin or configure a default"
        )
