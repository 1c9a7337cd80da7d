"""The plugin registry: every version of every plugin, and the labels pointing at them.

Plugins arrive through the ``register_plugins`` hook (built-ins and third-party
packages alike, via the ``brickwork`` entry-point group) or through :meth:`add` at
run time. Versions can be added, relabelled and removed while requests are in
flight: a request keeps the entry it resolved.

The same hooks bring providers (``register_providers``) and provider types
(``register_provider_types``); the registry checks and keeps them for the
composition root (:mod:`brickwork.bootstrap`), which builds the provider table.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy
from jinja2 import Template

from brickwork.contracts.errors import PluginNotFoundError, PluginValidationError, ProviderValidationError
from brickwork.contracts.hooks import ENTRY_POINT_GROUP, Hooks
from brickwork.contracts.plugin import Plugin
from brickwork.contracts.policy import Policy
from brickwork.contracts.provider import Provider, ProviderFactory
from brickwork.contracts.refs import LABEL_RE, PluginRef, Version
from brickwork.runtime.validation import (
    compile_prompts,
    validate_plugin_class,
    validate_provider,
    validate_provider_type,
)

__all__ = ["PluginEntry", "PluginSettings", "Registry"]

AnyPlugin = Plugin[Any, Any]


@dataclass(frozen=True)
class PluginSettings:
    """What configuration may change about a plugin (see :mod:`brickwork.runtime.config`)."""

    enabled: bool = True
    versions: tuple[str, ...] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None
    embedding_model: str | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PluginEntry:
    """One registered plugin version with its effective policy and model."""

    cls: type[AnyPlugin]
    instance: AnyPlugin
    version: Version
    policy: Policy
    model: str | None
    source: str
    embedding_model: str | None = None
    #: The plugin's prompts, compiled once at registration (see :func:`compile_prompts`).
    templates: Mapping[str, Template] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cls.name

    @functools.cached_property
    def ref(self) -> str:  # read several times per request: computed once
        return f"{self.cls.name}@{self.version}"

    def contract(self) -> tuple[str, str]:
        """Input and output JSON schemas, canonical, for comparing contracts."""
        return (
            json.dumps(self.cls.input_type.model_json_schema(), sort_keys=True),
            json.dumps(self.cls.output_type.model_json_schema(), sort_keys=True),
        )


class Registry:
    """Holds plugin versions and labels.

    Args:
        settings: per-plugin configuration, by plugin name.
    """

    def __init__(self, settings: Mapping[str, PluginSettings] | None = None) -> None:
        self._settings: dict[str, PluginSettings] = dict(settings or {})
        self._plugins: dict[str, dict[Version, PluginEntry]] = {}
        self._labels: dict[str, dict[str, Version]] = {}
        self.listeners: list[Callable[[str, str], None]] = []
        #: Provider instances that installed packages registered (register_providers hook).
        self.providers: list[Provider] = []
        #: Provider type name → factory (register_provider_types hook): what a config's
        #: ``providers.<name>.type`` resolves through.
        self.provider_types: dict[str, ProviderFactory] = {}

    # --- loading ---------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load every installed package that declares the entry-point group."""
        pm = self._plugin_manager()
        pm.load_setuptools_entrypoints(group)
        self._collect(pm, source="entry point")

    def load_modules(self, *modules: ModuleType | object) -> None:
        """Load hook implementations from modules or objects (tests, embedding apps)."""
        pm = self._plugin_manager()
        for module in modules:
            pm.register(module)
        self._collect(pm, source="module")

    def _plugin_manager(self) -> pluggy.PluginManager:
        pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        pm.add_hookspecs(Hooks)
        return pm

    def _collect(self, pm: pluggy.PluginManager, *, source: str) -> None:
        found: list[tuple[type[AnyPlugin], str]] = []

        def register(cls: type[AnyPlugin]) -> None:
            found.append((cls, source))

        pm.hook.register_plugins(register=register)
        pm.hook.register_providers(register=self.add_provider)
        pm.hook.register_provider_types(register=self.add_provider_type)
        # All classes first, then cross-references: order inside a package is free.
        for cls, src in found:
            self._add(cls, src, check_refs=False)
        self._apply_labels()
        self.check_references()

    def add_provider(self, provider: object) -> None:
        """Keep one provider instance, checked now: a Provider, a valid name, not taken."""
        checked = validate_provider(provider)
        for other in self.providers:
            if other.name == checked.name:
                raise ProviderValidationError(
                    f"provider {checked.name!r} is registered twice ({_qualname(other)} and "
                    f"{_qualname(checked)})"
                )
        self.providers.append(checked)

    def add_provider_type(self, type_name: str, factory: ProviderFactory) -> None:
        """Keep the factory of one provider type, checked now: a valid name, not taken."""
        validate_provider_type(type_name, factory)
        other = self.provider_types.get(type_name)
        if other is not None:
            raise ProviderValidationError(
                f"provider type {type_name!r} is registered twice ({_qualname(other)} and "
                f"{_qualname(factory)})"
            )
        self.provider_types[type_name] = factory

    # --- changes at run time ---------------------------------------------------

    def add(self, cls: type[AnyPlugin], *, source: str = "runtime") -> PluginEntry | None:
        """Register one plugin class now; validated exactly like loaded ones."""
        entry = self._add(cls, source, check_refs=True)
        self._apply_labels(only=getattr(cls, "name", None))
        return entry

    def _add(self, cls: type[AnyPlugin], source: str, *, check_refs: bool) -> PluginEntry | None:
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise PluginValidationError(f"{cls!r} is not a subclass of brickwork.Plugin")
        name = getattr(cls, "name", None)
        settings = self._settings.get(name or "", PluginSettings())
        try:
            policy = Policy.model_validate(cls.policy).merged(dict(settings.policy))
        except PluginValidationError:
            raise
        except Exception as exc:
            raise PluginValidationError(f"plugin {name}: policy is invalid: {exc}") from exc
        validate_plugin_class(cls, policy)
        version = Version.parse(cls.version)
        if not settings.enabled or (settings.versions is not None and cls.version not in settings.versions):
            return None
        versions = self._plugins.setdefault(cls.name, {})
        if version in versions:
            other = versions[version]
            raise PluginValidationError(
                f"{cls.name}@{version} is registered twice ({other.cls.__module__}."
                f"{other.cls.__qualname__} and {cls.__module__}.{cls.__qualname__})",
                plugin=f"{cls.name}@{version}",
            )
        model = settings.model or cls.model
        embedding_model = settings.embedding_model or cls.embedding_model
        entry = PluginEntry(cls, cls(), version, policy, model, source, embedding_model, compile_prompts(cls))
        versions[version] = entry
        if check_refs:
            try:
                self.check_references()
            except PluginValidationError:
                del versions[version]
                if not versions:
                    del self._plugins[cls.name]
                raise
        self._notify("added", entry.ref)
        return entry

    def relabel(self, name: str, label: str, version: str) -> None:
        """Point ``name@label`` at ``version`` (creating the label if new)."""
        if not LABEL_RE.match(label) or Version.is_valid(label):
            raise PluginValidationError(f"bad label {label!r}: use a name like 'prod' or 'canary'")
        entry = self.resolve(PluginRef(name, version))
        labels = self._labels.setdefault(name, {})
        before = labels.get(label)
        labels[label] = entry.version
        try:
            self.check_references()  # a fallback may point at this label
        except PluginValidationError:
            if before is None:
                del labels[label]
            else:
                labels[label] = before
            raise
        self._notify("relabelled", f"{name}@{label}→{entry.version}")

    def unlabel(self, name: str, label: str) -> None:
        labels = self._labels.get(name, {})
        before = labels.pop(label, None)
        if before is None:
            raise PluginNotFoundError(f"no label {label!r} on plugin {name!r}", plugin=name)
        try:
            self.check_references()
        except PluginValidationError:
            labels[label] = before
            raise

    def remove(self, ref: str) -> PluginEntry:
        """Remove one exact version. Refused while a label or a fallback needs it."""
        parsed = PluginRef.parse(ref)
        if not parsed.is_exact:
            raise PluginValidationError(f"remove needs an exact version, got {ref!r}")
        entry = self.resolve(parsed)
        labels = [lbl for lbl, v in self._labels.get(entry.name, {}).items() if v == entry.version]
        if labels:
            raise PluginValidationError(
                f"{entry.ref} is still labelled {labels}; relabel or unlabel first",
                plugin=entry.ref,
            )
        versions = self._plugins[entry.name]
        del versions[entry.version]
        try:
            self.check_references()
        except PluginValidationError:
            versions[entry.version] = entry
            raise
        if not versions:
            del self._plugins[entry.name]
            self._labels.pop(entry.name, None)
        self._notify("removed", entry.ref)
        return entry

    def _apply_labels(self, only: str | None = None) -> None:
        for name, settings in self._settings.items():
            if only is not None and name != only:
                continue
            for label, version in settings.labels.items():
                if name in self._plugins and Version.parse(version) in self._plugins[name]:
                    self._labels.setdefault(name, {})[label] = Version.parse(version)

    def _notify(self, what: str, ref: str) -> None:
        for listener in self.listeners:
            listener(what, ref)

    # --- lookup ----------------------------------------------------------------

    def resolve(self, ref: PluginRef | str) -> PluginEntry:
        """The entry a ref names. No selector: the ``prod`` label, else the highest release."""
        parsed = PluginRef.parse(ref) if isinstance(ref, str) else ref
        versions = self._plugins.get(parsed.name)
        if not versions:
            known = ", ".join(sorted(self._plugins)) or "none"
            raise PluginNotFoundError(
                f"no plugin named {parsed.name!r} (registered: {known})", plugin=str(parsed)
            )
        labels = self._labels.get(parsed.name, {})
        if parsed.selector is None:
            if "prod" in labels:
                return versions[labels["prod"]]
            return versions[_highest(versions)]
        if parsed.is_exact:
            found = versions.get(Version.parse(parsed.selector))
        elif parsed.is_partial:
            matching = [v for v in versions if v.matches_partial(parsed.selector)]
            found = versions[_highest(matching)] if matching else None
        else:
            label_version = labels.get(parsed.selector)
            found = versions.get(label_version) if label_version is not None else None
        if found is None:
            raise PluginNotFoundError(
                f"{parsed} not found; versions: {', '.join(str(v) for v in sorted(versions))}; "
                f"labels: {', '.join(f'{k}→{v}' for k, v in sorted(labels.items())) or 'none'}",
                plugin=str(parsed),
            )
        return found

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def versions(self, name: str) -> list[PluginEntry]:
        return [self._plugins[name][v] for v in sorted(self._plugins.get(name, {}))]

    def labels(self, name: str) -> dict[str, str]:
        return {k: str(v) for k, v in sorted(self._labels.get(name, {}).items())}

    def entries(self) -> Iterable[PluginEntry]:
        for name in self.names():
            yield from self.versions(name)

    def check_references(self) -> None:
        """Every fallback plugin ref resolves to a plugin with the same contract."""
        for entry in list(self.entries()):
            for ref in entry.policy.fallback.plugins:
                try:
                    target = self.resolve(ref)
                except Exception as exc:
                    raise PluginValidationError(
                        f"{entry.ref}: fallback plugin {ref!r} is not registered ({exc})",
                        plugin=entry.ref,
                    ) from exc
                if target.ref == entry.ref:
                    raise PluginValidationError(
                        f"{entry.ref}: fallback plugin {ref!r} resolves to itself", plugin=entry.ref
                    )
                if target.contract() != entry.contract():
                    raise PluginValidationError(
                        f"{entry.ref}: fallback plugin {target.ref} has a different input or output contract",
                        plugin=entry.ref,
                    )


def _qualname(obj: object) -> str:
    target = obj if hasattr(obj, "__qualname__") else type(obj)  # a function or class, else an instance
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


def _highest(versions: Iterable[Version]) -> Version:
    ordered = sorted(versions)
    releases = [v for v in ordered if not v.prerelease]
    return (releases or ordered)[-1]
