"""``classify@1``: zero-shot classification by word overlap, with no model at all.

The last rung of the ladder: it answers when the model is down or over budget, and
says so (``method: "rules"``, and the envelope's ``degraded`` flag when it stood in
for a higher version). Each label is described by the words of its name (weight 2)
and of its description (weight 1); a word shared by several labels counts less
(inverse label frequency). The text's words are matched by light stemming
(``elections`` = ``election``, ``political`` = ``politics``), or by a common prefix
of at least six letters (``technology`` ~ ``technologies``).

Scores: single-label, the evidence of each label smoothed and normalised (they sum
to 1; with no evidence at all, uniform, with a warning); multi-label,
``1 - exp(-evidence / 2)`` per label, so one matched label name passes 0.5.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import ClassVar

from brickwork.contracts.plugin import Context, Example, Plugin
from brickwork.contracts.policy import CachePolicy, Policy, TimeoutPolicy
from brickwork.plugins.classify.contract import ClassifyInput, ClassifyOutput, decide

__all__ = ["ClassifyRules", "label_evidence", "stem", "words"]

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_STOP_WORDS = (
    "a about above after again against all am an and any are as at be because been before being "
    "below between both but by can could did do does doing down during each few for from further had "
    "has have having he her here hers him his how i if in into is it its itself just me more most my "
    "no nor not now of off on once only or other our ours out over own same she should so some such "
    "than that the their them then there these they this those through to too under until up very "
    "was we were what when where which while who whom why will with would you your yours text texts "
    "about thing things something"
)
_STOP = frozenset(_STOP_WORDS.split())
#: Suffixes stripped, longest first; a stem keeps at least three letters.
_SUFFIXES = (
    "ational", "ization", "fulness", "ousness", "iveness", "ically", "ements", "ations",
    "ement", "ation", "ness", "ment", "ings", "ical", "ists", "isms", "ies", "ers", "ing",
    "ist", "ism", "ity", "ive", "ous", "ful", "ed", "er", "al", "ic", "ly", "s", "y",
)  # fmt: skip
_PREFIX = 6
NAME_WEIGHT = 2.0
DESCRIPTION_WEIGHT = 1.0
#: Added to every label's evidence before normalising (single-label).
SMOOTHING = 0.5


def stem(word: str) -> str:
    """A light, language-agnostic-enough suffix stripper (no data files, no download)."""
    word = word.lower()
    for minimum in (3, 4):  # two passes: "politics" → "politic" → "polit" = "political"
        if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
            word = word[:-2]  # "matches" → "match", but "games" → "game"
            continue
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= minimum:
                word = word[: -len(suffix)]
                break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # "runn" → "run"
    return word


def words(text: str) -> list[str]:
    """Stems of the content words of ``text``."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1]


def _matches(term: str, token: str) -> bool:
    if term == token:
        return True
    return len(term) >= _PREFIX and len(token) >= _PREFIX and term[:_PREFIX] == token[:_PREFIX]


def label_evidence(
    text: str, labels: Iterable[str], descriptions: Mapping[str, str] | None = None
) -> dict[str, float]:
    """Evidence (≥ 0) that each label applies: weighted, rarity-scaled matched terms."""
    descriptions = descriptions or {}
    labels = list(labels)
    terms: dict[str, dict[str, float]] = {}
    for label in labels:
        weights: dict[str, float] = {}
        for term in words(descriptions.get(label, "")):
            weights[term] = max(weights.get(term, 0.0), DESCRIPTION_WEIGHT)
        for term in words(label.replace("_", " ").replace("-", " ")):
            weights[term] = NAME_WEIGHT
        terms[label] = weights
    frequency = Counter(term for weights in terms.values() for term in weights)
    counts = Counter(words(text))
    evidence: dict[str, float] = {}
    for label in labels:
        total = 0.0
        for term, weight in terms[label].items():
            hits = sum(n for token, n in counts.items() if _matches(term, token))
            if hits:
                rarity = math.log(1 + len(labels) / frequency[term])
                total += weight * rarity * (1 + math.log(hits))
        evidence[label] = total
    return evidence


_DESCRIPTIONS = {
    "sports": "games, teams, players, matches, goals and tournaments",
    "politics": "government, elections, parliament, parties, laws and ministers",
    "cooking": "recipes, food, kitchens, ingredients and baking",
}


class ClassifyRules(Plugin[ClassifyInput, ClassifyOutput]):
    name = "classify"
    version = "1.0.0"
    text_field = "label"
    description = (
        "Zero-shot classification of a text into labels given with the request (single or "
        "multi-label, a score for every label). Rules: word overlap with the label names and "
        "descriptions; needs no model, so it keeps answering when models are down."
    )
    #: Labels come with the request: text alone never makes a request for classify
    #: (intent routing offers it only dict inputs that carry labels).
    routable: ClassVar[bool] = False
    policy = Policy(timeout=TimeoutPolicy(total=10.0), retry=None, breaker=None, cache=CachePolicy(ttl=3600))
    examples = (
        Example(
            {
                "text": "The striker scored twice and the team won the match.",
                "labels": ["sports", "politics", "cooking"],
                "descriptions": _DESCRIPTIONS,
            },
            {"label": "sports", "labels": ["sports"], "method": "rules"},
        ),
        Example(
            {
                "text": "Parliament passed the new election law after a long debate.",
                "labels": ["sports", "politics", "cooking"],
                "descriptions": _DESCRIPTIONS,
            },
            {"label": "politics", "method": "rules"},
        ),
        Example(
            {"text": "Which team will win the match?", "labels": ["sports", "politics"]},
            check=lambda out: (
                abs(sum(out.scores.values()) - 1) < 1e-4
                and set(out.scores)
                == {
                    "sports",
                    "politics",
                }
            ),
            description="single-label scores cover every label and sum to 1",
        ),
        Example(
            {
                "text": "The minister's team cooked up a recipe for winning the election.",
                "labels": ["sports", "politics", "cooking"],
                "descriptions": _DESCRIPTIONS,
                "multi_label": True,
            },
            check=lambda out: {"politics", "cooking"} <= set(out.labels),
            description="multi-label chooses every label with evidence",
        ),
    )

    async def run(self, input: ClassifyInput, ctx: Context) -> ClassifyOutput:
        evidence = label_evidence(input.text, input.labels, input.descriptions)
        if input.multi_label:
            scores = {label: 1.0 - math.exp(-e / 2.0) for label, e in evidence.items()}
        else:
            if not any(evidence.values()):
                ctx.warn("classify rules: no label word found in the text; scores are uniform")
            total = sum(evidence.values()) + SMOOTHING * len(evidence)
            scores = {label: (e + SMOOTHING) / total for label, e in evidence.items()}
        return decide(input, scores, "rules")
