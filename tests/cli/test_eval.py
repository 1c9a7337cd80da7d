"""``brickwork eval``: versions side by side in a table, or JSON; exit 0 on success."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from brickwork.cli.eval import register
from brickwork.plugins.sentiment import SentimentRules
from brickwork.plugins.sentiment.llm import SentimentLLM
from brickwork.plugins.summarize import SummarizeExtractive, SummarizeLLM
from brickwork.plugins.translate import TranslateLLM, TranslateRules
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry
from brickwork.runtime.routing import MetadataRule, Router
from brickwork.testing import FakeClock, FakeProvider

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
runner = CliRunner()

POSITIVE = {"positive": -0.1, "negative": -5.0, "neutral": -4.0}
NEGATIVE = {"positive": -5.0, "negative": -0.1, "neutral": -4.0}


def make_app(
    provider: FakeProvider | None = None, router: Router | None = None
) -> tuple[typer.Typer, list[Path | None]]:
    """An app with only the eval command, on a runtime of first-party plugins and a fake model."""
    configs: list[Path | None] = []

    def runtime(config: Path | None) -> Orchestrator:
        configs.append(config)
        registry = Registry()
        for cls in (
            SentimentRules,
            SentimentLLM,
            SummarizeExtractive,
            SummarizeLLM,
            TranslateRules,
            TranslateLLM,
        ):
            registry.add(cls)
        providers = Providers()
        providers.add(provider or FakeProvider("local"))
        return Orchestrator(
            registry, providers=providers, router=router, clock=FakeClock(autojump=True), rng=random.Random(7)
        )

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app, runtime=runtime)
    return app, configs


@pytest.fixture
def sentiment_set(tmp_path: Path) -> Path:
    path = tmp_path / "s.tsv"
    path.write_text(
        "label\ttext\npos\tI love this film\nneg\tA terrible, boring mess\npos\tThe train leaves at nine\n"
    )
    return path


def test_eval_prints_a_table_comparing_versions(sentiment_set: Path) -> None:
    provider = FakeProvider("local").enqueue(POSITIVE, NEGATIVE, POSITIVE)
    app, _ = make_app(provider)
    result = runner.invoke(app, ["eval", "sentiment", str(sentiment_set), "--versions", "1.0.0,2.0.0"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "sentiment on s.tsv (3 items)" in out
    assert "sentiment@1.0.0" in out
    assert "sentiment@2.0.0" in out
    assert "rules, no model" in out
    assert "local:qwen2.5-0.5b" in out
    accuracy = next(line for line in out.splitlines() if "accuracy" in line)
    assert "0.6667" in accuracy  # rules: the train sentence is neutral
    assert "1.0" in accuracy.split("0.6667")[1]  # LLM: all three right
    assert "mean latency ms" in out
    assert len(provider.calls) == 3


def test_eval_json_with_limit(sentiment_set: Path) -> None:
    provider = FakeProvider("local").enqueue(NEGATIVE, NEGATIVE)
    app, _ = make_app(provider)
    result = runner.invoke(
        app, ["eval", "sentiment", str(sentiment_set), "--versions", "2.0.0", "--limit", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["plugin"] == "sentiment"
    [version] = data["versions"]
    assert version["ref"] == "sentiment@2.0.0"
    assert version["items"] == 2
    assert version["metrics"]["accuracy"] == 0.5
    assert version["degraded"] == 0


def test_eval_passes_the_config_path(sentiment_set: Path, tmp_path: Path) -> None:
    app, configs = make_app()
    config = tmp_path / "c.yaml"
    result = runner.invoke(
        app, ["eval", "sentiment", str(sentiment_set), "--versions", "1", "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert configs == [config]


def test_eval_summarize_and_translate_on_the_shipped_datasets() -> None:
    app, _ = make_app()
    summarize = runner.invoke(
        app, ["eval", "summarize", str(DATASETS / "summarize-dev.jsonl"), "--versions", "1.0.0"]
    )
    assert summarize.exit_code == 0, summarize.output
    assert "retention" in summarize.stdout
    assert "invented (extractive)" in summarize.stdout
    translate = runner.invoke(
        app,
        [
            "eval",
            "translate",
            str(DATASETS / "translate-dev.tsv"),
            "--versions",
            "1.0.0",
            "--limit",
            "3",
            "--json",
        ],
    )
    assert translate.exit_code == 0, translate.output
    [version] = json.loads(translate.stdout)["versions"]
    assert version["metrics"]["translated"] == "0/3"  # rules: honest, untranslated
    assert 0 < version["metrics"]["chrF"] < 60


def test_eval_route_prints_accuracy_and_abstention(tmp_path: Path) -> None:
    dataset = tmp_path / "r.tsv"
    dataset.write_text("expected\ttext\nsentiment\tHow do they feel?\n-\tWhat is the capital of Peru?\n")
    router = Router(rules=[MetadataRule("never", {"x": "y"}, "sentiment")])  # abstains on everything
    app, _ = make_app(router=router)
    result = runner.invoke(app, ["eval", "route", str(dataset)])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout
    assert "0.000 (0/1)" in result.stdout
    assert "abstention rate" in result.stdout
    assert "1.000 (2/2)" in result.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["eval", "nosuch", "{sentiment}"], "plugin_not_found"),
        (["eval", "sentiment", "{sentiment}", "--versions", "9.9.9"], "plugin_not_found"),
        (["eval", "sentiment", "/no/such/file.tsv"], "invalid_request"),
    ],
)
def test_eval_errors_are_typed(args: list[str], code: str, sentiment_set: Path) -> None:
    app, _ = make_app()
    args = [a.replace("{sentiment}", str(sentiment_set)) for a in args]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == code
    pretty = runner.invoke(app, args)
    assert pretty.exit_code == 1
    assert f"[{code}]" in pretty.stderr


def test_eval_has_help() -> None:
    app, _ = make_app()
    result = runner.invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    assert "--versions" in result.output
    assert "--limit" in result.output
