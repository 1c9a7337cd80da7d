"""The composition root: provider types and providers come through the hooks, checked
when they register; a config entry's type resolves through the registered table."""

from __future__ import annotations

from typing import Any

import pytest

from brickwork import (
    Config,
    ConfigFileError,
    ProviderSettings,
    ProviderValidationError,
    Registry,
    build,
    hookimpl,
)
from brickwork.testing import FakeProvider


def hooks(**impls: Any) -> object:
    """A hook module with the given ``register_*`` implementations."""
    module = type("Hooks", (), {name: staticmethod(hookimpl(fn)) for name, fn in impls.items()})
    return module()


def registry_with(**impls: Any) -> Registry:
    registry = Registry()
    registry.load_modules(hooks(**impls))
    return registry


def test_the_builtin_provider_types_register_through_the_hook() -> None:
    registry = Registry()
    registry.load_entry_points()
    assert {"local", "openai", "anthropic", "ollama"} <= set(registry.provider_types)
    assert registry.provider_types["openai"].__module__ == "brickwork.providers"


def test_a_config_entry_is_built_by_the_factory_of_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ProviderSettings] = []

    def acme(settings: ProviderSettings) -> FakeProvider:
        seen.append(settings)
        return FakeProvider(settings.name)

    def register_provider_types(register: Any) -> None:
        register("acme", acme)

    monkeypatch.setenv("ACME_KEY", "k-123")
    config = Config.model_validate(
        {
            "providers": {
                "acme-eu": {
                    "type": "acme",
                    "base_url": "http://127.0.0.1:9",
                    "api_key_env": "ACME_KEY",
                    "timeout": 5,
                    "options": {"region": "eu"},
                },
                "acme": {},  # named like its type: no `type` needed
            }
        }
    )
    runtime = build(config, registry=registry_with(register_provider_types=register_provider_types))
    assert sorted(runtime.providers.providers) == ["acme", "acme-eu"]  # no `local` type: no local
    first = seen[0]
    assert (first.name, first.base_url, first.api_key, first.timeout) == (
        "acme-eu",
        "http://127.0.0.1:9",
        "k-123",
        5,
    )
    assert first.options == {"region": "eu"}
    assert "k-123" not in repr(first)  # the key never reaches a log through a repr


def test_an_unknown_provider_type_is_a_config_error_naming_the_known_ones() -> None:
    config = Config.model_validate({"providers": {"mine": {"type": "nosuch"}}})
    with pytest.raises(ConfigFileError) as info:
        build(config)
    assert info.value.code == "config_invalid"
    message = info.value.message
    assert "providers.mine: unknown provider type 'nosuch'" in message
    assert "anthropic, local, ollama, openai" in message


def test_a_provider_entry_needs_a_name_a_model_id_can_carry() -> None:
    with pytest.raises(
        ConfigFileError, match=r"providers\.My:Provider\.\[key\]: String should match pattern"
    ):
        Config.from_mapping({"providers": {"My:Provider": {"type": "openai"}}})


def test_a_registered_provider_is_added_to_the_table() -> None:
    def register_providers(register: Any) -> None:
        register(FakeProvider("extra"))

    registry = registry_with(register_providers=register_providers)
    runtime = build(Config(), registry=registry)
    assert "extra" in runtime.providers.providers


class NotAProvider:
    name = "nope"


class OldProvider:
    """Written before providers said their context window."""

    name = "old"
    is_real = False

    async def complete(self, request: Any) -> Any: ...
    def stream(self, request: Any) -> Any: ...
    async def embed(self, request: Any) -> Any: ...
    async def score(self, request: Any) -> Any: ...
    def count_tokens(self, model: str, text: str) -> int:
        return 1


@pytest.mark.parametrize(
    ("provider", "problem"),
    [
        (
            NotAProvider(),
            "NotAProvider (from the register_providers hook) is not a brickwork Provider: it lacks is_real, complete",
        ),
        (
            OldProvider(),
            "OldProvider (from the register_providers hook) is not a brickwork Provider: it lacks context_window",
        ),
        (FakeProvider("Bad:Name"), "provider name 'Bad:Name' must match"),
        (FakeProvider(""), "provider name '' must match"),
    ],
)
def test_a_bad_provider_fails_when_it_registers(provider: object, problem: str) -> None:
    def register_providers(register: Any) -> None:
        register(provider)

    with pytest.raises(ProviderValidationError) as info:
        registry_with(register_providers=register_providers)
    assert info.value.code == "provider_invalid"
    assert problem in info.value.message


def test_two_providers_with_one_name_fail_when_the_second_registers() -> None:
    def register_providers(register: Any) -> None:
        register(FakeProvider("twin"))
        register(FakeProvider("twin"))

    with pytest.raises(ProviderValidationError, match="provider 'twin' is registered twice"):
        registry_with(register_providers=register_providers)


def test_a_registered_provider_may_not_take_the_name_of_a_configured_one() -> None:
    def register_providers(register: Any) -> None:
        register(FakeProvider("local"))

    registry = registry_with(register_providers=register_providers)
    registry.load_entry_points()  # the built-in types: the config's implicit `local` entry
    with pytest.raises(
        ProviderValidationError, match=r"'local'.*has the name of a provider the config declares"
    ):
        build(Config(), registry=registry)


@pytest.mark.parametrize(
    ("name", "factory", "problem"),
    [
        ("Acme!", FakeProvider, "provider type name 'Acme!' must match"),
        ("acme", "not callable", "provider type 'acme': the factory 'not callable' is not callable"),
    ],
)
def test_a_bad_provider_type_fails_when_it_registers(name: str, factory: object, problem: str) -> None:
    def register_provider_types(register: Any) -> None:
        register(name, factory)

    with pytest.raises(ProviderValidationError) as info:
        registry_with(register_provider_types=register_provider_types)
    assert problem in info.value.message


def test_a_provider_type_registered_twice_fails() -> None:
    def register_provider_types(register: Any) -> None:
        register("acme", FakeProvider)

    registry = Registry()
    registry.load_modules(hooks(register_provider_types=register_provider_types))
    with pytest.raises(ProviderValidationError, match="provider type 'acme' is registered twice"):
        registry.load_modules(hooks(register_provider_types=register_provider_types))


def test_a_factory_that_returns_no_provider_is_refused() -> None:
    def register_provider_types(register: Any) -> None:
        register("acme", lambda settings: object())

    config = Config.model_validate({"providers": {"acme": {}}})
    with pytest.raises(
        ProviderValidationError, match=r"\(from provider type 'acme'\) is not a brickwork Provider"
    ):
        build(config, registry=registry_with(register_provider_types=register_provider_types))
