"""Step 1 and 2: how a request finds its plugin and version, and that the envelope says so."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import Field

from brickwork.contracts.errors import InvalidRequestError, NoRouteError, http_status
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.request import Request, RouteDecision
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.registry import PluginSettings
from brickwork.runtime.routing import MetadataRule, Router

Build = Callable[..., Orchestrator]


class TextIn(PluginInput):
    text: str = Field(min_length=1)


class WhoOut(PluginOutput):
    who: str


def named(plugin_name: str, plugin_version: str = "1.0.0") -> type[Plugin[TextIn, WhoOut]]:
    class Named(Plugin[TextIn, WhoOut]):
        name = plugin_name
        version = plugin_version
        description = f"Answers with its own ref ({plugin_name})."

        async def run(self, input: TextIn, ctx: Context) -> WhoOut:
            return WhoOut(who=f"{self.name}@{self.version}")

    return Named


BILLING = named("billing")
SUPPORT = named("support")
GENERAL = named("general")

RULES = [
    MetadataRule("eu-billing", {"topic": "billing", "region": "eu-*"}, "billing"),
    MetadataRule("any-support", {"channel": "support*"}, "support"),
]


async def test_metadata_rule_picks_the_plugin_and_is_in_the_envelope(build: Build) -> None:
    orch = build(BILLING, SUPPORT, GENERAL, router=Router(RULES, default="general"))

    envelope = await orch.handle(
        {"input": "refund please", "metadata": {"topic": "billing", "region": "eu-west"}}
    )

    assert envelope.output == {"who": "billing@1.0.0"}
    assert envelope.route == RouteDecision(method="metadata", ref="billing", rule="eu-billing")


async def test_every_key_of_a_rule_must_match(build: Build) -> None:
    orch = build(BILLING, SUPPORT, GENERAL, router=Router(RULES, default="general"))

    envelope = await orch.handle({"input": "x", "metadata": {"topic": "billing", "region": "us-east"}})

    assert envelope.route.method == "default"
    assert envelope.plugin == "general"


async def test_the_first_matching_rule_wins(build: Build) -> None:
    orch = build(BILLING, SUPPORT, GENERAL, router=Router(RULES))

    envelope = await orch.handle(
        {"input": "x", "metadata": {"topic": "billing", "region": "eu-north", "channel": "support-chat"}}
    )

    assert envelope.route.rule == "eu-billing"


async def test_glob_patterns_match_metadata_values(build: Build) -> None:
    orch = build(BILLING, SUPPORT, GENERAL, router=Router(RULES))

    envelope = await orch.handle({"input": "x", "metadata": {"channel": "support-email"}})

    assert envelope.route == RouteDecision(method="metadata", ref="support", rule="any-support")
    assert envelope.plugin == "support"


async def test_an_explicit_plugin_beats_the_rules(build: Build) -> None:
    orch = build(BILLING, SUPPORT, GENERAL, router=Router(RULES, default="general"))

    envelope = await orch.handle({"plugin": "support", "input": "x", "metadata": {"topic": "billing"}})

    assert envelope.route == RouteDecision(method="explicit", ref="support")


async def test_the_default_answers_when_nothing_matches(build: Build) -> None:
    orch = build(BILLING, GENERAL, router=Router(RULES, default="general"))

    envelope = await orch.handle({"input": "x"})

    assert envelope.route == RouteDecision(method="default", ref="general")
    assert envelope.output == {"who": "general@1.0.0"}


async def test_no_rule_and_no_default_is_no_route(build: Build, recorder: MemoryRecorder) -> None:
    orch = build(BILLING, router=Router(RULES))

    with pytest.raises(NoRouteError) as caught:
        await orch.handle({"input": "x", "metadata": {"topic": "sales"}})

    assert http_status(caught.value) == 422
    assert "topic" in caught.value.message
    [record] = recorder.records
    assert (record.outcome, record.route) == ("no_route", None)


async def test_a_strategy_decides_when_no_rule_matches_and_may_abstain(build: Build) -> None:
    class KeywordIntent:
        async def route(self, request: Request) -> RouteDecision | None:
            text = request.input if isinstance(request.input, str) else ""
            if "invoice" in text:
                return RouteDecision(method="intent", ref="billing", scores={"billing": 0.9})
            return None

    router = Router(RULES, strategies=[KeywordIntent()], default="general")
    orch = build(BILLING, GENERAL, router=router)

    decided = await orch.handle({"input": "where is my invoice"})
    abstained = await orch.handle({"input": "hello"})

    assert decided.route.method == "intent"
    assert decided.route.scores == {"billing": 0.9}
    assert decided.plugin == "billing"
    assert abstained.route.method == "default"


def test_a_rule_or_default_with_a_bad_ref_is_refused_up_front() -> None:
    with pytest.raises(InvalidRequestError):
        MetadataRule("bad", {"a": "b"}, "Not A Ref")
    with pytest.raises(InvalidRequestError):
        Router(default="bad ref@")


# --- version selection ----------------------------------------------------------------


async def test_a_bare_name_gets_the_highest_release_not_a_prerelease(build: Build) -> None:
    orch = build(named("svc", "1.0.0"), named("svc", "1.4.0"), named("svc", "2.0.0-rc.1"))

    envelope = await orch.handle({"plugin": "svc", "input": "x"})

    assert (envelope.plugin, envelope.version) == ("svc", "1.4.0")
    assert envelope.route.ref == "svc"


async def test_the_prod_label_wins_over_the_highest_release(build: Build) -> None:
    settings = {"svc": PluginSettings(labels={"prod": "1.0.0", "canary": "2.0.0-rc.1"})}
    orch = build(named("svc", "1.0.0"), named("svc", "1.4.0"), named("svc", "2.0.0-rc.1"), settings=settings)

    bare = await orch.handle({"plugin": "svc", "input": "x"})
    canary = await orch.handle({"plugin": "svc@canary", "input": "x"})
    partial = await orch.handle({"plugin": "svc@1", "input": "x"})

    assert bare.version == "1.0.0"
    assert canary.version == "2.0.0-rc.1"
    assert canary.route.ref == "svc@canary"
    assert partial.version == "1.4.0"


async def test_a_metadata_rule_can_name_a_label(build: Build) -> None:
    settings = {"svc": PluginSettings(labels={"beta": "1.4.0"})}
    router = Router([MetadataRule("testers", {"cohort": "beta"}, "svc@beta")])
    orch = build(named("svc", "1.0.0"), named("svc", "1.4.0"), router=router, settings=settings)

    envelope = await orch.handle({"input": "x", "metadata": {"cohort": "beta"}})

    assert envelope.version == "1.4.0"
    assert envelope.route == RouteDecision(method="metadata", ref="svc@beta", rule="testers")


async def test_relabelling_moves_traffic_at_once(build: Build) -> None:
    orch = build(named("svc", "1.0.0"), named("svc", "1.4.0"))
    orch.registry.relabel("svc", "prod", "1.0.0")

    before = await orch.handle({"plugin": "svc", "input": "x"})
    orch.registry.relabel("svc", "prod", "1.4.0")
    after = await orch.handle({"plugin": "svc", "input": "x"})

    assert (before.version, after.version) == ("1.0.0", "1.4.0")
