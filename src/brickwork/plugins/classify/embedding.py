"""``classify@2``: zero-shot classification by embedding similarity (multilingual-e5-small).

The text and one sentence per label (``This text is about {label}: {description}.``,
a versioned prompt) are embedded together, symmetric (``query`` for both, as e5
recommends for classification), and compared by cosine similarity.

Scores, calibrated for e5-small (cosines sit in a narrow band, about 0.70–0.90):

- single-label: a softmax of the cosines at temperature :attr:`temperature` (0.01);
- multi-label: each label on its own, ``sigmoid((cos - center) / scale)`` with
  :attr:`center` 0.795 and :attr:`scale` 0.008 — a logistic fit of "the label applies"
  on the (text, label) pairs of ``datasets/topic-dev.tsv``.

Another embedding model needs its own constants (override them in a subclass).
Falls back to ``classify@1`` (rules) when the embedding model fails.
"""

from __future__ import annotations

import math
from typing import ClassVar

from brickwork.contracts.plugin import Context, Example, Plugin, Prompt
from brickwork.contracts.policy import (
    CachePolicy,
    FallbackPolicy,
    Policy,
    RetryPolicy,
    TimeoutPolicy,
)
from brickwork.plugins.classify.contract import (
    ClassifyInput,
    ClassifyOutput,
    decide,
    sigmoid,
    softmax,
)

__all__ = ["ClassifyEmbedding"]

#: Characters of the text embedded: e5 was trained on 512 tokens, and its cost
#: grows with length (a 3,000-token text takes seconds on one core).
MAX_TEXT_CHARS = 2_000

LABEL_PROMPT = Prompt(
    version="1",
    template="This text is about {{ label }}{% if description %}: {{ description }}{% endif %}.",
)


def _cosine(a: list[float], b: list[float]) -> float:
    # Providers are not all bound to normalise (e5 does): divide by the norms.
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return dot / norms if norms else 0.0


def _well_formed(out: ClassifyOutput) -> bool:
    return (
        out.method == "embedding"
        and abs(sum(out.scores.values()) - 1) < 1e-4
        and out.labels == [out.label]
        and len(out.scores) == 3
    )


class ClassifyEmbedding(Plugin[ClassifyInput, ClassifyOutput]):
    name = "classify"
    version = "2.0.0"
    text_field = "label"
    description = (
        "Zero-shot classification of a text into labels given with the request (single or "
        "multi-label, a score for every label). Embeddings: similarity between the text and "
        "each label (and its description)."
    )
    #: Labels come with the request: text alone never makes a request for classify
    #: (intent routing offers it only dict inputs that carry labels).
    routable: ClassVar[bool] = False
    embedding_model = "local:e5-small"
    permissions = frozenset({"embed"})
    prompts: ClassVar = {"label": LABEL_PROMPT}
    policy = Policy(
        timeout=TimeoutPolicy(attempt=10.0, total=30.0),
        retry=RetryPolicy(max_attempts=2),
        fallback=FallbackPolicy(plugins=("classify@1",)),
        cache=CachePolicy(ttl=3600),
    )
    examples = (
        Example(
            {
                "text": "The striker scored twice in the second half.",
                "labels": ["sports", "politics", "technology"],
            },
            check=_well_formed,
            description="single-label: every label scored, scores sum to 1",
        ),
        Example(
            {
                "text": "Parliament voted late last night to approve the new immigration bill.",
                "labels": ["sports", "politics", "technology"],
            },
            {"label": "politics", "method": "embedding"},
            needs_model=True,
        ),
        Example(
            {
                "text": "The new phone ships with a faster chip and a brighter display.",
                "labels": ["sports", "politics", "technology"],
                "descriptions": {"technology": "computers, software, gadgets and the internet"},
            },
            {"label": "technology"},
            needs_model=True,
        ),
        Example(
            {
                "text": "The football club's shares fell on the stock market after it reported a loss.",
                "labels": ["sports", "business", "health"],
                "multi_label": True,
            },
            check=lambda out: set(out.labels) == {"sports", "business"},
            description="multi-label: independent scores, two labels apply",
            needs_model=True,
        ),
    )

    #: Softmax temperature over cosines (single-label).
    temperature: ClassVar[float] = 0.01
    #: Cosine at which a label is as likely to apply as not (multi-label).
    center: ClassVar[float] = 0.795
    #: Cosine distance over which the odds grow e-fold (multi-label).
    scale: ClassVar[float] = 0.008

    async def run(self, input: ClassifyInput, ctx: Context) -> ClassifyOutput:
        text = input.text
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS]
            ctx.warn(f"classify: only the first {MAX_TEXT_CHARS} characters were embedded")
        passages = [
            ctx.prompt("label", label=label, description=input.descriptions.get(label, ""))
            for label in input.labels
        ]
        vectors = (await ctx.model.embed([text, *passages], purpose="query")).vectors
        query, label_vectors = vectors[0], vectors[1:]
        cosines = [_cosine(query, v) for v in label_vectors]
        if input.multi_label:
            scores = [sigmoid((c - self.center) / self.scale) for c in cosines]
        else:
            scores = softmax(cosines, self.temperature)
        return decide(input, dict(zip(input.labels, scores, strict=True)), "embedding")
