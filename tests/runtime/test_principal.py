"""A principal (e.g. an API key) reaches no plugin outside its scopes, by any path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

import pytest

from brickwork.contracts.errors import FallbacksExhaustedError, PermissionDeniedError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import FallbackPolicy, Policy
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.routing import MetadataRule, Router
from brickwork.testing import FakeProvider, server_error

Build = Callable[..., Orchestrator]


@dataclass(frozen=True)
class Key:
    tenant: str
    patterns: tuple[str, ...]

    def allows(self, plugin: str) -> bool:
        return any(fnmatchcase(plugin, p) for p in self.patterns)


class In(PluginInput):
    text: str


class Out(PluginOutput):
    text: str


class Rules(Plugin[In, Out]):
    name = "rules"
    version = "1.0.0"
    description = "No model."

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(text="rules")


class Llm(Plugin[In, Out]):
    name = "llm"
    version = "1.0.0"
    description = "Model, falling back to rules."
    model = "fake:m"
    permissions = frozenset({"model"})
    policy = Policy(fallback=FallbackPolicy(plugins=("rules@1",)), retry=None)

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(text=(await ctx.model.complete(input.text)).text)


class Caller(Plugin[In, Out]):
    name = "caller"
    version = "1.0.0"
    description = "Calls rules."
    permissions = frozenset({"call:rules"})

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(text=(await ctx.call("rules", {"text": input.text})).output["text"])


async def test_explicit_metadata_routed_fallback_and_nested_paths_are_all_checked(
    build: Build, recorder: MemoryRecorder
) -> None:
    provider = FakeProvider("fake", default="llm")
    router = Router(rules=[MetadataRule("r", {"kind": "x"}, "rules")])
    orch = build(Rules, Llm, Caller, providers=[provider], router=router)
    only_llm = Key("acme", ("llm",))

    ok = await orch.handle({"plugin": "llm", "input": "hi", "tenant": "spoofed"}, principal=only_llm)
    assert ok.output == {"text": "llm"}
    assert recorder.records[-1].tenant == "acme"  # the key's tenant, not the body's

    with pytest.raises(PermissionDeniedError):
        await orch.handle({"plugin": "rules", "input": "hi"}, principal=only_llm)
    with pytest.raises(PermissionDeniedError):  # routed by metadata to rules
        await orch.handle({"input": "hi", "metadata": {"kind": "x"}}, principal=only_llm)
    provider.fail(server_error())
    with pytest.raises(FallbacksExhaustedError) as skipped:  # llm fails; its fallback is out of scope
        await orch.handle({"plugin": "llm", "input": "hi"}, principal=only_llm)
    # The primary's own failure is reported, and the fallback was skipped, never run.
    assert [e.code for e in skipped.value.errors] == ["provider_unavailable", "permission_denied"]
    with pytest.raises(PermissionDeniedError, match="'rules'"):  # caller allowed, its callee not
        await orch.handle({"plugin": "caller", "input": "hi"}, principal=Key("acme", ("caller",)))
    nested = await orch.handle(
        {"plugin": "caller", "input": "hi"}, principal=Key("acme", ("caller", "rules"))
    )
    assert nested.output == {"text": "rules"}

    both = Key("acme", ("llm", "rules"))
    provider.fail(server_error())
    degraded = await orch.handle({"plugin": "llm", "input": "hi"}, principal=both)
    assert degraded.degraded
    assert degraded.plugin == "rules"
    assert provider.pending == 0
