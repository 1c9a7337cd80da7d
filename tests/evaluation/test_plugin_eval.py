"""Plugin evaluation: metrics with known answers on tiny datasets, chrF against sacreBLEU."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from brickwork.contracts.errors import InvalidRequestError, PluginNotFoundError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.provider import Provider
from brickwork.evaluation.plugins import (
    LabelledText,
    SummaryCase,
    TranslationCase,
    chrf,
    corpus_chrf,
    evaluate_labels,
    evaluate_summaries,
    evaluate_translations,
    fact_retained,
    invented_sentences,
    load_labelled,
    load_summaries,
    load_translations,
    resolve_versions,
)
from brickwork.plugins.sentiment import SentimentRules
from brickwork.plugins.sentiment.llm import SentimentLLM
from brickwork.plugins.summarize import SummarizeExtractive, SummarizeInput, SummarizeLLM, SummarizeOutput
from brickwork.plugins.translate import TranslateLLM, TranslateRules
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.testing import FakeClock, FakeProvider, server_error

DATASETS = Path(__file__).resolve().parents[2] / "datasets"

POSITIVE = {"positive": -0.1, "negative": -5.0, "neutral": -4.0}
NEGATIVE = {"positive": -5.0, "negative": -0.1, "neutral": -4.0}

#: (hypothesis, reference, sentence chrF from sacreBLEU 2.6.0's CHRF())
SACREBLEU = [
    ("The cat sat on the mat.", "The cat sat on the mat.", 100.0),
    ("the cat is on the mat", "the cat sat on the mat", 61.9251512899325),
    ("Le chat est sur le tapis.", "Le chat est assis sur le tapis.", 68.9409522915008),
    ("abc", "xyz", 0.0),
    ("Hello world", "Bonjour le monde", 8.942022646644311),
]
#: sacreBLEU's corpus_score over the five pairs above.
SACREBLEU_CORPUS = 63.768940755149


def runtime(
    *plugins: type[Plugin[Any, Any]],
    provider: Provider | None = None,
    settings: dict[str, PluginSettings] | None = None,
) -> Orchestrator:
    registry = Registry(settings)
    for cls in plugins:
        registry.add(cls)
    providers = Providers()
    if provider is not None:
        providers.add(provider)
    return Orchestrator(registry, providers=providers, clock=FakeClock(autojump=True), rng=random.Random(7))


# --- chrF ----------------------------------------------------------------------------


@pytest.mark.parametrize(("hypothesis", "reference", "expected"), SACREBLEU)
def test_sentence_chrf_matches_sacrebleu(hypothesis: str, reference: str, expected: float) -> None:
    assert chrf(hypothesis, reference) == pytest.approx(expected, abs=1e-9)


def test_corpus_chrf_sums_statistics_before_scoring() -> None:
    hypotheses = [h for h, _, _ in SACREBLEU]
    references = [r for _, r, _ in SACREBLEU]
    assert corpus_chrf(hypotheses, references) == pytest.approx(SACREBLEU_CORPUS, abs=1e-9)
    mean = sum(e for _, _, e in SACREBLEU) / len(SACREBLEU)
    assert corpus_chrf(hypotheses, references) != pytest.approx(mean)


def test_chrf_edge_cases() -> None:
    assert chrf("", "something") == 0.0
    assert chrf("a b c", "abc") == 100.0  # whitespace is ignored
    with pytest.raises(ValueError, match="one reference"):
        corpus_chrf(["a"], [])


# --- summaries: fact retention and invention -----------------------------------------


def test_fact_retention_needs_every_term_as_a_whole_word() -> None:
    summary = "Mayor Ortiz said repairs start in May; the cost is $4.5 million."
    assert fact_retained(summary, ["Ortiz", "May"])
    assert fact_retained(summary, ["$4.5 million"])
    assert not fact_retained(summary, ["Ortiz", "June"])
    assert not fact_retained(summary, ["Ort"])  # part of a word is not the word


def test_invented_sentences_are_those_not_in_the_source() -> None:
    source = "Alpha rose. Beta fell. Gamma stayed."
    assert invented_sentences(["Beta fell.", "Alpha rose."], source) == []
    assert invented_sentences(["Beta fell.", "Delta appeared."], source) == ["Delta appeared."]


# --- labels ------------------------------------------------------------------------


async def test_label_accuracy_per_class_degraded_and_latency() -> None:
    examples = [
        LabelledText("pos", "I love this film"),
        LabelledText("neg", "A terrible, boring mess"),
        LabelledText("pos", "The train leaves at nine"),  # gold says pos; VADER says neutral
        LabelledText("neg", "What a wonderful surprise"),  # gold says neg; every version says positive
    ]
    # sentiment@2: scripted answers for items 1, 2 and 4; item 3's model call fails and
    # sentiment@1 answers instead (no retry, so exactly one failure per item).
    provider = FakeProvider("local").enqueue(POSITIVE, NEGATIVE, server_error(), POSITIVE)
    orch = runtime(
        SentimentRules,
        SentimentLLM,
        provider=provider,
        settings={"sentiment": PluginSettings(policy={"retry": None})},
    )
    ticks: list[int] = []
    evaluation = await evaluate_labels(
        orch, "sentiment", examples, versions=["1.0.0", "2.0.0"], progress=lambda: ticks.append(1)
    )
    rules, llm = evaluation.reports
    assert len(ticks) == 8
    assert (rules.ref, llm.ref) == ("sentiment@1.0.0", "sentiment@2.0.0")

    assert rules.metrics["accuracy"] == 0.5
    assert rules.metrics["correct"] == "2/4"
    assert rules.metrics["positive: right/gold/predicted"] == "1/2/2"
    assert rules.metrics["negative: right/gold/predicted"] == "1/2/1"
    assert rules.metrics["neutral: right/gold/predicted"] == "0/0/1"
    assert (rules.degraded, rules.errors) == (0, 0)

    assert llm.metrics["accuracy"] == 0.5
    assert llm.metrics["positive: right/gold/predicted"] == "1/2/2"
    assert llm.metrics["neutral: right/gold/predicted"] == "0/0/1"
    assert llm.degraded == 1
    assert llm.answered_by == {"sentiment@2.0.0": 3, "sentiment@1.0.0": 1}
    assert len(llm.latencies_ms) == 4
    assert llm.mean_latency_ms >= 0
    assert len(provider.calls) == 4
    rows = llm.rows()
    assert rows["degraded"] == 1
    assert rows["answered by"] == "sentiment@1.0.0×1, sentiment@2.0.0×3"


async def test_errors_count_as_wrong_answers() -> None:
    # sentiment@2 alone with its fallback removed by config: a failure is an error.
    provider = FakeProvider("local").enqueue(POSITIVE, server_error())
    orch = runtime(
        SentimentRules,
        SentimentLLM,
        provider=provider,
        settings={"sentiment": PluginSettings(policy={"retry": None, "fallback": {"plugins": []}})},
    )
    examples = [LabelledText("pos", "great"), LabelledText("pos", "great too")]
    evaluation = await evaluate_labels(orch, "sentiment", examples, versions=["2"])
    [report] = evaluation.reports
    assert report.metrics["accuracy"] == 0.5
    assert report.errors == 1
    assert report.error_codes == {"provider_unavailable": 1}
    assert report.metrics["(error): right/gold/predicted"] == "0/0/1"
    assert report.rows()["errors"] == "1 (provider_unavailable×1)"


class TopicIn(PluginInput):
    text: str
    labels: list[str] = Field(min_length=2)


class TopicOut(PluginOutput):
    label: str


class FirstWord(Plugin[TopicIn, TopicOut]):
    """A zero-shot classifier double: the first word of the text if it is a label."""

    name = "topic"
    version = "1.0.0"
    description = "First word as the topic."

    async def run(self, input: TopicIn, ctx: Context) -> TopicOut:
        word = input.text.split()[0].lower()
        return TopicOut(label=word if word in input.labels else input.labels[0])


async def test_zero_shot_classifiers_get_the_dataset_labels() -> None:
    examples = [
        LabelledText("sports", "sports news today"),
        LabelledText("politics", "politics again"),
        LabelledText("science", "weather is nice"),  # → labels[0] == "politics" (sorted)
    ]
    evaluation = await evaluate_labels(runtime(FirstWord), "topic", examples)
    [report] = evaluation.reports
    assert report.metrics["accuracy"] == pytest.approx(0.6667)
    assert report.metrics["politics: right/gold/predicted"] == "1/1/2"
    assert report.metrics["science: right/gold/predicted"] == "0/1/0"


# --- summaries -----------------------------------------------------------------------


class Invents(Plugin[SummarizeInput, SummarizeOutput]):
    """A broken extractive summarizer double: it makes a sentence up."""

    name = "fakesum"
    version = "1.0.0"
    description = "Invents."

    async def run(self, input: SummarizeInput, ctx: Context) -> SummarizeOutput:
        first = input.text.split(". ")[0] + "."
        return SummarizeOutput(summary=f"{first} Aliens landed.", method="extractive", chunks=1)


async def test_summary_retention_and_invented_sentences() -> None:
    case = SummaryCase(
        "lib",
        "Harwick opened a library. It cost 3.5 million pounds. It holds 70,000 books. Sarah Njoku runs it.",
        (("library", "Harwick"), ("3.5 million",), ("70,000",), ("Njoku",)),
    )
    provider = FakeProvider("local").enqueue("Harwick opened a library that cost 3.5 million pounds.")
    orch = runtime(SummarizeExtractive, SummarizeLLM, provider=provider)
    evaluation = await evaluate_summaries(orch, "summarize", [case], versions=["2.0.0", "1.0.0"])
    llm, extractive = evaluation.reports
    assert llm.metrics["retention"] == 0.5
    assert llm.metrics["facts kept"] == "2/4"
    assert llm.metrics["methods"] == "abstractive×1"
    assert llm.metrics["mean words"] == 9
    assert extractive.metrics["invented (extractive)"] == 0
    assert extractive.metrics["methods"] == "extractive×1"

    broken = await evaluate_summaries(runtime(Invents), "fakesum", [case])
    [report] = broken.reports
    assert report.metrics["invented (extractive)"] == 1
    assert report.metrics["retention"] == 0.25  # only "Harwick opened a library."


# --- translations --------------------------------------------------------------------


async def test_translation_chrf_and_glossary() -> None:
    cases = [
        TranslationCase("fr", "en", f"source {i}", reference, ("cat",) if i == 0 else ())
        for i, (_, reference, _) in enumerate(SACREBLEU)
    ]
    provider = FakeProvider("local").enqueue(*[hypothesis for hypothesis, _, _ in SACREBLEU])
    orch = runtime(TranslateRules, TranslateLLM, provider=provider)
    evaluation = await evaluate_translations(orch, "translate", cases, versions=["2.0.0"])
    [report] = evaluation.reports
    assert report.metrics["chrF"] == round(SACREBLEU_CORPUS, 2)
    assert report.metrics["mean sentence chrF"] == round(sum(e for _, _, e in SACREBLEU) / 5, 2)
    assert report.metrics["glossary kept"] == "1/1"  # "cat" is not in "source 0": nothing to lose
    # "Le chat est sur le tapis." is still French (the source language): not a translation.
    assert report.metrics["translated"] == "4/5"
    assert report.metrics["quality"] == "best_effort×4, none×1"
    # The model saw each source text, with its languages.
    assert [c.messages[-1].content for c in provider.calls] == [f"source {i}" for i in range(5)]  # type: ignore[union-attr]


async def test_untranslated_rules_score_low_but_not_zero() -> None:
    cases = [
        TranslationCase("en", "fr", "Open Brickwork now.", "Ouvrez Brickwork maintenant.", ("Brickwork",))
    ]
    evaluation = await evaluate_translations(runtime(TranslateRules), "translate", cases)
    [report] = evaluation.reports
    assert report.metrics["translated"] == "0/1"
    assert report.metrics["glossary kept"] == "1/1"
    assert report.metrics["chrF"] == round(chrf("Open Brickwork now.", "Ouvrez Brickwork maintenant."), 2)
    assert 0 < float(report.metrics["chrF"]) < 50


# --- loaders and the shipped datasets ------------------------------------------------


def test_loaders_parse_and_reject(tmp_path: Path) -> None:
    labelled = tmp_path / "l.tsv"
    labelled.write_text('label\ttext\npos\tit is "great"\n\nneg\tbad\n', encoding="utf-8")
    assert load_labelled(labelled) == [LabelledText("pos", 'it is "great"'), LabelledText("neg", "bad")]
    labelled.write_text("pos only\n", encoding="utf-8")
    with pytest.raises(InvalidRequestError, match=":1:"):
        load_labelled(labelled)
    with pytest.raises(InvalidRequestError, match="cannot read"):
        load_labelled(tmp_path / "missing.tsv")

    summaries = tmp_path / "s.jsonl"
    summaries.write_text(json.dumps({"text": "T.", "facts": ["a", ["b", "c"]]}) + "\n", encoding="utf-8")
    assert load_summaries(summaries) == [SummaryCase("1", "T.", (("a",), ("b", "c")))]
    summaries.write_text('{"facts": []}\n', encoding="utf-8")
    with pytest.raises(InvalidRequestError):
        load_summaries(summaries)

    translations = tmp_path / "t.tsv"
    translations.write_text(
        "source_language\ttarget_language\ttext\treference\tglossary\nen\tfr\tHi X\tSalut X\tX|Y\n",
        encoding="utf-8",
    )
    assert load_translations(translations) == [TranslationCase("en", "fr", "Hi X", "Salut X", ("X", "Y"))]
    translations.write_text("text\treference\n", encoding="utf-8")
    with pytest.raises(InvalidRequestError, match="header"):
        load_translations(translations)


def test_shipped_datasets_load() -> None:
    sentiment = load_labelled(DATASETS / "sentiment-dev.tsv")
    assert len(sentiment) == 100
    assert {e.label for e in sentiment} == {"pos", "neg"}
    summaries = load_summaries(DATASETS / "summarize-dev.jsonl")
    assert len(summaries) >= 5
    for case in summaries:
        for fact in case.facts:
            assert fact_retained(case.text, fact), (case.id, fact)  # every key term is in its text
    translations = load_translations(DATASETS / "translate-dev.tsv")
    assert len(translations) >= 10
    for row in translations:
        assert row.source_language != row.target_language
        for term in row.glossary:
            assert term in row.text
            assert term in row.reference


def test_resolve_versions() -> None:
    orch = runtime(SentimentRules, SentimentLLM)
    assert resolve_versions(orch, "sentiment") == ["sentiment@1.0.0", "sentiment@2.0.0"]
    assert resolve_versions(orch, "sentiment", ["2", "1.0.0"]) == ["sentiment@2.0.0", "sentiment@1.0.0"]
    with pytest.raises(PluginNotFoundError):
        resolve_versions(orch, "nosuch")
    with pytest.raises(PluginNotFoundError):
        resolve_versions(orch, "sentiment", ["9.9.9"])
