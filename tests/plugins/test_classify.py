"""classify@3/@2/@1: one contract, scores for every label, and a ladder that keeps
answering (and says so) when the model is down or over budget."""

from __future__ import annotations

import asyncio
import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from brickwork.contracts.errors import InputValidationError
from brickwork.contracts.plugin import Plugin
from brickwork.contracts.policy import DEFAULT_FALLBACK_ON
from brickwork.contracts.provider import Embeddings, EmbedRequest, Provider, ScoreRequest, Usage
from brickwork.contracts.request import Envelope
from brickwork.plugins.classify import (
    ClassifyEmbedding,
    ClassifyInput,
    ClassifyLLM,
    ClassifyOutput,
    ClassifyRules,
)
from brickwork.plugins.classify.rules import label_evidence, stem
from brickwork.providers.e5 import E5Embedder
from brickwork.runtime.models import ModelPrice, Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.testing import FakeClock, FakeProvider, PluginContractTests, server_error

TOPIC_DEV = Path(__file__).resolve().parents[2] / "datasets" / "topic-dev.tsv"
TOPICS = ["sports", "politics", "technology", "health", "business"]
TOPIC_DESCRIPTIONS = {
    "sports": "games, teams, athletes, matches and competitions",
    "politics": "government, elections, parties, laws and diplomacy",
    "technology": "computers, software, the internet, gadgets and engineering",
    "health": "medicine, disease, doctors, hospitals, diet and fitness",
    "business": "companies, markets, the economy, finance and jobs",
}
LADDER = (ClassifyRules, ClassifyEmbedding, ClassifyLLM)  # fallback targets first
#: One engine for the whole module; it loads its weights on first use.
E5 = E5Embedder(threads=1)


class E5Provider(FakeProvider):
    """``local`` with real e5 embeddings; scoring and completion are the fake's (scriptable).

    ``is_real`` stays False: local weights, deterministic, no network.
    """

    def __init__(self, embed_error: BaseException | None = None) -> None:
        super().__init__("local")
        self.embed_error = embed_error

    async def embed(self, request: EmbedRequest) -> Embeddings:
        self.calls.append(request)
        if self.embed_error is not None:
            raise self.embed_error
        vectors = await asyncio.to_thread(E5.embed, request.texts, request.purpose)
        return Embeddings(vectors=vectors, model=request.model, usage=Usage(input_tokens=1, calls=1))


def orchestrator(
    *plugins: type[Plugin[Any, Any]],
    providers: Sequence[Provider] = (),
    settings: dict[str, PluginSettings] | None = None,
    prices: dict[str, ModelPrice] | None = None,
) -> Orchestrator:
    registry = Registry(settings)
    for cls in plugins:
        registry.add(cls)
    table = Providers(prices=prices or {})
    for provider in providers:
        table.add(provider)
    # Retries back off on fake time: the ladder tests take no real seconds.
    return Orchestrator(registry, providers=table, clock=FakeClock(autojump=True))


def output(envelope: Envelope) -> ClassifyOutput:
    return ClassifyOutput.model_validate(envelope.output)


# --- the conformance suite, for each rung ----------------------------------------------------


class LadderContractTests(PluginContractTests):
    """A rung's fallbacks are registered first by the suite (``fallbacks``)."""


class TestClassifyRulesContract(PluginContractTests):
    plugin = ClassifyRules


class TestClassifyEmbeddingContract(LadderContractTests):
    plugin = ClassifyEmbedding
    fallbacks = (ClassifyRules,)


class TestClassifyEmbeddingOnE5(LadderContractTests):
    """The examples that need a model, held by the real embeddings."""

    plugin = ClassifyEmbedding
    fallbacks = (ClassifyRules,)
    real_models = True

    def make_providers(self) -> list[Provider]:
        return [E5Provider()]


class TestClassifyLLMContract(LadderContractTests):
    plugin = ClassifyLLM
    fallbacks = (ClassifyRules, ClassifyEmbedding)


