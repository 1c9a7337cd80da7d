"""Third-party plugins arrive through the `brickwork` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from brickwork import Registry, build


def test_the_third_party_package_is_installed_separately() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="brickwork")}
    # `make setup` installs tests/fixtures/brickwork-hello as its own distribution.
    assert eps.get("hello") == "brickwork_hello", (
        "install the fixture package: pip install ./tests/fixtures/brickwork-hello"
    )
    assert eps.get("builtin") == "brickwork.plugins"  # built-ins take the same path
    assert eps.get("builtin-providers") == "brickwork.providers"  # and the built-in provider types


def test_entry_points_load_third_party_and_builtin_plugins() -> None:
    registry = Registry()
    registry.load_entry_points()
    assert {"hello", "sentiment"} <= set(registry.names())
    hello = registry.resolve("hello")
    assert hello.source == "entry point"
    assert hello.cls.__module__ == "brickwork_hello"


async def test_a_third_party_plugin_runs_like_a_builtin() -> None:
    runtime = build()
    envelope = await runtime.handle({"plugin": "hello@0.1", "input": {"name": "Ada"}})
    assert envelope.output == {"greeting": "Hello, Ada!"}
    assert (envelope.plugin, envelope.version) == ("hello", "0.1.0")
