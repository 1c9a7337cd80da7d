"""``classify@3``: zero-shot classification by LLM label scoring.

Small models classify far better when each label's log-probability as the reply
is compared than when their free text is parsed, so this version
never generates: it asks ``ctx.model.score``.

- single-label: one call scores every label as the answer to the ``choose`` prompt;
  the scores are the softmax of those log-probabilities (they sum to 1);
- multi-label: one ``judge`` call per label scores ``Yes`` and ``No``; the label's
  score is P(Yes) / (P(Yes) + P(No)), independent of the other labels.

Measured with ``local:qwen2.5-0.5b`` on ``datasets/topic-dev.tsv`` (five topics,
label names only): 47/65 single-label, where ``classify@2`` gets 62/65; its
multi-label P(Yes) averaged 0.49 for true labels and 0.38 for false ones (AUC 0.87),
so pass a ``threshold`` near 0.4 with it. With that small model, ``classify@2`` is
the better default (label ``prod`` → 2.0.0); bind a stronger model
(``plugins.classify.model``) to make this version the best rung.

The ladder: ``classify@2`` (embeddings), then ``classify@1`` (rules, no model) take
over when the model fails, times out, is over budget or its breaker is open; the
envelope then says ``degraded`` and the output's ``method`` says which answered.
"""

from __future__ import annotations

from typing import ClassVar

from brickwork.contracts.plugin import Context, Example, Plugin, Prompt
from brickwork.contracts.policy import (
    CachePolicy,
    FallbackPolicy,
    Policy,
    RetryPolicy,
    TimeoutPolicy,
)
from brickwork.contracts.provider import Message
from brickwork.plugins.classify.contract import ClassifyInput, ClassifyOutput, decide, softmax

__all__ = ["ClassifyLLM"]

#: Characters of the text put in a prompt (a small model's context is short).
MAX_TEXT_CHARS = 6_000
YES, NO = "Yes", "No"

# Single-label: the instructions and the label list in the system message, the text
# in the user message. Multi-label: one user message, the text first (a local model
# reuses the evaluated prefix from one label to the next) and the question after it;
# with the label in a system message instead, qwen2.5-0.5b's yes/no told true labels
# from false ones barely better than chance (AUC 0.55 against 0.87 on topic-dev).
CHOOSE_SYSTEM = Prompt(
    version="1",
    template=(
        "You are a text classifier. Read the text and reply with exactly one of these labels, "
        "and nothing else:\n"
        "{% for label in labels %}- {{ label }}"
        "{% if label in descriptions %}: {{ descriptions[label] }}{% endif %}\n{% endfor %}"
    ),
)
JUDGE = Prompt(
    version="1",
    template=(
        "Text:\n{{ text }}\n\n"
        "Is this text about {{ label }}{% if description %} ({{ description }}){% endif %}? "
        "Answer Yes or No."
    ),
)
TEXT = Prompt(version="1", template="Text:\n{{ text }}")


def _well_formed(out: ClassifyOutput) -> bool:
    return out.method == "llm" and abs(sum(out.scores.values()) - 1) < 1e-4 and len(out.scores) == 3


class ClassifyLLM(Plugin[ClassifyInput, ClassifyOutput]):
    name = "classify"
    version = "3.0.0"
    text_field = "label"
    description = (
        "Zero-shot classification of a text into labels given with the request: topic, intent, "
        "category or tag, single or multi-label, with a score for every label. An LLM scores "
        "each label; falls back to embeddings, then to rules that need no model."
    )
    #: Labels come with the request: text alone never makes a request for classify
    #: (intent routing offers it only dict inputs that carry labels).
    routable: ClassVar[bool] = False
    model = "local:qwen2.5-0.5b"
    permissions = frozenset({"model"})
    prompts: ClassVar = {"choose": CHOOSE_SYSTEM, "judge": JUDGE, "text": TEXT}
    policy = Policy(
        timeout=TimeoutPolicy(attempt=20.0, total=60.0),
        retry=RetryPolicy(max_attempts=2),
        fallback=FallbackPolicy(plugins=("classify@2", "classify@1")),
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
            {"label": "politics", "method": "llm"},
            needs_model=True,
        ),
        Example(
            {
                "text": "My order arrived broken and nobody answers my emails.",
                "labels": ["complaint", "question", "praise"],
                "descriptions": {"complaint": "the customer is unhappy about something"},
            },
            {"label": "complaint"},
            needs_model=True,
        ),
        Example(
            {
                "text": "The football club's shares fell on the stock market after it reported a loss.",
                "labels": ["sports", "business", "health"],
                "multi_label": True,
                "threshold": 0.4,
            },
            check=lambda out: set(out.labels) == {"sports", "business"},
            description="multi-label: one yes/no judgement per label (a small model's yes runs low)",
            needs_model=True,
        ),
    )

    async def run(self, input: ClassifyInput, ctx: Context) -> ClassifyOutput:
        text = input.text
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS]
            ctx.warn(f"classify: only the first {MAX_TEXT_CHARS} characters were read")
        if not input.multi_label:
            user = Message(role="user", content=ctx.prompt("text", text=text))
            system = ctx.prompt("choose", labels=input.labels, descriptions=input.descriptions)
            result = await ctx.model.score([Message(role="system", content=system), user], input.labels)
            probabilities = softmax([result.logprobs[label] for label in input.labels])
            return decide(input, dict(zip(input.labels, probabilities, strict=True)), "llm")
        scores: dict[str, float] = {}
        # One label at a time: a local model serves one request at a time anyway, and
        # a failure stops the run early (the fallback then answers the whole request).
        for label in input.labels:
            question = ctx.prompt(
                "judge", text=text, label=label, description=input.descriptions.get(label, "")
            )
            result = await ctx.model.score([Message(role="user", content=question)], [YES, NO])
            scores[label] = softmax([result.logprobs[YES], result.logprobs[NO]])[0]
        return decide(input, scores, "llm")
