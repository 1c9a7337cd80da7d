from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from brickwork import (
    Context,
    Example,
    FallbackPolicy,
    Orchestrator,
    Plugin,
    PluginInput,
    PluginNotFoundError,
    PluginOutput,
    PluginSettings,
    PluginValidationError,
    Policy,
    Prompt,
    Registry,
)


class TextIn(PluginInput):
    text: str


class TextOut(PluginOutput):
    text: str


class OtherOut(PluginOutput):
    value: int


def make(version: str = "1.0.0", name: str = "echo", **attrs: Any) -> type[Plugin[TextIn, TextOut]]:
    """A fresh echo plugin class, with class attributes overridden by ``attrs``."""

    class Echo(Plugin[TextIn, TextOut]):
        description = "Echoes text back, tagged with its version."

        async def run(self, input: TextIn, ctx: Context) -> TextOut:
            return TextOut(text=f"{input.text}/{self.version}")

    Echo.name = name
    Echo.version = version
    for key, value in attrs.items():
        setattr(Echo, key, value)
    return Echo


def test_versions_live_side_by_side_and_resolve() -> None:
    registry = Registry()
    for v in ("1.0.0", "1.2.0", "2.0.0", "2.1.0-rc.1"):
        registry.add(make(v))
    assert [str(e.version) for e in registry.versions("echo")] == ["1.0.0", "1.2.0", "2.0.0", "2.1.0-rc.1"]
    assert str(registry.resolve("echo").version) == "2.0.0"  # highest release, not the rc
    assert str(registry.resolve("echo@1").version) == "1.2.0"
    assert str(registry.resolve("echo@1.0").version) == "1.0.0"
    assert str(registry.resolve("echo@2.1.0-rc.1").version) == "2.1.0-rc.1"
    registry.relabel("echo", "prod", "1.2.0")
    assert str(registry.resolve("echo").version) == "1.2.0"  # `prod` wins when present
    assert str(registry.resolve("echo@prod").version) == "1.2.0"


def test_not_found_errors_list_what_exists() -> None:
    registry = Registry()
    registry.add(make("1.0.0"))
    registry.relabel("echo", "prod", "1.0.0")
    with pytest.raises(PluginNotFoundError, match=r"versions: 1\.0\.0; labels: prod→1\.0\.0"):
        registry.resolve("echo@canary")
    with pytest.raises(PluginNotFoundError, match="registered: echo"):
        registry.resolve("nope")


async def test_add_relabel_remove_at_runtime_without_restart() -> None:
    registry = Registry()
    registry.add(make("1.0.0"))
    runtime = Orchestrator(registry)
    first = await runtime.handle({"plugin": "echo", "input": "hi"})
    assert first.output == {"text": "hi/1.0.0"}

    registry.add(make("2.0.0"))
    registry.relabel("echo", "prod", "2.0.0")
    assert (await runtime.handle({"plugin": "echo@prod", "input": "hi"})).output == {"text": "hi/2.0.0"}

    with pytest.raises(PluginValidationError, match="still labelled"):
        registry.remove("echo@2.0.0")
    registry.relabel("echo", "prod", "1.0.0")
    registry.remove("echo@2.0.0")
    assert (await runtime.handle({"plugin": "echo@prod", "input": "hi"})).output == {"text": "hi/1.0.0"}
    with pytest.raises(PluginNotFoundError):
        await runtime.handle({"plugin": "echo@2.0.0", "input": "hi"})


async def test_a_request_in_flight_keeps_the_version_it_resolved() -> None:
    gate = asyncio.Event()

    class Slow(Plugin[TextIn, TextOut]):
        name = "slow"
        version = "1.0.0"
        description = "Waits for a gate."

        async def run(self, input: TextIn, ctx: Context) -> TextOut:
            await gate.wait()
            return TextOut(text="done")

    registry = Registry()
    registry.add(Slow)
    runtime = Orchestrator(registry)
    task = asyncio.create_task(runtime.handle({"plugin": "slow", "input": "x"}))
    await asyncio.sleep(0.01)
    registry.remove("slow@1.0.0")
    gate.set()
    envelope = await task
    assert envelope.output == {"text": "done"}
    assert envelope.version == "1.0.0"


def test_duplicate_version_is_refused() -> None:
    registry = Registry()
    registry.add(make("1.0.0"))
    with pytest.raises(PluginValidationError, match="registered twice"):
        registry.add(make("1.0.0"))


