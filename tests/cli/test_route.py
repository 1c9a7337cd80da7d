"""``brickwork route``: the decision, every candidate against its threshold, then the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from brickwork.cli.route import intent_router, register
from brickwork.contracts.plugin import Context, Example, Plugin, PluginInput, PluginOutput
from brickwork.providers.e5 import E5Embedder
from brickwork.runtime.intent import IntentRouter, ProviderEmbedder, ThreadedEmbedder
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry
from brickwork.runtime.routing import MetadataRule, Router
from brickwork.testing import FakeProvider

runner = CliRunner()
EMBEDDER = ThreadedEmbedder(E5Embedder(threads=1))  # weights load on first use


class TextIn(PluginInput):
    text: str = Field(min_length=1)


class Said(PluginOutput):
    plugin: str
    text: str


def standin(plugin_name: str, about: str, inputs: list[str]) -> type[Plugin[TextIn, Said]]:
    class StandIn(Plugin[TextIn, Said]):
        name = plugin_name
        version = "1.0.0"
        description = about
        examples = tuple(Example(i) for i in inputs)

        async def run(self, input: TextIn, ctx: Context) -> Said:
            return Said(plugin=self.name, text=input.text)

    return StandIn


SENTIMENT = standin(
    "sentiment",
    "Sentiment of a text: positive, negative or neutral, with a score. Tells how the writer feels.",
    [
        "I love this phone, the battery is great.",
        "This was a terrible, boring waste of time.",
        "Is this review positive or negative?",
        "The service was slow and the staff were rude.",
    ],
)
SUMMARIZE = standin(
    "summarize",
    "Summarizes a text: a short summary of an article, a report, notes or an email, keeping the key facts.",
    [
        "The city library will close for renovation from May to August. Books can be returned at "
        "the town hall, and the reading club will meet in the community centre.",
        "Summarize: quarterly sales rose 4%, costs fell, and the board approved a new dividend.",
        "Please give me a short summary of this report on water quality in the region.",
    ],
)
LOVE = "What a fantastic film, I enjoyed every minute of it!"
OFF_TOPIC = "Set an alarm for 7 tomorrow."
configs_seen: list[Path | None] = []


def runtime(config: Path | None) -> Orchestrator:
    configs_seen.append(config)
    registry = Registry()
    for cls in (SENTIMENT, SUMMARIZE):
        registry.add(cls)
    intent = IntentRouter(registry, EMBEDDER)
    rules = [MetadataRule("billing", {"team": "billing"}, "summarize")]
    return Orchestrator(registry, router=Router(rules, [intent]))


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A host app, as the main CLI is."""

    register(app, runtime=runtime)
    return app


def test_route_shows_the_decision_and_the_candidates_then_runs() -> None:
    result = runner.invoke(cli(), ["route", LOVE])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "route intent → sentiment"
    sentiment_row = next(line for line in lines if line.strip().startswith("sentiment"))
    assert "chosen" in sentiment_row
    assert any(line.strip().startswith("summarize") and "below threshold" in line for line in lines)
    assert '"plugin": "sentiment"' in result.stdout  # the envelope's output
    assert "sentiment@1.0.0 · route intent" in result.stdout


def test_dry_run_json_is_the_decision_only() -> None:
    result = runner.invoke(cli(), ["route", LOVE, "--dry-run", "--json"])

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["route"]["method"] == "intent"
    assert body["route"]["ref"] == "sentiment"
    assert set(body["route"]["scores"]) == {"sentiment", "summarize"}
    assert body["candidates"][0]["plugin"] == "sentiment"
    assert all({"plugin", "score", "threshold", "fits"} == set(c) for c in body["candidates"])
    assert "envelope" not in body


def test_json_run_carries_the_envelope_with_the_route() -> None:
    result = runner.invoke(cli(), ["route", "--input", json.dumps({"text": LOVE}), "--json"])

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["envelope"]["output"] == {"plugin": "sentiment", "text": LOVE}
    assert body["envelope"]["route"] == body["route"]


def test_a_metadata_rule_is_shown_as_such() -> None:
    result = runner.invoke(cli(), ["route", LOVE, "--meta", "team=billing", "--tenant", "acme"])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "route metadata (billing) → summarize"
    assert "intent was not consulted" in result.stdout
    assert '"plugin": "summarize"' in result.stdout


def test_off_topic_text_is_a_typed_error_with_the_candidates() -> None:
    pretty = runner.invoke(cli(), ["route", OFF_TOPIC])
    as_json = runner.invoke(cli(), ["route", OFF_TOPIC, "--json"])

    assert pretty.exit_code == 1
    assert "[no_route]" in pretty.stderr
    assert "below threshold" in pretty.stdout  # why: every candidate's score and threshold
    assert as_json.exit_code == 1
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "no_route"
    assert {c["plugin"] for c in error["details"]["candidates"]} == {"sentiment", "summarize"}


@pytest.mark.parametrize(
    "args",
    [
        ["route"],
        ["route", "x", "--input", "{}"],
        ["route", "--input", "[1]"],
        ["route", "--input", "{nope"],
        ["route", "x", "--meta", "novalue"],
    ],
)
def test_bad_invocations_are_typed_errors(args: list[str]) -> None:
    result = runner.invoke(cli(), [*args, "--json"], input="")

    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["error"]["code"] == "invalid_request"


def test_the_config_option_reaches_the_runtime(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    configs_seen.clear()

    result = runner.invoke(cli(), ["route", LOVE, "--dry-run", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert configs_seen == [config]


def test_a_runtime_without_intent_routing_gets_one() -> None:
    registry = Registry()
    registry.add(SENTIMENT)
    providers = Providers()
    providers.add(FakeProvider("local"))
    orchestrator = Orchestrator(registry, providers=providers, router=Router(default="sentiment"))

    intent = intent_router(orchestrator)

    assert isinstance(intent.embedder, ProviderEmbedder)
    assert str(intent.embedder.model_id) == "local:e5-small"
    assert intent.default == "sentiment"
    assert orchestrator.router.strategies == [intent]
    assert orchestrator.router.default == "sentiment"
    assert intent_router(orchestrator) is intent  # found, not added twice
