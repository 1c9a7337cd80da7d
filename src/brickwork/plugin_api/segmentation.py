"""Sentences and chunks of a text, as spans of the original.

Plugins cut text the same way (both summarize versions and translate do): paragraphs at
blank lines, sentences inside them with pysbd (rules, no model, no download),
then consecutive sentences packed into chunks that fit a token budget. Spans keep
offsets into the original, so a chunk is an exact slice of the input and an
extracted sentence is always a sentence of the input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["WORD", "Span", "pack", "sentence_spans", "words"]

#: A word: letters/digits, with inner apostrophes or hyphens (unicode-aware).
WORD = re.compile(r"\w+(?:['’-]\w+)*")
_PARAGRAPH = re.compile(r"(?:[^\n]|\n(?![ \t\r\f\v]*\n))+")
_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` of the original."""

    start: int
    end: int
    text: str


def words(text: str) -> list[str]:
    return WORD.findall(text)


@lru_cache(maxsize=8)
def _segmenter(language: str) -> Any:
    # Imported on first use (pysbd compiles many patterns), never at import.
    import pysbd
    from pysbd.languages import LANGUAGE_CODES

    return pysbd.Segmenter(language=language if language in LANGUAGE_CODES else "en", clean=False)


def sentence_spans(text: str, language: str = "en") -> list[Span]:
    """The sentences of ``text`` in order, stripped, each an exact slice of it."""
    spans: list[Span] = []
    segmenter = _segmenter(language)
    for paragraph in _PARAGRAPH.finditer(text):
        block = paragraph.group()
        if not block.strip():
            continue
        cursor = 0
        for segment in segmenter.segment(block):
            piece = segment.strip()
            if not piece:
                continue
            found = block.find(piece, cursor)
            if found < 0:
                # pysbd changed the text (it should not with clean=False): keep the
                # rest of the paragraph whole rather than lose or alter any of it.
                rest = block[cursor:]
                lead = len(rest) - len(rest.lstrip())
                piece, found = rest.strip(), cursor + lead
                if piece:
                    start = paragraph.start() + found
                    spans.append(Span(start, start + len(piece), piece))
                break
            start = paragraph.start() + found
            spans.append(Span(start, start + len(piece), piece))
            cursor = found + len(piece)
    return spans


def _cut(span: Span, budget: int, count: Callable[[str], int]) -> list[Span]:
    """A span longer than ``budget`` tokens, cut at whitespace into pieces that fit."""
    pieces: list[Span] = []
    first: re.Match[str] | None = None
    last: re.Match[str] | None = None
    used = 0
    for token in _TOKEN.finditer(span.text):
        cost = count(token.group()) + 1
        if first is not None and last is not None and used + cost > budget:
            pieces.append(_sub(span, first.start(), last.end()))
            first, used = None, 0
        if first is None:
            first = token
        last = token
        used += cost
    if first is not None and last is not None:
        pieces.append(_sub(span, first.start(), last.end()))
    return pieces


def _sub(span: Span, start: int, end: int) -> Span:
    return Span(span.start + start, span.start + end, span.text[start:end])


def pack(text: str, spans: Sequence[Span], budget: int, count: Callable[[str], int]) -> list[Span]:
    """Consecutive ``spans`` of ``text`` grouped into chunks of at most ``budget`` tokens.

    A chunk is the slice of ``text`` from its first span to its last, whitespace
    included. Token counts are summed per sentence (plus one for the joint), which
    stays close to the count of the joined text; a sentence longer than the budget
    on its own is cut at whitespace.
    """
    if budget < 1:
        raise ValueError("budget must be at least one token")
    chunks: list[Span] = []
    start: int | None = None
    end = 0
    used = 0
    for span in spans:
        cost = count(span.text) + 1
        pieces = [span] if cost <= budget else _cut(span, budget, count)
        for piece in pieces:
            piece_cost = cost if piece is span else count(piece.text) + 1
            if start is not None and used + piece_cost > budget:
                chunks.append(Span(start, end, text[start:end]))
                start, used = None, 0
            if start is None:
                start = piece.start
            end = piece.end
            used += piece_cost
    if start is not None:
        chunks.append(Span(start, end, text[start:end]))
    return chunks
