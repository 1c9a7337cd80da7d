"""A model answer's opening, held back while it may still be a preamble.

Small models often open with "Here is the summary:" or "Translation:". A whole
answer drops it with a regular expression; a streamed one cannot send its first
words until it knows whether they are such an opening. :class:`Preamble` holds
the opening back until the answer has said enough: an introduction ("here is …")
is decided at its colon or the end of its line, a label ("summary") by the
character after it, anything else at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["Preamble"]


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
