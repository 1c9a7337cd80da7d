from __future__ import annotations

import csv
from pathlib import Path

from brickwork import build
from brickwork.plugins.sentiment import SentimentRules
from brickwork.plugins.sentiment.rules import analyse
from brickwork.testing import PluginContractTests

DEV_SET = Path(__file__).resolve().parents[2] / "datasets" / "sentiment-dev.tsv"


class TestSentimentRulesContract(PluginContractTests):
    plugin = SentimentRules


def test_evidence_spans_point_into_the_text() -> None:
    text = "The staff were lovely, but the room was dirty and the food awful."
    out = analyse(text)
    assert out.label == "negative"
    assert out.score < 0
    found = {e.text: e.valence for e in out.evidence}
    assert found["lovely"] > 0
    assert found["dirty"] < 0
    assert found["awful"] < 0
    for span in out.evidence:
        assert text[span.start : span.end] == span.text


def test_negation_and_intensifiers_move_the_score() -> None:
    assert analyse("good").score > 0
    assert analyse("not good").score < 0
    assert analyse("very good").score > analyse("good").score


def test_neutral_text_has_no_evidence() -> None:
    out = analyse("The train leaves at 9:15 from platform 2.")
    assert out.label == "neutral"
    assert out.score == 0
    assert out.evidence == []


def test_accuracy_on_the_dev_set_stays_where_it_was_measured() -> None:
    with DEV_SET.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 100
    correct = 0
    for row in rows:
        label = analyse(row["text"]).label
        correct += (label == "positive") == (row["label"] == "pos")
    # VADER on these movie-review sentences (neutral counted as wrong): measured
    # 59/100 when this was written — rules are weak on this domain, which is why
    # an LLM version follows. An inverted label would score about 41; a lexicon
    # that failed to load, 20 (everything neutral).
    assert correct >= 55, correct


async def test_served_through_the_runtime_with_cache() -> None:
    runtime = build()
    first = await runtime.handle({"plugin": "sentiment@1", "input": "I love it", "tenant": "t1"})
    again = await runtime.handle({"plugin": "sentiment@1", "input": "I love it", "tenant": "t1"})
    other = await runtime.handle({"plugin": "sentiment@1", "input": "I love it", "tenant": "t2"})
    assert first.output["label"] == "positive"
    assert (first.cache_hit, again.cache_hit, other.cache_hit) == (False, True, False)
    assert again.output == first.output
