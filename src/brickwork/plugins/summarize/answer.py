"""From a model's answer to the summary: at once, or piece by piece as it streams.

Either way the answer loses a preamble ("Here is a summary:", "Summary:") and
quotes around it, and is held to the word limit: prose as one paragraph, bullets
as ``- `` lines. A whole answer is cut at the last sentence that fits, and one the
token limit cut off loses its unfinished sentence or point.

A streamed answer cannot take back what it sent, so it holds back only what it
cannot yet decide — the opening until a preamble is ruled out, the word being
written (it may close the quotes), a bullet line until it is whole — and past the
word limit (or at the token limit mid-sentence) it stops and ends with "…".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from brickwork.plugin_api import Preamble, Quotes, sentence_spans, words

__all__ = ["Shaped", "StreamedAnswer", "clean", "drop_unfinished", "parse_bullets", "shape"]

_BULLET = re.compile(r"^\s*(?:[-*•–]|\d{1,2}[.)])\s+(.+?)\s*$")
_PREAMBLE = re.compile(
    r"^\s*(?:(?:here is|here's|below is)[^\n:]*:|summary\s*:|\*\*summary\*\*:?)\s*", re.IGNORECASE
)
#: The preamble's openings, for streaming (see :class:`~brickwork.plugin_api.Preamble`).
_INTROS = ("here is", "here's", "below is")
_LABELS = ("summary", "**summary**")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_ENDS_SENTENCE = (".", "!", "?", "…")
_QUOTES = "\"'"


@dataclass
class Shaped:
    """The summary made of an answer."""

    summary: str
    bullets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_bullets(text: str) -> list[str]:
    """The points of a model's answer: its bullet lines, else its sentences."""
    points = [m.group(1) for line in text.splitlines() if (m := _BULLET.match(line))]
    if points:
        return points
    return [s.text for s in sentence_spans(text)]


def clean(text: str) -> str:
    """The answer without a preamble or quotes around it."""
    text = _PREAMBLE.sub("", text.strip()).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1].strip()
    return text


def drop_unfinished(text: str) -> str:
    """An answer cut by the token limit, without its unfinished last sentence or point."""
    lines = text.rstrip().splitlines()
    if len(lines) > 1 and _BULLET.match(lines[-1]) and _BULLET.match(lines[-2]):
        return "\n".join(lines[:-1])
    ends = [m.start() for m in _SENTENCE_END.finditer(text)]
    if ends and not text.rstrip().endswith(_ENDS_SENTENCE):
        return text[: ends[-1]]
    return text