def test_every_rung_has_the_same_contract() -> None:
    registry = Registry()
    for cls in LADDER:
        registry.add(cls)
    contracts = {entry.contract() for entry in registry.entries()}
    assert len(contracts) == 1
    assert [e.ref for e in registry.entries()] == ["classify@1.0.0", "classify@2.0.0", "classify@3.0.0"]


# --- the contract ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"text": "x", "labels": ["only"]},
        {"text": "x", "labels": ["Sports", "sports "]},
        {"text": "x", "labels": ["a", "b"], "descriptions": {"c": "not a label"}},
        {"text": "x", "labels": [str(i) for i in range(51)]},
        {"text": "", "labels": ["a", "b"]},
        {"text": "x", "labels": ["a", "b"], "threshold": 1.5},
    ],
)
async def test_bad_input_is_refused_before_it_runs(bad: dict[str, Any]) -> None:
    with pytest.raises(InputValidationError):
        await orchestrator(ClassifyRules).handle({"plugin": "classify@1", "input": bad})


# --- classify@3: LLM label scoring ----------------------------------------------------------------


async def test_llm_single_label_scores_are_the_softmax_of_label_logprobs() -> None:
    fake = FakeProvider("local").enqueue({"sports": -0.1, "politics": -2.0, "technology": -4.0})
    request = {
        "text": "The striker scored twice.",
        "labels": ["sports", "politics", "technology"],
        "descriptions": {"politics": "government and elections"},
    }

    envelope = await orchestrator(*LADDER, providers=[fake]).handle({"plugin": "classify", "input": request})

    out = output(envelope)
    total = math.exp(-0.1) + math.exp(-2.0) + math.exp(-4.0)
    assert out.scores == pytest.approx(
        {
            "sports": math.exp(-0.1) / total,
            "politics": math.exp(-2.0) / total,
            "technology": math.exp(-4.0) / total,
        },
        abs=1e-6,
    )
    assert (out.label, out.labels, out.method) == ("sports", ["sports"], "llm")
    assert (envelope.version, envelope.degraded) == ("3.0.0", False)
    assert envelope.prompt_version == "choose@1,judge@1,text@1"
    (call,) = [c for c in fake.calls if isinstance(c, ScoreRequest)]
    assert call.model == "qwen2.5-0.5b"
    assert call.candidates == ["sports", "politics", "technology"]
    system, user = call.messages
    assert "- politics: government and elections\n" in system.content
    assert "- sports\n" in system.content
    assert user.content == "Text:\nThe striker scored twice."


async def test_llm_multi_label_judges_each_label_on_its_own() -> None:
    fake = FakeProvider("local").enqueue(
        {"Yes": -0.2, "No": -2.0},  # sports
        {"Yes": -3.0, "No": -0.1},  # health
        {"Yes": -0.5, "No": -1.0},  # business
    )
    request = {
        "text": "The football club's shares fell after it reported a loss.",
        "labels": ["sports", "health", "business"],
        "multi_label": True,
    }

    out = output(
        await orchestrator(*LADDER, providers=[fake]).handle({"plugin": "classify", "input": request})
    )

    def p_yes(yes: float, no: float) -> float:
        return math.exp(yes) / (math.exp(yes) + math.exp(no))

    assert out.scores == pytest.approx(
        {"sports": p_yes(-0.2, -2.0), "health": p_yes(-3.0, -0.1), "business": p_yes(-0.5, -1.0)}, abs=1e-6
    )
    assert out.labels == ["sports", "business"]  # both above 0.5, best first
    assert out.label == "sports"
    calls = [c for c in fake.calls if isinstance(c, ScoreRequest)]
    assert [c.candidates for c in calls] == [["Yes", "No"]] * 3
    assert [c.messages[-1].content.splitlines()[-1] for c in calls] == [
        "Is this text about sports? Answer Yes or No.",
        "Is this text about health? Answer Yes or No.",
        "Is this text about business? Answer Yes or No.",
    ]
    assert all(c.messages[0].content.startswith("Text:\nThe football club's") for c in calls)


