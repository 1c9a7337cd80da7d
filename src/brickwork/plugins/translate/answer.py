"""From a model's answer to the translation of one chunk: at once, or as it streams.

The answer loses a preamble ("Here is the translation:", "Translation:") and
quotes around it that the original did not have, and its glossary placeholders
become the terms' renderings again. A streamed answer holds back only what it
cannot yet decide: the opening until a preamble is ruled out, a placeholder being
written, a closing quote.
"""

from __future__ import annotations

import re

from brickwork.plugin_api import Preamble, Quotes
from brickwork.plugins.translate.glossary import Protected, restore

__all__ = ["StreamedTranslation", "clean"]

_PREAMBLE = re.compile(r"^\s*(?:here is the translation[^\n:]*:|translation\s*:)\s*", re.IGNORECASE)
_OPEN_QUOTES = "\"'«“"
_CLOSE_QUOTES = "\"'»”"
#: Each opening quote, and what closes it in a streamed answer.
_PAIRS = {'"': '"”', "'": "'’", "«": "»", "“": '”"'}
#: Where a placeholder may start (see ``Protected._loose``), and how long one can be.
_BRACKETS = "[({⟦【<"
_PLACEHOLDER_CHARS = 16


def clean(answer: str, original: str) -> str:
    answer = _PREAMBLE.sub("", answer.strip()).strip()
    quoted = original.strip()[:1] in _OPEN_QUOTES
    if len(answer) >= 2 and not quoted and answer[0] in _OPEN_QUOTES and answer[-1] in _CLOSE_QUOTES:
        answer = answer[1:-1].strip()
    return answer


class StreamedTranslation:
    """One chunk's streaming answer, shaped as it comes: :meth:`feed` each delta and
    send what it returns, then what :meth:`finish` returns. :attr:`seen` holds the
    placeholders that came back."""

    def __init__(self, protected: Protected, original: str) -> None:
        self.protected = protected
        self.quoted = original.strip()[:1] in _OPEN_QUOTES
        self.seen: set[int] = set()
        self._opening = Preamble(_PREAMBLE, intros=("here is the translation",), labels=("translation",))
        self._pending = ""
        # Quotes the original did not have, around the whole answer, are not the answer's.
        self._quotes = Quotes(_PAIRS) if not self.quoted else None
        self._begun = False

    def feed(self, delta: str) -> str:
        if not delta:
            return ""
        body = self._opening.feed(delta)
        if body is None:
            return ""
        self._pending += self._begin(body)
        return self._flush(final=False)

    def finish(self) -> str:
        if not self._opening.decided:
            self._pending = self._begin(self._opening.finish())
        if self._quotes is not None:
            self._pending += self._quotes.finish()
        self._pending = self._pending.rstrip()
        if self._closing and self._pending[-1:] and self._pending[-1:] in self._closing:
            self._pending = self._pending[:-1].rstrip()
        return self._flush(final=True)

    @property
    def _closing(self) -> str:
        """What closes quotes the answer is wrapped in, still to come at its end."""
        return self._quotes.closing if self._quotes is not None else ""

    def _begin(self, delta: str) -> str:
        """``delta`` once the answer's text began (its first non-space character: a
        preamble's spacing is not the answer's), past quotes that may wrap it."""
        if not self._begun:
            delta = delta.lstrip()
            if not delta:
                return ""
            self._begun = True
        return delta if self._quotes is None else self._quotes.feed(delta)

    def _flush(self, *, final: bool) -> str:
        text = self._pending
        keep = 0
        if not final:
            # A placeholder being written, trailing spaces (the answer may end there)
            # and a closing quote stay until more comes.
            start = max(text.rfind(c) for c in _BRACKETS)
            while start > 0 and text[start - 1] in _BRACKETS:
                start -= 1  # "[[T1]": the placeholder starts at its first bracket
            if start >= 0 and len(text) - start <= _PLACEHOLDER_CHARS and not _closed(text[start:]):
                keep = len(text) - start
            else:
                # A placeholder that ends the text may have more closing brackets to come.
                ends = [m for m in self.protected.loose_pattern().finditer(text) if m.end() == len(text)]
                if ends:
                    keep = len(text) - ends[0].start()
            stripped = len(text[: len(text) - keep].rstrip())
            tail = text[:stripped][-1:]
            if self._closing and tail and tail in self._closing:
                stripped -= 1
            keep = len(text) - stripped
        ready, self._pending = text[: len(text) - keep], text[len(text) - keep :]
        if not ready:
            return ""
        restored, dropped = restore(ready, self.protected)
        self.seen.update(set(self.protected.slots) - set(dropped))
        return restored


def _closed(tail: str) -> bool:
    return any(c in tail for c in "])}⟧】>")
