"""translate@2 (LLM, glossary enforced, honest quality) and its ladder to translate@1 (no model)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from brickwork.contracts.plugin import Plugin
from brickwork.contracts.provider import CompletionRequest, Provider
from brickwork.plugins.translate import TranslateLLM, TranslateRules
from brickwork.plugins.translate.glossary import missing_terms, normalize, protect, reinsert, restore
from brickwork.plugins.translate.llm import is_small_model
from brickwork.runtime.models import ModelPrice, Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.testing import FakeClock, FakeProvider, FunctionProvider, PluginContractTests, server_error

OPEN = "Open the Brickwork dashboard and click Deploy."
GLOSSARY = ["Brickwork", "Deploy"]


def runtime(
    *plugins: type[Plugin[Any, Any]],
    provider: Provider | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    settings: Mapping[str, PluginSettings] | None = None,
) -> Orchestrator:
    registry = Registry(settings)
    for cls in plugins or (TranslateRules, TranslateLLM):
        registry.add(cls)
    providers = Providers(prices=dict(prices or {}))
    if provider is not None:
        providers.add(provider)
    return Orchestrator(registry, providers=providers, clock=FakeClock(autojump=True), rng=random.Random(7))


def user_text(request: Any) -> str:
    assert isinstance(request, CompletionRequest)
    return request.messages[-1].content


# --- conformance -----------------------------------------------------------------


class TestTranslateRulesContract(PluginContractTests):
    plugin = TranslateRules


class TestTranslateLLMContract(PluginContractTests):
    plugin = TranslateLLM
    fallbacks: ClassVar[tuple[type[Plugin[Any, Any]], ...]] = (TranslateRules,)


def test_both_versions_share_one_contract() -> None:
    registry = Registry()
    rules = registry.add(TranslateRules)
    llm = registry.add(TranslateLLM)
    assert rules is not None
    assert llm is not None
    assert rules.contract() == llm.contract()


# --- translate@2 ---------------------------------------------------------------------


async def test_glossary_terms_are_hidden_from_the_model_and_restored() -> None:
    provider = FakeProvider("local").enqueue("Ouvrez le tableau de bord [T1] et cliquez sur [T2].")
    envelope = await runtime(provider=provider).handle(
        {
            "plugin": "translate@2",
            "input": {"text": OPEN, "target_language": "fr", "source_language": "en", "glossary": GLOSSARY},
        }
    )
    assert envelope.output["translation"] == "Ouvrez le tableau de bord Brickwork et cliquez sur Deploy."
    assert envelope.output["glossary_kept"] is True
    assert envelope.output["translated"] is True
    [request] = provider.calls
    assert user_text(request) == "Open the [T1] dashboard and click [T2]."
    system = request.messages[0].content  # type: ignore[union-attr]
    assert "from English to French" in system
    assert "[T1]" in system


async def test_small_local_model_is_honest_about_quality() -> None:
    provider = FakeProvider("local").enqueue("Bonjour à tous.")
    envelope = await runtime(provider=provider).handle(
        {"plugin": "translate@2", "input": {"text": "Hello everyone.", "target_language": "fr"}}
    )
    assert envelope.output["quality"] == "best_effort"
    assert "best effort" in envelope.output["note"]
    assert any("small local model (qwen2.5-0.5b)" in w for w in envelope.warnings)
    assert not envelope.degraded


async def test_damaged_placeholders_are_still_restored() -> None:
    provider = FakeProvider("local").enqueue("Ouvrez le tableau de bord [ t1 ] et cliquez sur (T2).")
    envelope = await runtime(provider=provider).handle(
        {"plugin": "translate@2", "input": {"text": OPEN, "target_language": "fr", "glossary": GLOSSARY}}
    )
    assert envelope.output["translation"] == "Ouvrez le tableau de bord Brickwork et cliquez sur Deploy."
    assert not any("dropped" in w for w in envelope.warnings)


async def test_terms_the_model_drops_are_put_back_verbatim_and_reported() -> None:
    provider = FakeProvider("local").enqueue("Ouvrez le tableau de bord et cliquez sur le bouton.")
    envelope = await runtime(provider=provider).handle(
        {"plugin": "translate@2", "input": {"text": OPEN, "target_language": "fr", "glossary": GLOSSARY}}
    )
    out = envelope.output
    assert out["translation"] == "Ouvrez le Brickwork tableau de bord et cliquez sur le Deploy bouton."
    assert out["glossary_kept"] is True
    assert "put back" in out["note"]
    assert any("dropped glossary term(s) ['Brickwork', 'Deploy']" in w for w in envelope.warnings)


async def test_a_term_the_model_translated_anyway_is_still_there_verbatim() -> None:
    # The model wrote "Déployer" instead of copying [T2]: the glossary term is put
    # back beside it (a guess at the place, reported), never silently lost.
    provider = FakeProvider("local").enqueue("Ouvrez le tableau de bord [T1] et cliquez sur Déployer.")
    envelope = await runtime(provider=provider).handle(
        {"plugin": "translate@2", "input": {"text": OPEN, "target_language": "fr", "glossary": GLOSSARY}}
    )
    assert (
        envelope.output["translation"]
        == "Ouvrez le tableau de bord Brickwork et cliquez sur Deploy Déployer."
    )
    assert envelope.output["glossary_kept"] is True
    assert any("dropped glossary term(s) ['Deploy']" in w for w in envelope.warnings)


async def test_a_mapping_glossary_forces_the_target_term() -> None:
    provider = FakeProvider("local").enqueue("Ouvrez le [T1] maintenant.")
    envelope = await runtime(provider=provider).handle(
        {
            "plugin": "translate@2",
            "input": {
                "text": "Open the dashboard now.",
                "target_language": "fr",
                "glossary": {"dashboard": "tableau de bord"},
            },
        }
    )
    assert envelope.output["translation"] == "Ouvrez le tableau de bord maintenant."
    assert envelope.output["glossary_kept"] is True
    assert user_text(provider.calls[0]) == "Open the [T1] now."


async def test_source_language_is_detected_when_not_given() -> None:
    provider = FakeProvider("local").enqueue("The weather is nice today, so we are going to the beach.")
    envelope = await runtime(provider=provider).handle(
        {
            "plugin": "translate@2",
            "input": {
                "text": "Das Wetter ist heute schön, also gehen wir zum Strand.",
                "target_language": "en",
            },
        }
    )
    assert envelope.output["source_language"] == "de"
    assert "from German to English" in provider.calls[0].messages[0].content  # type: ignore[union-attr]
    assert envelope.output["translated"] is True


async def test_same_language_returns_the_text_unchanged_without_a_model_call() -> None:
    provider = FakeProvider("local")
    text = "Le train pour Paris part à huit heures du matin."
    for ref in ("translate@2", "translate@1"):
        envelope = await runtime(provider=provider).handle(
            {"plugin": ref, "input": {"text": text, "target_language": "fr"}}
        )
        assert envelope.output["translation"] == text
        assert envelope.output["source_language"] == "fr"
        assert envelope.output["quality"] == "exact"
        assert envelope.output["translated"] is True
    assert provider.calls == []


async def test_an_answer_still_in_the_source_language_is_not_called_a_translation() -> None:
    text = "My brother works in a big hospital in Berlin."
    provider = FakeProvider("local").enqueue(text)
    envelope = await runtime(provider=provider).handle(
        {"plugin": "translate@2", "input": {"text": text, "target_language": "de"}}
    )
    assert envelope.output["translated"] is False
    assert envelope.output["quality"] == "none"
    assert any("still in English" in w for w in envelope.warnings)


async def test_long_texts_are_translated_in_chunks_keeping_paragraphs() -> None:
    paragraphs = [
        " ".join(f"This is sentence {i} of paragraph {p} about Brickwork." for i in range(4))
        for p in range(3)
    ]
    text = "\n\n".join(paragraphs)
    provider = FunctionProvider(
        lambda r: "Traduit [T1] " + str(user_text(r).count("sentence")), name="local", context_window=150
    )
    envelope = await runtime(TranslateRules, TranslateLLM, provider=provider).handle(
        {
            "plugin": "translate@2",
            "input": {
                "text": text,
                "target_language": "fr",
                "source_language": "en",
                "glossary": ["Brickwork"],
            },
        }
    )
    chunks = [user_text(r) for r in provider.calls]
    assert len(chunks) > 1
    assert sum(c.count("sentence") for c in chunks) == 12
    assert "Brickwork" not in "".join(chunks)
    translation = envelope.output["translation"]
    assert translation.count("Brickwork") == len(chunks)
    assert translation.count("\n\n") == 2  # paragraph breaks kept between chunks
    assert f"translated in {len(chunks)} parts" in envelope.output["note"]


# --- the ladder ----------------------------------------------------------------------


async def test_model_down_translate_1_answers_untranslated_and_says_so() -> None:
    provider = FakeProvider("local").fail(server_error(503), times=3)
    envelope = await runtime(provider=provider).handle(
        {"plugin": "translate@2", "input": {"text": OPEN, "target_language": "fr", "glossary": GLOSSARY}}
    )
    assert (envelope.plugin, envelope.version) == ("translate", "1.0.0")
    assert envelope.degraded
    assert [(a.plugin, a.version) for a in envelope.fallbacks] == [("translate", "2.0.0")]
    out = envelope.output
    assert out["translation"] == OPEN
    assert out["translated"] is False
    assert out["quality"] == "none"
    assert out["source_language"] == "en"
    assert out["glossary_kept"] is True
    assert out["note"].startswith("not translated")
    assert any("untranslated" in w for w in envelope.warnings)


async def test_over_budget_translate_1_answers_without_a_model_call() -> None:
    provider = FakeProvider("local")
    envelope = await runtime(
        provider=provider,
        prices={"local:qwen2.5-0.5b": ModelPrice(input=1000.0, output=1000.0)},
        settings={"translate": PluginSettings(policy={"budget": {"limit": 0.01}})},
    ).handle({"plugin": "translate@2", "input": {"text": OPEN, "target_language": "de"}})
    assert envelope.degraded
    assert [a.code for a in envelope.fallbacks] == ["budget_exceeded"]
    assert envelope.output["translated"] is False
    assert provider.calls == []


async def test_empty_model_answer_moves_down_the_ladder() -> None:
    provider = FakeProvider("local").enqueue("  ")
    envelope = await runtime(provider=provider).handle(
        {"plugin": "translate@2", "input": {"text": OPEN, "target_language": "es"}}
    )
    assert envelope.degraded
    assert [a.code for a in envelope.fallbacks] == ["provider_bad_response"]


async def test_rules_with_a_mapping_glossary_admit_the_term_is_not_there() -> None:
    envelope = await runtime().handle(
        {
            "plugin": "translate@1",
            "input": {
                "text": "Open the dashboard.",
                "target_language": "fr",
                "glossary": {"dashboard": "tableau de bord"},
            },
        }
    )
    assert envelope.output["translated"] is False
    assert envelope.output["glossary_kept"] is False


# --- glossary mechanics --------------------------------------------------------------


def test_protect_matches_whole_terms_longest_first() -> None:
    glossary = normalize(["Go", "Google Cloud", "Google"])
    protected = protect("Google Cloud runs Go code; Google and Gopher.", glossary)
    assert protected.text == "[T1] runs [T3] code; [T2] and Gopher."
    assert protected.slots == {1: "Google Cloud", 2: "Google", 3: "Go"}
    assert protected.terms == {"Go": "Go", "Google Cloud": "Google Cloud", "Google": "Google"}


def test_placeholders_never_collide_with_the_text() -> None:
    protected = protect("See note [T1] about Brickwork.", normalize(["Brickwork"]))
    assert protected.prefix != "T"
    assert protected.text == f"See note [T1] about [{protected.prefix}1]."
    restored, missing = restore(f"Voir la note [T1] sur [{protected.prefix}1].", protected)
    assert restored == "Voir la note [T1] sur Brickwork."
    assert missing == []


def test_reinsert_and_missing_terms() -> None:
    protected = protect("Brickwork is fast.", normalize(["Brickwork"]))
    restored, missing = restore("est rapide.", protected)
    assert missing == [1]
    assert missing_terms(restored, protected.terms) == ["Brickwork"]
    repaired = reinsert(restored, protected, missing)
    assert repaired == "Brickwork est rapide."
    assert missing_terms(repaired, protected.terms) == []


@pytest.mark.parametrize(
    ("model", "small"),
    [
        ("qwen2.5-0.5b", True),
        ("local:smollm2-135m", True),
        ("llama-3.2-3b-instruct", True),
        ("gemma-3-270m", True),
        ("gpt-4o-mini", False),
        ("claude-sonnet-4", False),
        ("llama-3.1-70b", False),
    ],
)
def test_small_models_are_recognised(model: str, small: bool) -> None:
    assert is_small_model(model) is small