async def test_a_threshold_decides_what_is_chosen() -> None:
    fake = FakeProvider("local").enqueue({"a": -1.0, "b": -1.1}, *[{"Yes": -0.7, "No": -0.6}] * 2)
    runtime = orchestrator(*LADDER, providers=[fake])

    unsure = output(
        await runtime.handle(
            {"plugin": "classify", "input": {"text": "t", "labels": ["a", "b"], "threshold": 0.9}}
        )
    )
    lenient = output(
        await runtime.handle(
            {
                "plugin": "classify",
                "input": {"text": "t", "labels": ["a", "b"], "multi_label": True, "threshold": 0.4},
            }
        )
    )

    assert (unsure.label, unsure.labels) == ("a", [])  # best label below the asked confidence
    assert lenient.labels == ["a", "b"]  # P(yes) ≈ 0.48 each: chosen at 0.4, not at the default 0.5


# --- the ladder -----------------------------------------------------------------------------------


async def test_when_the_llm_is_down_embeddings_answer_and_the_envelope_says_so() -> None:
    provider = E5Provider().fail(server_error(503), times=10)
    runtime = orchestrator(*LADDER, providers=[provider])

    envelope = await runtime.handle(
        {
            "input": {
                "text": "Parliament approved the new immigration bill.",
                "labels": ["sports", "politics"],
            },
            "plugin": "classify",
        }
    )

    out = output(envelope)
    assert (envelope.version, out.method, out.label) == ("2.0.0", "embedding", "politics")
    assert envelope.degraded is True
    assert [(a.version, a.code in DEFAULT_FALLBACK_ON) for a in envelope.fallbacks] == [("3.0.0", True)]
    assert envelope.warnings[0] == "degraded: answered by classify@2.0.0 after classify@3.0.0 failed"
    assert sum(out.scores.values()) == pytest.approx(1, abs=1e-4)


async def test_when_every_model_is_down_the_rules_answer() -> None:
    provider = E5Provider(embed_error=server_error(502)).fail(server_error(503), times=10)
    runtime = orchestrator(*LADDER, providers=[provider])
    request = {
        "text": "The striker scored a late goal and the team won the match.",
        "labels": ["sports", "politics"],
        "descriptions": {"sports": "teams, matches, goals"},
    }

    envelope = await runtime.handle({"plugin": "classify", "input": request})

    out = output(envelope)
    assert (envelope.version, out.method, out.label) == ("1.0.0", "rules", "sports")
    assert envelope.degraded is True
    assert [a.version for a in envelope.fallbacks] == ["3.0.0", "2.0.0"]
    assert set(out.scores) == {"sports", "politics"}


async def test_over_budget_the_rules_answer_without_spending() -> None:
    settings = {"classify": PluginSettings(policy={"budget": {"limit": 0.0001}})}
    prices = {"local:*": ModelPrice(input=1_000.0, output=1_000.0)}  # any call costs more than the budget
    provider = E5Provider()
    runtime = orchestrator(*LADDER, providers=[provider], settings=settings, prices=prices)

    envelope = await runtime.handle(
        {
            "plugin": "classify",
            "input": {"text": "Parliament passed the law.", "labels": ["sports", "politics"]},
        }
    )

    assert (envelope.version, envelope.output["method"]) == ("1.0.0", "rules")
    assert [a.code for a in envelope.fallbacks] == ["budget_exceeded", "budget_exceeded"]
    assert envelope.cost == 0
    assert provider.calls == []  # refused before any model was asked


