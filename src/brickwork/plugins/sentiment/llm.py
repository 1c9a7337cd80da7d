"""``sentiment@2``: sentiment by LLM label scoring, with ``sentiment@1``'s contract.

The model is not asked to write an answer: ``ctx.model.score`` gives the
log-probability of each label as the reply to a versioned prompt, and the
softmax of those is the model's belief. On small models this is far more
reliable than parsing free text.

- ``label``: the most probable of positive / negative / neutral;
- ``score``: p(positive) − p(negative), in [-1, 1];
- ``evidence``: the VADER lexicon words in the text (the same spans as
  ``sentiment@1``), so a reader still sees which words carry sentiment.

Falls back to ``sentiment@1`` (rules, no model) when the model fails or the
budget is spent; the envelope then says ``degraded``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar, Literal

from brickwork.contracts.plugin import Context, Example, Plugin, Prompt
from brickwork.contracts.policy import CachePolicy, FallbackPolicy, Policy
from brickwork.plugins.sentiment.rules import SentimentInput, SentimentOutput, analyse

__all__ = ["LABELS", "SentimentLLM", "softmax"]

Label = Literal["positive", "negative", "neutral"]
LABELS: tuple[Label, ...] = ("positive", "negative", "neutral")

_CLASSIFY = (
    "What is the sentiment of the text below? Answer with one word: "
    "positive, negative or neutral.\n\n"
    'Text: """{{ text }}"""'
)


def softmax(logprobs: Mapping[str, float]) -> dict[str, float]:
    """Probabilities from log-probabilities, normalised over the candidates."""
    top = max(logprobs.values())
    weights = {k: math.exp(v - top) for k, v in logprobs.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


class SentimentLLM(Plugin[SentimentInput, SentimentOutput]):
    name = "sentiment"
    version = "2.0.0"
    text_field = "label"
    description = (
        "Sentiment of a text: positive, negative or neutral, with a score and the words "
        "that carried it. An LLM scores each label; falls back to the rules of sentiment@1."
    )
    model = "local:qwen2.5-0.5b"
    permissions = frozenset({"model"})
    prompts: ClassVar[Mapping[str, Prompt]] = {"classify": Prompt(version="1", template=_CLASSIFY)}
    policy = Policy(cache=CachePolicy(ttl=3600), fallback=FallbackPolicy(plugins=("sentiment@1.0.0",)))
    examples = (
        Example("I love this phone, the battery is great.", {"label": "positive"}, needs_model=True),
        Example("This was a terrible, boring waste of time.", {"label": "negative"}, needs_model=True),
        Example("The meeting is at 3 pm in room 4.", {"label": "neutral"}, needs_model=True),
        Example(
            "The food was awful.",
            check=lambda out: (
                -1 <= out.score <= 1 and any(e.text == "awful" and e.valence < 0 for e in out.evidence)
            ),
            description="score in range; evidence points at the lexicon word",
        ),
    )

    #: Characters of the text shown to the model; the rest is cut (and said so).
    max_chars: ClassVar[int] = 6000

    async def run(self, input: SentimentInput, ctx: Context) -> SentimentOutput:
        text = input.text
        if len(text) > self.max_chars:
            ctx.warn(f"sentiment@2 judged the first {self.max_chars} of {len(text)} characters")
            text = text[: self.max_chars]
        scores = await ctx.model.score(ctx.prompt("classify", text=text), LABELS)
        probs = softmax({label: scores.logprobs[label] for label in LABELS})
        label = max(LABELS, key=lambda k: probs[k])
        score = max(-1.0, min(1.0, probs["positive"] - probs["negative"]))
        return SentimentOutput(label=label, score=score, evidence=analyse(input.text).evidence)
