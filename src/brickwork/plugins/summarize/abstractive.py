"""``summarize@2``: abstractive summary with the LLM, map-reduced over long texts.

A text that fits the model's context window (less the prompt and the room for
the answer) is summarized in one call. A longer one is cut into chunks of whole
sentences that fit (sized with ``ctx.model.count_tokens``), each chunk is
summarized (map), and the partial summaries are combined (reduce) — in several
rounds when even they do not fit together.

Falls back to ``summarize@1`` (extractive, no model) when the model fails, is
too slow, or the budget is spent; the envelope then says ``degraded``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

from brickwork.contracts.errors import ConfigurationError, ProviderResponseError
from brickwork.contracts.plugin import Context, Example, Plugin, Prompt
from brickwork.contracts.policy import CachePolicy, FallbackPolicy, Policy, TimeoutPolicy
from brickwork.plugin_api import pack, sentence_spans, words
from brickwork.plugins.summarize.answer import (
    Shaped,
    StreamedAnswer,
    clean,
    drop_unfinished,
    parse_bullets,
    shape,
)
from brickwork.plugins.summarize.contract import (
    STYLES,
    SummarizeInput,
    SummarizeOutput,
    word_limit,
)

__all__ = ["SummarizeLLM", "parse_bullets"]

_FORM = (
    "Write at most {{ words }} words, "
    '{% if bullets %}as short bullet points, one per line, each starting with "- "'
    "{% else %}as one paragraph of plain prose{% endif %}. Tone: {{ style }}.\n"
    "Keep names, numbers and dates exactly as written. "
)
_SUMMARIZE = (
    "Summarize the text below"
    "{% if parts > 1 %} (part {{ part }} of {{ parts }} of a longer document){% endif %}.\n"
    + _FORM
    + "Add nothing that the text does not say.\n"
    "Reply with the summary only.\n\n"
    'Text:\n"""\n{{ text }}\n"""\n'
)
_COMBINE = (
    "Below are summaries of consecutive parts of one document, in order. "
    "Combine them into one summary of the whole document.\n"
    + _FORM
    + "Add nothing that the summaries do not say.\n"
    "Reply with the summary only.\n\n"
    'Summaries:\n"""\n{{ text }}\n"""\n'
)


class SummarizeLLM(Plugin[SummarizeInput, SummarizeOutput]):
    name = "summarize"
    version = "2.0.0"
    text_field = "summary"
    description = (
        "Summary of a text in its own words, by an LLM: short, medium, long or a word limit; "
        "prose or bullet points; neutral, formal, casual or technical. Long texts are "
        "summarized in parts, then combined. Falls back to extractive summarize@1."
    )
    model = "local:qwen2.5-0.5b"
    permissions = frozenset({"model"})
    prompts: ClassVar[Mapping[str, Prompt]] = {
        "summarize": Prompt(version="1", template=_SUMMARIZE),
        "combine": Prompt(version="1", template=_COMBINE),
    }
    # A long text is many model calls: each may take a while on a CPU model.
    policy = Policy(
        timeout=TimeoutPolicy(attempt=120, total=300),
        cache=CachePolicy(ttl=3600),
        fallback=FallbackPolicy(plugins=("summarize@1.0.0",)),
    )
    examples = (
        Example(
            {
                "text": (
                    "The city council approved the new budget on Tuesday. The plan gives four "
                    "million dollars to road repairs, which start in May. Property taxes will "
                    "not rise this year."
                ),
                "length": "short",
            },
            {"method": "abstractive", "chunks": 1},
            check=lambda out: "budget" in out.summary.lower() and len(out.summary.split()) <= 40,
            description="a short abstractive summary that keeps the topic",
            needs_model=True,
        ),
        Example(
            {
                "text": "Ada Lovelace wrote the first published program. She worked with Babbage.",
                "bullets": True,
            },
            {"method": "abstractive", "chunks": 1},
            check=lambda out: len(out.bullets) >= 1 and out.summary.startswith("- "),
            description="bullets come back as a list and as '- ' lines",
        ),
    )

    #: Tokens kept free of the budget: chat template, counting differences.
    margin_tokens: ClassVar[int] = 64
    #: Longest partial summary of one chunk, in words.
    partial_words: ClassVar[int] = 120

    async def run(self, input: SummarizeInput, ctx: Context) -> SummarizeOutput:
        limit = word_limit(input.length)
        style = STYLES[input.style]
        options: dict[str, object] = {"bullets": input.bullets, "style": style}
        final_tokens = _tokens_for(limit, input.bullets)
        budget = self._budget(ctx, "summarize", final_tokens, words=limit, parts=1, part=1, **options)
        text = input.text.strip()
        notes: list[str] = []
        if ctx.model.count_tokens(text) <= budget:
            answer = await self._final(
                ctx, "summarize", final_tokens, limit, input.bullets, text=text, parts=1, part=1, style=style
            )
            chunks = 1
        else:
            # Map: each chunk to a partial summary, in order (prose: the reducer joins them).
            partial = min(self.partial_words, limit * 2)
            partial_tokens = _tokens_for(partial, False)
            map_budget = self._budget(
                ctx,
                "summarize",
                partial_tokens,
                words=partial,
                parts=99,
                part=99,
                bullets=False,
                style=style,
            )
            parts = pack(text, sentence_spans(text), map_budget, ctx.model.count_tokens)
            chunks = len(parts)
            summaries = [
                await self._ask(
                    ctx,
                    "summarize",
                    partial_tokens,
                    text=part.text,
                    words=partial,
                    parts=chunks,
                    part=i,
                    bullets=False,
                    style=style,
                )
                for i, part in enumerate(parts, 1)
            ]
            answer, rounds = await self._reduce(ctx, summaries, limit, input.bullets, style)
            notes.append(f"summarized in {chunks} parts, combined in {rounds} round(s)")
        return SummarizeOutput(
            summary=answer.summary,
            bullets=answer.bullets,
            method="abstractive",
            chunks=chunks,
            note="; ".join(notes + answer.notes) or None,
        )

    async def _reduce(
        self, ctx: Context, summaries: list[str], limit: int, bullets: bool, style: str
    ) -> tuple[Shaped, int]:
        """Combine partial summaries into one, in as many rounds as the window needs."""
        final_tokens = _tokens_for(limit, bullets)
        partial = min(self.partial_words, limit * 2)
        partial_tokens = _tokens_for(partial, False)
        rounds = 0
        while True:
            rounds += 1
            budget = self._budget(ctx, "combine", final_tokens, words=limit, bullets=bullets, style=style)
            joined = "\n\n".join(summaries)
            if len(summaries) <= 2 or ctx.model.count_tokens(joined) <= budget:
                answer = await self._final(
                    ctx, "combine", final_tokens, limit, bullets, text=joined, style=style
                )
                return answer, rounds
            # Too long together: combine neighbours in groups that fit, then again.
            group_budget = self._budget(
                ctx, "combine", partial_tokens, words=partial, bullets=False, style=style
            )
            groups = _groups(summaries, group_budget, ctx.model.count_tokens)
            summaries = [
                await self._ask(
                    ctx,
                    "combine",
                    partial_tokens,
                    text="\n\n".join(g),
                    words=partial,
                    bullets=False,
                    style=style,
                )
                for g in groups
            ]

    def _budget(self, ctx: Context, prompt: str, answer_tokens: int, **variables: object) -> int:
        """Tokens of text that fit one call beside the prompt and the answer."""
        overhead = ctx.model.count_tokens(ctx.prompt(prompt, text="", **variables))
        window = ctx.model.context_window()
        budget = window - overhead - answer_tokens - self.margin_tokens
        if budget < 16:
            raise ConfigurationError(
                f"{self.ref()}: the bound model's context of {window} tokens leaves no room for text "
                f"(prompt {overhead}, answer {answer_tokens}); bind a model with a larger window",
                plugin=self.ref(),
            )
        return budget

    async def _ask(self, ctx: Context, prompt: str, max_tokens: int, **variables: object) -> str:
        """A partial summary (of a chunk, or of a group of partial summaries)."""
        completion = await ctx.model.complete(ctx.prompt(prompt, **variables), max_tokens=max_tokens)
        answer = clean(completion.text)
        if completion.finish_reason == "length":
            answer = drop_unfinished(answer)
        return self._nonempty(answer)

    async def _final(
        self, ctx: Context, prompt: str, max_tokens: int, limit: int, bullets: bool, **variables: object
    ) -> Shaped:
        """The summary itself: streamed to a caller that streams, word by word (see
        :class:`~brickwork.plugins.summarize.answer.StreamedAnswer`)."""
        text = ctx.prompt(prompt, words=limit, bullets=bullets, **variables)
        if not ctx.streaming:
            completion = await ctx.model.complete(text, max_tokens=max_tokens)
            answer = shape(
                completion.text, finish_reason=completion.finish_reason, limit=limit, bullets=bullets
            )
            self._nonempty(answer.summary)
            return answer
        streamed = StreamedAnswer(limit=limit, bullets=bullets)
        finish = "stop"
        async for chunk in ctx.model.stream(text, max_tokens=max_tokens):
            ctx.emit(streamed.feed(chunk.delta))
            finish = chunk.finish_reason or finish
            if streamed.full:
                break  # past the word limit: the rest would be cut anyway
        ctx.emit(streamed.finish(finish))
        self._nonempty(streamed.summary)
        return Shaped(streamed.summary, streamed.points, streamed.notes)

    def _nonempty(self, answer: str) -> str:
        if not words(answer):
            raise ProviderResponseError(
                f"{self.ref()}: the model returned an empty summary", plugin=self.ref()
            )
        return answer


def _tokens_for(words: int, bullets: bool) -> int:
    """Room for an answer of ``words`` words (≈1.4 tokens a word, bullets need more)."""
    return int(words * 1.4) + (48 if bullets else 24)


def _groups(pieces: list[str], budget: int, count: Callable[[str], int]) -> list[list[str]]:
    """Neighbouring pieces grouped under ``budget`` tokens, at least two a group (so
    each round shrinks the list)."""
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for piece in pieces:
        cost = count(piece) + 2
        if len(current) >= 2 and used + cost > budget:
            groups.append(current)
            current, used = [], 0
        current.append(piece)
        used += cost
    if len(current) == 1 and groups:
        groups[-1].append(current[0])
    elif current:
        groups.append(current)
    return groups
