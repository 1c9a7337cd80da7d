"""The one contract every ``classify`` version shares, and how scores become a verdict.

Every version takes the same :class:`ClassifyInput` and returns the same
:class:`ClassifyOutput` (fallbacks require identical contracts), so a request
can move down the ladder ``classify@3`` (LLM) → ``@2`` (embeddings) → ``@1``
(rules) without the caller noticing anything but ``method`` and the envelope's
``degraded`` flag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from brickwork.contracts.plugin import PluginInput, PluginOutput

__all__ = [
    "DEFAULT_THRESHOLD",
    "MAX_LABELS",
    "ClassifyInput",
    "ClassifyOutput",
    "Method",
    "decide",
    "sigmoid",
    "softmax",
]

#: Labels one request may name.
MAX_LABELS = 50
#: A multi-label request chooses every label whose score reaches this, unless it sets its own.
DEFAULT_THRESHOLD = 0.5

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Method = Literal["llm", "embedding", "rules"]


class ClassifyInput(PluginInput):
    """Text to classify and the labels to choose from, given with the request (zero-shot)."""

    text: str = Field(min_length=1, max_length=20_000, description="the text to classify")
    labels: list[Label] = Field(
        min_length=2, max_length=MAX_LABELS, description="the candidate labels, unique"
    )
    descriptions: dict[str, Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=dict, description="label → what it means (optional, any subset of labels)"
    )
    multi_label: bool = Field(
        default=False, description="score each label on its own and choose all that apply"
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            f"multi-label: choose labels scoring at least this (default {DEFAULT_THRESHOLD}); "
            "single-label: choose the best label only if it scores at least this"
        ),
    )

    @field_validator("labels")
    @classmethod
    def _unique(cls, labels: list[str]) -> list[str]:
        seen: set[str] = set()
        for label in labels:
            key = label.casefold()
            if key in seen:
                raise ValueError(f"label {label!r} is given twice (labels are compared ignoring case)")
            seen.add(key)
        return labels

    @model_validator(mode="after")
    def _described_labels_exist(self) -> ClassifyInput:
        unknown = sorted(set(self.descriptions) - set(self.labels))
        if unknown:
            raise ValueError(f"descriptions name labels that are not in `labels`: {unknown}")
        return self


class ClassifyOutput(PluginOutput):
    label: str = Field(description="the best-scoring label")
    labels: list[str] = Field(
        description="the chosen labels, best first: every label at or above the threshold "
        "(multi-label), else the best label (empty if it is below a given threshold)"
    )
    scores: dict[str, float] = Field(
        description="every label → a score in [0, 1]; they sum to 1 for single-label requests, "
        "and are independent probabilities for multi-label ones"
    )
    method: Method = Field(description="what produced the scores: llm, embedding or rules")


def softmax(values: Sequence[float], temperature: float = 1.0) -> list[float]:
    """Probabilities from scores (log-probabilities at ``temperature`` 1)."""
    top = max(values)
    exps = [math.exp((v - top) / temperature) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def decide(input: ClassifyInput, scores: Mapping[str, float], method: Method) -> ClassifyOutput:
    """The verdict from one score per label (scores clipped to [0, 1], request order kept)."""
    # Six decimals: plenty for a probability, and readable in an envelope.
    clean = {label: round(min(1.0, max(0.0, float(scores[label]))), 6) for label in input.labels}
    ranked = sorted(input.labels, key=lambda label: -clean[label])  # stable: ties keep request order
    best = ranked[0]
    if input.multi_label:
        cut = DEFAULT_THRESHOLD if input.threshold is None else input.threshold
        chosen = [label for label in ranked if clean[label] >= cut]
    else:
        chosen = [best] if input.threshold is None or clean[best] >= input.threshold else []
    return ClassifyOutput(label=best, labels=chosen, scores=clean, method=method)
