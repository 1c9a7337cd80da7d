"""The contract every summarize version shares (fallbacks need it identical)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from brickwork.contracts.plugin import PluginInput, PluginOutput

__all__ = [
    "LENGTH_WORDS",
    "STYLES",
    "Length",
    "MaxWords",
    "Style",
    "SummarizeInput",
    "SummarizeOutput",
    "word_limit",
]

Length = Literal["short", "medium", "long"]
MaxWords = Annotated[int, Field(ge=5, le=2000)]
Style = Literal["neutral", "formal", "casual", "technical"]

#: Target words for each named length.
LENGTH_WORDS: dict[str, int] = {"short": 40, "medium": 100, "long": 200}
#: How each style is asked for, in prompts.
STYLES: dict[str, str] = {
    "neutral": "neutral and factual",
    "formal": "formal, as in a report",
    "casual": "casual and friendly, in plain words",
    "technical": "precise and technical, keeping the terms of the text",
}


class SummarizeInput(PluginInput):
    text: str = Field(min_length=1, max_length=200_000, description="the text to summarize")
    length: Length | MaxWords = Field(
        default="medium",
        description="short (~40 words), medium (~100), long (~200), or a maximum number of words",
    )
    bullets: bool = Field(default=False, description="a list of points rather than a paragraph")
    style: Style = Field(default="neutral", description="tone of an abstractive summary")


class SummarizeOutput(PluginOutput):
    summary: str = Field(description="the summary; '- ' lines when bullets were asked for")
    bullets: list[str] = Field(
        default_factory=list, description="the points of the summary, when bullets were asked for"
    )
    method: Literal["abstractive", "extractive"]
    chunks: int = Field(ge=1, description="parts the text was split into to fit the model or the ranker")
    note: str | None = Field(default=None, description="what the reader should know about this summary")


def word_limit(length: Length | int) -> int:
    """The most words a summary of ``length`` should have."""
    return length if isinstance(length, int) else LENGTH_WORDS[length]