class Untyped(BaseModel):  # extra fields allowed: not a valid contract
    text: str


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"version": "1.0"}, "semantic"),
        ({"description": ""}, "description"),
        ({"prompts": {"main": Prompt(version="1", template="Hi {{ name ")}}, "prompt 'main'"),
        ({"prompts": {"main": "not a prompt"}}, "brickwork.Prompt"),
        ({"permissions": frozenset({"teleport"})}, "unknown permission"),
        ({"model": "local:qwen"}, "'model' permission"),
        ({"model": "no-colon"}, "provider:model"),
        ({"policy": Policy(fallback=FallbackPolicy(models=("fake:x",)))}, "binds no model"),
        ({"policy": Policy(fallback=FallbackPolicy(plugins=("echo@1.0.0",)))}, "itself"),
        ({"policy": Policy(fallback=FallbackPolicy(plugins=("missing@1",)))}, "not registered"),
        ({"examples": (Example({"nope": 1}),)}, r"examples\[0\].input"),
        ({"examples": (Example({"text": "a"}, {"nope": 1}),)}, "unknown output fields"),
        ({"input_type": Untyped}, "forbid extra"),
    ],
)
def test_registration_checks_everything_up_front(attrs: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginValidationError, match=message):
        Registry().add(make(**attrs))


def test_registration_refuses_non_plugins_and_missing_generics() -> None:
    class NotAPlugin:
        name = "x"

    with pytest.raises(PluginValidationError, match="not a subclass"):
        Registry().add(NotAPlugin)  # type: ignore[arg-type]

    class NoTypes(Plugin):  # type: ignore[type-arg]
        name = "notypes"
        version = "1.0.0"
        description = "no generics"

        async def run(self, input: Any, ctx: Context) -> Any:
            return input

    with pytest.raises(PluginValidationError, match=r"Plugin\[InputModel, OutputModel\]"):
        Registry().add(NoTypes)

    class SyncRun(Plugin[TextIn, TextOut]):
        name = "syncrun"
        version = "1.0.0"
        description = "sync run"

        def run(self, input: TextIn, ctx: Context) -> TextOut:  # type: ignore[override]
            return TextOut(text="")

    with pytest.raises(PluginValidationError, match="async def"):
        Registry().add(SyncRun)


def test_fallback_must_have_the_same_contract() -> None:
    class Other(Plugin[TextIn, OtherOut]):
        name = "other"
        version = "1.0.0"
        description = "different output"

        async def run(self, input: TextIn, ctx: Context) -> OtherOut:
            return OtherOut(value=1)

    registry = Registry()
    registry.add(Other)
    with pytest.raises(PluginValidationError, match="different input or output contract"):
        registry.add(make(policy=Policy(fallback=FallbackPolicy(plugins=("other@1.0.0",)))))
    assert registry.names() == ["other"]  # the refused plugin left nothing behind


def test_removal_is_refused_while_a_fallback_needs_it() -> None:
    registry = Registry()
    registry.add(make("1.0.0", name="rules"))
    registry.add(make("2.0.0", policy=Policy(fallback=FallbackPolicy(plugins=("rules@1",)))))
    with pytest.raises(PluginValidationError, match="not registered"):
        registry.remove("rules@1.0.0")
    assert registry.names() == ["echo", "rules"]


def test_settings_filter_versions_set_labels_and_override_policy() -> None:
    registry = Registry(
        {
            "echo": PluginSettings(
                versions=("1.0.0", "2.0.0"),
                labels={"prod": "1.0.0", "canary": "2.0.0"},
                policy={"timeout": {"total": 3}, "cache": {"ttl": 9}},
            ),
            "gone": PluginSettings(enabled=False),
        }
    )
    for v in ("1.0.0", "2.0.0", "3.0.0"):
        registry.add(make(v))
    registry.add(make("1.0.0", name="gone"))
    assert [str(e.version) for e in registry.versions("echo")] == ["1.0.0", "2.0.0"]
    assert registry.labels("echo") == {"canary": "2.0.0", "prod": "1.0.0"}
    entry = registry.resolve("echo@canary")
    assert entry.policy.timeout.total == 3
    assert entry.policy.cache is not None
    assert entry.policy.cache.ttl == 9
    assert entry.policy.retry is not None  # untouched sections keep the class default
    assert registry.names() == ["echo"]


def test_a_bad_policy_override_fails_registration() -> None:
    registry = Registry({"echo": PluginSettings(policy={"timeout": {"total": -1}})})
    with pytest.raises(PluginValidationError, match="policy is invalid"):
        registry.add(make())


class Hooked:
    """A hook implementation object, as a module would provide."""

    registered: ClassVar[list[str]] = []

    @staticmethod
    def plugins() -> list[type[Any]]:
        return [
            make("1.0.0", name="b-rules"),
            make("2.0.0", name="a-llm", policy=Policy(fallback=FallbackPolicy(plugins=("b-rules@1",)))),
        ]


def test_load_modules_registers_through_the_hook_in_any_order() -> None:
    from brickwork import hookimpl

    plugins = Hooked.plugins()

    class Module:
        @hookimpl
        def register_plugins(self, register: Any) -> None:
            for cls in reversed(plugins):  # the fallback target arrives after its user
                register(cls)

    registry = Registry()
    registry.load_modules(Module())
    assert registry.names() == ["a-llm", "b-rules"]
