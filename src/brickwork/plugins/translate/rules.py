"""``translate@1``: no model, honest degradation.

There is no good offline translator, so the rules version does not pretend: it
detects the text's language and, when that already is the target language,
returns the text unchanged; otherwise it returns the text *untranslated*, with
``translated: false``, a note saying so and a warning in the envelope. It is
the last rung of the translate ladder.
"""

from __future__ import annotations

from dataclasses import dataclass

from brickwork.contracts.plugin import Context, Example, Plugin
from brickwork.contracts.policy import CachePolicy, Policy
from brickwork.plugins.translate.contract import TranslateInput, TranslateOutput
from brickwork.plugins.translate.glossary import missing_terms, normalize, protect
from brickwork.plugins.translate.language import detect_language, language_name

__all__ = ["Source", "TranslateRules", "already_in_target", "source_of", "untranslated"]

#: Below this, a detected language is reported as a guess.
CONFIDENT = 0.5


@dataclass(frozen=True)
class Source:
    """The text's language, given or detected, and what to say about it."""

    language: str
    note: str | None = None


def source_of(input: TranslateInput) -> Source:
    if input.source_language is not None:
        return Source(input.source_language, None)
    detection = detect_language(input.text)
    note = None
    if detection.confidence < CONFIDENT:
        note = (
            f"source language detected as {detection.language} "
            f"with low confidence ({detection.confidence:.2f})"
        )
    return Source(detection.language, note)


def _terms(input: TranslateInput) -> dict[str, str]:
    return protect(input.text, normalize(input.glossary)).terms


def already_in_target(input: TranslateInput, source: Source) -> TranslateOutput:
    """Nothing to translate: the text, unchanged."""
    notes = [f"already in {language_name(input.target_language)}; returned unchanged"]
    if source.note:
        notes.append(source.note)
    return TranslateOutput(
        translation=input.text,
        source_language=source.language,
        target_language=input.target_language,
        translated=True,
        glossary_kept=not missing_terms(input.text, _terms(input)),
        quality="exact",
        note="; ".join(notes),
    )


def untranslated(input: TranslateInput, source: Source, reason: str) -> TranslateOutput:
    """The text as it is, saying plainly that it was not translated."""
    notes = [f"not translated: {reason}; the text is returned as it is, in {language_name(source.language)}"]
    if source.note:
        notes.append(source.note)
    return TranslateOutput(
        translation=input.text,
        source_language=source.language,
        target_language=input.target_language,
        translated=False,
        glossary_kept=not missing_terms(input.text, _terms(input)),
        quality="none",
        note="; ".join(notes),
    )


class TranslateRules(Plugin[TranslateInput, TranslateOutput]):
    name = "translate"
    version = "1.0.0"
    text_field = "translation"
    description = (
        "Translation without a model: detects the text's language; returns it unchanged when it "
        "already is the target language, else untranslated with translated=false and a note. "
        "The fallback of translate@2."
    )
    policy = Policy(cache=CachePolicy(ttl=3600))
    examples = (
        Example(
            {"text": "The weather is lovely today, so we are going to the beach.", "target_language": "en"},
            {"translated": True, "source_language": "en", "quality": "exact"},
            check=lambda out: out.translation == "The weather is lovely today, so we are going to the beach.",
            description="already in the target language: unchanged",
        ),
        Example(
            {
                "text": "Das Wetter ist heute schön, also gehen wir zum Strand.",
                "target_language": "en",
                "glossary": ["Strand"],
            },
            {"translated": False, "source_language": "de", "quality": "none", "glossary_kept": True},
            check=lambda out: out.note is not None and "not translated" in out.note,
            description="another language: returned untranslated, and it says so",
        ),
    )

    async def run(self, input: TranslateInput, ctx: Context) -> TranslateOutput:
        source = source_of(input)
        if source.language == input.target_language:
            return already_in_target(input, source)
        ctx.warn("translate@1 has no model: the text was returned untranslated")
        return untranslated(input, source, "no translation model answered (translate@1 is rules only)")
