"""``PluginContractTests``: the conformance suite every plugin author subclasses.

::

    from brickwork.testing import PluginContractTests
    from my_package import MyPlugin

    class TestMyPlugin(PluginContractTests):
        plugin = MyPlugin

Plain pytest collects it (pytest is imported only when the tests run); the
async parts run on their own event loop, so the suite needs no async test plugin. A bound model is served by a
:class:`~brickwork.testing.FakeProvider` and examples marked ``needs_model`` are
skipped, unless :meth:`make_providers` is overridden to give real ones.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from brickwork.contracts.errors import InputValidationError, PluginValidationError
from brickwork.contracts.plugin import Example, Plugin
from brickwork.contracts.provider import ModelId, Provider
from brickwork.contracts.request import Envelope, Request
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry
from brickwork.runtime.validation import example_input
from brickwork.testing.providers import FakeProvider, forbid_real_providers

__all__ = ["PluginContractTests"]


class PluginContractTests:
    """Checks a plugin keeps the promises of the plugin contract."""

    plugin: ClassVar[type[Plugin[Any, Any]]]
    #: Plugins the default policy falls back to; registered first, as in a real install.
    fallbacks: ClassVar[tuple[type[Plugin[Any, Any]], ...]] = ()
    #: True when :meth:`make_providers` returns real models (runs ``needs_model`` examples).
    real_models: ClassVar[bool] = False

    def make_providers(self) -> list[Provider]:
        """Providers for the plugin's model chain; fakes by default."""
        names = {ModelId.parse(m).provider for m in self._models()}
        return [FakeProvider(name) for name in sorted(names)]

    def _models(self) -> list[str]:
        models: list[str | None] = []
        for cls in (self.plugin, *self.fallbacks):
            models += [cls.model, cls.embedding_model, *cls.policy.fallback.models]
        return [m for m in models if m]

    def make_registry(self) -> Registry:
        registry = Registry()
        for cls in (*self.fallbacks, self.plugin):
            registry.add(cls)
        return registry

    def make_orchestrator(self) -> Orchestrator:
        registry = self.make_registry()
        providers = Providers()
        for provider in self.make_providers():
            providers.add(provider)
        return Orchestrator(registry, providers=providers)

    def _run(self, request: Request) -> Envelope:
        orchestrator = self.make_orchestrator()
        if self.real_models:
            return orchestrator.run_sync(request)
        with forbid_real_providers():
            return orchestrator.run_sync(request)

    # --- the suite ---------------------------------------------------------------

    def test_registers_cleanly(self) -> None:
        import pytest

        try:
            registry = self.make_registry()
        except PluginValidationError as exc:  # pragma: no cover - the failure is the report
            pytest.fail(f"registration failed: {exc}")
        assert registry.resolve(self.plugin.ref()).cls is self.plugin

    def test_contract_schemas_are_json(self) -> None:
        for model in (self.plugin.input_type, self.plugin.output_type):
            schema = model.model_json_schema()
            assert schema.get("type") == "object"
            json.dumps(schema)

    def test_has_examples(self) -> None:
        assert self.plugin.examples, "declare at least one Example: tests and routing use them"

    def test_examples_hold(self) -> None:
        for i, example in enumerate(self.plugin.examples):
            if example.needs_model and not self.real_models:
                continue
            envelope = self._run(Request(plugin=self.plugin.ref(), input=example_input(example)))
            self._check_example(i, example, envelope)

    def _check_example(self, i: int, example: Example, envelope: Envelope) -> None:
        where = f"example {i} ({example.description or example.input!r})"
        assert envelope.plugin == self.plugin.name
        assert envelope.version == self.plugin.version
        output = self.plugin.output_type.model_validate(envelope.output)
        for key, value in example.expected.items():
            assert envelope.output[key] == value, (
                f"{where}: {key}={envelope.output[key]!r}, expected {value!r}"
            )
        if example.check is not None:
            assert example.check(output), f"{where}: check failed on {envelope.output!r}"

    def test_rejects_unknown_input_fields(self) -> None:
        import pytest

        data = example_input(self.plugin.examples[0]) if self.plugin.examples else {}
        data["__not_a_field__"] = 1
        with pytest.raises(InputValidationError):
            self._run(Request(plugin=self.plugin.ref(), input=data))

    def test_envelope_accounts_for_the_call(self) -> None:
        import pytest

        if not self.plugin.examples:
            pytest.skip("no examples")
        example = next((e for e in self.plugin.examples if not e.needs_model), None)
        if example is None and not self.real_models:
            pytest.skip("every example needs a real model")
        example = example or self.plugin.examples[0]
        envelope = self._run(Request(plugin=self.plugin.ref(), input=example_input(example)))
        assert envelope.trace_id
        assert envelope.route.method == "explicit"
        assert envelope.prompt_version == self.plugin.prompt_version()
        assert envelope.cost >= 0
        assert envelope.latency_ms >= 0

    def test_run_is_a_coroutine_without_side_effects_at_import(self) -> None:
        assert asyncio.iscoroutinefunction(self.plugin.run)
