"""A streamed model answer's opening, held back while it is undecided.

Small models often open with "Here is the summary:" or "Translation:", or wrap
the whole answer in quotes. A whole answer drops these with a regular expression;
a streamed one cannot send its first words until it knows. :class:`Preamble`
holds the opening back until the answer has said enough: an introduction ("here
is …") is decided at its colon or the end of its line, a label ("summary") by the
character after it, anything else at once. :class:`Quotes` holds back an opening
quote until it is known whether it wraps the whole answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = ["Preamble", "Quotes"]


class Preamble:
    """Feed a streamed answer's deltas through :meth:`feed` until it returns text
    (the answer's, the preamble dropped); after that, pass deltas on unchanged.

    Args:
        pattern: what a preamble looks like (matched at the start, removed once).
        intros: lowercase openings decided at their colon or line end.
        labels: lowercase openings decided by the character that follows them.
        max_chars: the longest opening held back.
    """

    def __init__(
        self, pattern: re.Pattern[str], *, intros: Sequence[str], labels: Sequence[str], max_chars: int = 200
    ) -> None:
        self.pattern = pattern
        self.intros = tuple(intros)
        self.labels = tuple(labels)
        self.max_chars = max_chars
        self._held: str | None = ""  # ``None`` once decided

    @property
    def decided(self) -> bool:
        return self._held is None

    def feed(self, delta: str) -> str | None:
        """``None`` while the opening is undecided; then what follows the preamble
        (every later delta is the caller's to use as it is)."""
        if self._held is None:
            return delta
        self._held += delta
        opening = self._held.lstrip()
        if not opening or (len(opening) < self.max_chars and self._undecided(opening.lower())):
            return None
        return self.finish()

    def finish(self) -> str:
        """What was held, without its preamble (the answer ended, or it was decided)."""
        held = (self._held or "").lstrip()
        self._held = None
        return self.pattern.sub("", held, count=1)

    def _undecided(self, low: str) -> bool:
        for intro in self.intros:
            if intro.startswith(low):
                return True
            if low.startswith(intro):
                return ":" not in low and "\n" not in low
        for label in self.labels:
            if label.startswith(low):
                return True
            if low.startswith(label):
                return not low[len(label) :].strip()
        return False


class Quotes:
    """Quotes around a whole streamed answer, dropped as a whole answer's are.

    Feed the answer's body (from its first non-space character) through
    :meth:`feed`. An opening quote is held back, with what follows it, until it is
    decided: a closing quote followed by more text is a quotation inside the answer
    (the opening quote is kept); ``window`` characters without a closing quote are
    taken as wrapping (the opening quote is dropped, and :attr:`closing` then holds
    what closes it: the caller drops one such character at the very end); an answer
    that ends first is wrapped only if it ends with a closing quote (see :meth:`finish`).

    Args:
        pairs: opening quote → the characters that close it.
        window: the most characters held back without a closing quote.
    """

    def __init__(self, pairs: Mapping[str, str], *, window: int = 80) -> None:
        self.pairs = dict(pairs)
        self.window = window
        self.wrapped = False
        #: The characters that close the opening quote ("" without one).
        self.closing = ""
        self._held: str | None = None  # ``None``: not holding (undecided at the start, or decided)
        self._started = False

    def feed(self, text: str) -> str:
        """What may be sent now of ``text``."""
        if not self._started:
            if not text:
                return ""
            self._started = True
            if text[0] not in self.pairs:
                return text
            self.closing = self.pairs[text[0]]
            self._held = ""
        if self._held is None:
            return text
        self._held += text
        closes = self._closes(self._held)
        if closes is not None and self._held[closes + 1 :].strip():
            return self._decide(wrapped=False)  # a quotation inside the answer
        if closes is None and len(self._held) > self.window:
            return self._decide(wrapped=True)
        return ""

    def _closes(self, held: str) -> int | None:
        """Where the opening quote is closed in ``held`` (``None``: not yet). A quote
        mark closes after a non-space and before a non-letter (so "aujourd'hui" and
        "l'homme" close nothing); a symmetric one after a space opens a nested quote."""
        opening = held[0]
        depth = 0
        for at in range(1, len(held)):
            char = held[at]
            after = held[at + 1 : at + 2]
            before = held[at - 1]
            if char in self.closing and not before.isspace() and not after.isalnum():
                if depth == 0:
                    return at
                depth -= 1
            elif char == opening and (before.isspace() or before in "([{"):
                depth += 1
        return None

    def finish(self) -> str:
        """What is still held once the answer ended, without its quotes if it was wrapped."""
        if self._held is None:
            return ""
        held = self._held.rstrip()
        if len(held) >= 2 and held[-1] in self.closing:
            self.wrapped = True
            self._held = None
            self.closing = ""  # dropped here already
            return held[1:-1].strip()
        return self._decide(wrapped=False)

    def _decide(self, *, wrapped: bool) -> str:
        held, self._held = self._held or "", None
        self.wrapped = wrapped
        if not wrapped:
            self.closing = ""
            return held
        return held[1:].lstrip()