async def test_the_rules_need_no_provider_at_all() -> None:
    runtime = orchestrator(ClassifyRules)  # an empty provider table

    envelope = await runtime.handle(
        {
            "plugin": "classify",
            "input": {"text": "Quarterly profit rose.", "labels": ["weather", "cooking", "music"]},
        }
    )

    out = output(envelope)
    assert out.method == "rules"
    assert out.scores == pytest.approx({"weather": 1 / 3, "cooking": 1 / 3, "music": 1 / 3}, abs=1e-6)
    assert out.label == "weather"  # ties keep the request's order
    assert envelope.warnings == ["classify rules: no label word found in the text; scores are uniform"]
    assert envelope.models == []


# --- classify@2 and classify@1 on their own ---------------------------------------------------------


async def test_embedding_multi_label_scores_each_label_independently() -> None:
    runtime = orchestrator(ClassifyRules, ClassifyEmbedding, providers=[E5Provider()])
    text = "The president met the national football team after their victory."

    two = output(
        await runtime.handle(
            {
                "plugin": "classify@2",
                "input": {"text": text, "labels": ["sports", "politics"], "multi_label": True},
            }
        )
    )
    four = output(
        await runtime.handle(
            {
                "plugin": "classify@2",
                "input": {
                    "text": text,
                    "labels": ["sports", "politics", "health", "business"],
                    "multi_label": True,
                },
            }
        )
    )

    assert set(two.labels) == {"sports", "politics"}
    # Adding labels does not move the others' scores: each is judged alone.
    assert four.scores["sports"] == pytest.approx(two.scores["sports"], abs=1e-6)
    assert four.scores["politics"] == pytest.approx(two.scores["politics"], abs=1e-6)
    assert set(four.labels) == {"sports", "politics"}


def test_rules_stem_and_weigh_rare_words() -> None:
    assert stem("elections") == stem("election")
    assert stem("political") == stem("politics")
    assert stem("matches") == "match"
    evidence = label_evidence(
        "Voters went to the polls in the election.",
        ["politics", "sports"],
        {"politics": "elections, voters and parties", "sports": "matches, teams and voters"},
    )
    # "election" is politics' alone; "voters" is shared by both labels, so it counts less.
    assert evidence["politics"] > evidence["sports"] > 0


# --- accuracy on the topic dev set ------------------------------------------------------------------


def _topic_rows() -> list[dict[str, str]]:
    with TOPIC_DEV.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


async def _accuracy(runtime: Orchestrator, ref: str, rows: list[dict[str, str]], descriptions: bool) -> float:
    correct = 0
    for row in rows:
        request = ClassifyInput(
            text=row["text"], labels=TOPICS, descriptions=TOPIC_DESCRIPTIONS if descriptions else {}
        )
        envelope = await runtime.handle({"plugin": ref, "input": request.model_dump()})
        correct += envelope.output["label"] == row["label"]
    return correct / len(rows)


async def test_accuracy_on_the_topic_dev_set() -> None:
    rows = _topic_rows()
    assert len(rows) == 65
    runtime = orchestrator(ClassifyRules, ClassifyEmbedding, providers=[E5Provider()])

    rules_names = await _accuracy(runtime, "classify@1", rows, descriptions=False)
    rules_described = await _accuracy(runtime, "classify@1", rows, descriptions=True)
    # e5 costs ~0.1 s a request on this machine: every third row keeps the suite fast.
    # (Measured on all 65 rows when written: 62/65 with label names, 64/65 with descriptions.)
    sample = rows[::3]
    embedding_names = await _accuracy(runtime, "classify@2", sample, descriptions=False)
    print(
        f"\ntopic-dev: rules {rules_names:.1%} (names) / {rules_described:.1%} (with descriptions) on "
        f"{len(rows)} rows; embeddings {embedding_names:.1%} (names) on {len(sample)} rows"
    )
    # Measured when written: rules 15/65 with names only (chance is 13/65: news text
    # rarely says "sports"), 29/65 with descriptions; embeddings 21/22 on the sample.
    assert rules_described >= 0.40
    assert rules_described > rules_names + 0.1
    assert embedding_names >= 0.85
