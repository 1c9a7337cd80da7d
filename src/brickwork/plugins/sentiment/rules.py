"""``sentiment@1``: sentiment with VADER rules, offline, no model.

Label, a score in [-1, 1] (VADER's compound) and the spans of text that carried
the sentiment, so a reader can see why.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field

from brickwork.contracts.plugin import Context, Example, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import CachePolicy, Policy

__all__ = ["Evidence", "SentimentInput", "SentimentOutput", "SentimentRules"]

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*|[:;=][-~^]?[()DPp\[\]]")
#: VADER's own thresholds on the compound score.
THRESHOLD = 0.05


class SentimentInput(PluginInput):
    text: str = Field(min_length=1, max_length=100_000, description="the text to judge")


class Evidence(PluginOutput):
    start: int = Field(description="character offset where the span starts")
    end: int = Field(description="character offset just past the span")
    text: str
    valence: float = Field(description="lexicon valence: > 0 positive, < 0 negative")


class SentimentOutput(PluginOutput):
    label: Literal["positive", "negative", "neutral"]
    score: float = Field(ge=-1, le=1, description="-1 most negative … +1 most positive")
    evidence: list[Evidence] = Field(default_factory=list)


@lru_cache(maxsize=1)
def _analyzer() -> object:
    # Loaded on first use (it reads its lexicon file), never at import.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def analyse(text: str) -> SentimentOutput:
    analyzer = _analyzer()
    compound = float(analyzer.polarity_scores(text)["compound"])  # type: ignore[attr-defined]
    lexicon: dict[str, float] = analyzer.lexicon  # type: ignore[attr-defined]
    evidence = [
        Evidence(start=m.start(), end=m.end(), text=m.group(), valence=lexicon[key])
        for m in _WORD.finditer(text)
        if (key := m.group().lower().replace("’", "'")) in lexicon
    ]
    if compound >= THRESHOLD:
        label: Literal["positive", "negative", "neutral"] = "positive"
    elif compound <= -THRESHOLD:
        label = "negative"
    else:
        label = "neutral"
    return SentimentOutput(label=label, score=compound, evidence=evidence)


class SentimentRules(Plugin[SentimentInput, SentimentOutput]):
    name = "sentiment"
    version = "1.0.0"
    text_field = "label"
    description = (
        "Sentiment of a text: positive, negative or neutral, with a score and the words "
        "that carried it. Rules (VADER lexicon); needs no model."
    )
    policy = Policy(cache=CachePolicy(ttl=3600))
    examples = (
        Example("I love this phone, the battery is great.", {"label": "positive"}),
        Example("This was a terrible, boring waste of time.", {"label": "negative"}),
        Example("The meeting is at 3 pm in room 4.", {"label": "neutral"}),
        Example(
            "Not bad at all!",
            check=lambda out: out.score > 0,
            description="negation flips valence",
        ),
        Example(
            "The food was awful.",
            check=lambda out: any(e.text == "awful" and e.valence < 0 for e in out.evidence),
            description="evidence points at the negative word",
        ),
    )

    async def run(self, input: SentimentInput, ctx: Context) -> SentimentOutput:
        return analyse(input.text)
