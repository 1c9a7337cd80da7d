"""The contract every translate version shares (fallbacks need it identical)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from brickwork.contracts.plugin import PluginInput, PluginOutput

__all__ = ["LanguageCode", "Quality", "TranslateInput", "TranslateOutput"]

#: ISO 639-1: two lowercase letters.
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
Term = Annotated[str, StringConstraints(min_length=1, max_length=200)]

Quality = Literal["exact", "standard", "best_effort", "none"]


class TranslateInput(PluginInput):
    text: str = Field(min_length=1, max_length=20_000, description="the text to translate")
    target_language: LanguageCode = Field(description="ISO 639-1 code of the language wanted")
    source_language: LanguageCode | None = Field(
        default=None, description="ISO 639-1 code of the text's language; detected when omitted"
    )
    glossary: list[Term] | dict[Term, Term] = Field(
        default_factory=list,
        max_length=100,
        description=(
            "terms to keep: a list of terms copied verbatim (names, products), or a mapping "
            "of source term → the exact target term to use"
        ),
    )


class TranslateOutput(PluginOutput):
    translation: str = Field(
        description="the text in the target language, or the original when not translated"
    )
    source_language: str = Field(description="the text's language (given, or detected)")
    target_language: str
    translated: bool = Field(
        description="the translation is in the target language (true too when the text already was)"
    )
    glossary_kept: bool = Field(
        description="every glossary term found in the text is in the translation, verbatim"
    )
    quality: Quality = Field(
        description=(
            "exact: already in the target language, unchanged; standard: translated by the model; "
            "best_effort: translated by a small local model, expect errors; none: not translated"
        )
    )
    note: str | None = Field(default=None, description="what the reader should know about this translation")