def _trim(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` words at a sentence end (or a word, with "…")."""
    if len(words(text)) <= limit:
        return text, False
    kept: list[str] = []
    used = 0
    for sentence in _SENTENCE_END.split(text):
        count = len(words(sentence))
        if used + count > limit:
            break
        kept.append(sentence)
        used += count
    if kept:
        return " ".join(kept), True
    tokens = text.split()
    return " ".join(tokens[:limit]).rstrip(",;:") + "…", True


def _points(answer: str, limit: int, notes: list[str]) -> list[str]:
    points: list[str] = []
    used = 0
    for point in parse_bullets(answer):
        count = len(words(point))
        if points and used + count > limit:
            notes.append(f"cut to {limit} words")
            break
        points.append(point)
        used += count
    return points


def shape(answer: str, *, finish_reason: str, limit: int, bullets: bool) -> Shaped:
    """A whole answer as the summary (its text is empty when the answer had no words)."""
    answer = clean(answer)
    if finish_reason == "length":
        answer = drop_unfinished(answer)
    notes: list[str] = []
    if bullets:
        points = _points(answer, limit, notes) if words(answer) else []
        return Shaped("\n".join(f"- {p}" for p in points), points, notes)
    summary, cut = _trim(" ".join(answer.split()), limit)
    if cut:
        notes.append(f"cut to {limit} words")
    return Shaped(summary if words(summary) else "", [], notes)


class StreamedAnswer:
    """A streaming answer shaped as it comes: :meth:`feed` each delta and send what it
    returns; :meth:`finish` returns the last piece. The pieces add up to
    :attr:`summary`; :attr:`full` says the limit is reached and reading can stop."""

    def __init__(self, *, limit: int, bullets: bool) -> None:
        self.limit = limit
        self.bullets = bullets
        self.points: list[str] = []
        self.notes: list[str] = []
        self.full = False
        self._sent: list[str] = []
        self._opening = Preamble(_PREAMBLE, intros=_INTROS, labels=_LABELS)
        self._quotes = Quotes({'"': '"', "'": "'"})
        self._begun = False
        self._pending = ""
        self._held: list[str] = []  # bullets: lines before the first point
        self._used = 0

    @property
    def summary(self) -> str:
        return "".join(self._sent)

    def feed(self, delta: str) -> str:
        if self.full or not delta:
            return ""
        body = self._opening.feed(delta)
        if body is None:
            return ""
        self._pending += self._begin(body)
        return self._flush(final=False)

    def finish(self, finish_reason: str) -> str:
        """The last piece, once the answer ended (``finish_reason`` as the model said)."""
        out = ""
        if not self.full:
            if not self._opening.decided:
                self._pending = self._begin(self._opening.finish())
            if not self.bullets:
                self._pending += self._quotes.finish()
            out = self._flush(final=True, cut_short=finish_reason == "length")
        if not self.bullets and (self.full or finish_reason == "length"):
            out += self._close_cut()
        return out

    def _begin(self, delta: str) -> str:
        """``delta`` once the body of the answer began (its first non-space character),
        past quotes that may wrap the whole answer (prose)."""
        if not self._begun:
            delta = delta.lstrip()
            if not delta:
                return ""
            self._begun = True
        return delta if self.bullets else self._quotes.feed(delta)

    def _flush(self, *, final: bool, cut_short: bool = False) -> str:
        return self._flush_points(final, cut_short) if self.bullets else self._flush_prose(final)

    def _send(self, piece: str) -> str:
        self._sent.append(piece)
        return piece

    def _limit_reached(self) -> None:
        self.full = True
        self.notes.append(f"cut to {self.limit} words")

    # --- prose: word by word ----------------------------------------------------------

    def _flush_prose(self, final: bool) -> str:
        tokens = self._pending.split()
        ends_in_space = self._pending[-1:].isspace()
        self._pending = ""
        closing = self._quotes.closing
        if not final:
            if tokens and not ends_in_space:
                self._pending = tokens.pop()  # the word being written
            elif closing and tokens and tokens[-1][-1] in closing:
                self._pending = tokens.pop() + " "  # it may close the quotes: the answer's end
        elif closing and tokens and tokens[-1][-1] in closing:
            tokens[-1] = tokens[-1][:-1]
            if not tokens[-1]:
                tokens.pop()
        out = []
        for token in tokens:
            count = len(words(token))
            if self._used + count > self.limit:
                self._limit_reached()
                break
            self._used += count
            out.append(self._send(token if not self._sent else " " + token))
        return "".join(out)

    def _close_cut(self) -> str:
        """An ending for prose stopped short: "…" after an unfinished sentence."""
        if self.bullets or not self._sent or self.summary.endswith(_ENDS_SENTENCE):
            return ""
        if self.summary.endswith("…"):
            return ""
        return self._send("…")

    # --- bullets: line by line --------------------------------------------------------

    def _flush_points(self, final: bool, cut_short: bool) -> str:
        lines = self._pending.split("\n")
        self._pending = "" if final else lines.pop()  # the line being written
        if final and cut_short and self.points and lines and _BULLET.match(lines[-1]):
            lines.pop()  # the point the token limit cut off
        out = [self._point(m.group(1)) if (m := _BULLET.match(line)) else self._hold(line) for line in lines]
        if final and not self.points and self._held:
            # No bullet lines at all: the answer's sentences are its points.
            text = "\n".join(self._held)
            if cut_short:
                text = drop_unfinished(text)
            self._held = []
            out.extend(self._point(point) for point in parse_bullets(clean(text)))
        return "".join(out)

    def _hold(self, line: str) -> str:
        if not self.points and line.strip():
            self._held.append(line)
        return ""

    def _point(self, point: str) -> str:
        if self.full:
            return ""
        count = len(words(point))
        if self.points and self._used + count > self.limit:
            self._limit_reached()
            return ""
        self._used += count
        self.points.append(point)
        return self._send(("\n" if len(self.points) > 1 else "") + "- " + point)
