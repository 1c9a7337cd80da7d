"""Glossary terms kept verbatim: enforced, not just asked for.

Before the model sees the text, every glossary term in it is replaced by a
placeholder (``[T1]``, ``[T2]`` …) that the prompt tells the model to copy.
Afterwards each placeholder becomes the term's required rendering again —
tolerating the small damage models do (``[ T1 ]``, ``(T1)``, ``[[t1]]``). A
placeholder the model dropped is put back at the same relative place in the
translation, and the caller is told. Finally, :func:`missing_terms` checks every
term is there, verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Protected", "missing_terms", "normalize", "protect", "reinsert", "restore"]

_PREFIXES = ("T", "G", "K", "Q", "Z")


def normalize(glossary: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """Term → the exact text the translation must contain for it."""
    if isinstance(glossary, Mapping):
        return {k: v for k, v in glossary.items() if k.strip()}
    return {t: t for t in glossary if t.strip()}


def _term_pattern(term: str) -> str:
    # Whole words only where the term starts or ends with a word character:
    # "Go" must not match inside "Google".
    head = r"(?<!\w)" if re.match(r"\w", term) else ""
    tail = r"(?!\w)" if re.search(r"\w$", term) else ""
    return head + re.escape(term) + tail


@dataclass(frozen=True)
class Protected:
    """A text with its glossary terms replaced by placeholders.

    Attributes:
        text: the text the model sees.
        prefix: the placeholder letter (one the text does not already use).
        slots: placeholder number → the rendering it stands for.
        terms: the glossary terms found in the original → their renderings.
    """

    text: str
    prefix: str = "T"
    slots: dict[int, str] = field(default_factory=dict)
    terms: dict[str, str] = field(default_factory=dict)

    def placeholder(self, number: int) -> str:
        return f"[{self.prefix}{number}]"

    def loose_pattern(self) -> re.Pattern[str]:
        """A placeholder as models write it back: ``[T1]``, ``[ T1 ]``, ``(T1)``, ``[[t1]]`` …"""
        return re.compile(r"[\[({⟦【<]+\s*" + self.prefix + r"\s*-?\s*(\d{1,3})\s*[\])}⟧】>]+", re.IGNORECASE)


def protect(text: str, glossary: Mapping[str, str]) -> Protected:
    """Replace each glossary term in ``text`` (longest first) by a placeholder."""
    found = {t: r for t, r in glossary.items() if re.search(_term_pattern(t), text)}
    prefix = next(
        (p for p in _PREFIXES if not re.search(r"[\[({⟦【<]+\s*" + p + r"\s*-?\s*\d", text, re.I)), "T"
    )
    if not found:
        return Protected(text, prefix)
    ordered = sorted(found, key=len, reverse=True)
    numbers = {term: i for i, term in enumerate(ordered, 1)}
    pattern = re.compile("|".join(_term_pattern(t) for t in ordered))
    protected = pattern.sub(lambda m: f"[{prefix}{numbers[m.group()]}]", text)
    slots = {numbers[t]: found[t] for t in ordered}
    return Protected(protected, prefix, slots, found)


def restore(translation: str, protected: Protected) -> tuple[str, list[int]]:
    """Placeholders back to renderings; and the numbers the model dropped."""
    seen: set[int] = set()

    def put_back(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number not in protected.slots:
            return match.group()
        seen.add(number)
        return protected.slots[number]

    restored = protected.loose_pattern().sub(put_back, translation)
    return restored, [n for n in sorted(protected.slots) if n not in seen]


def reinsert(translation: str, protected: Protected, missing: Sequence[int]) -> str:
    """Put dropped terms back at the same relative place (at a word boundary).

    A guess, but the term is there, verbatim; the caller warns that it was repaired.
    """
    result = translation
    for number in missing:
        at = protected.text.find(protected.placeholder(number))
        share = at / max(1, len(protected.text)) if at >= 0 else 1.0
        target = round(share * len(result))
        spaces = [m.start() for m in re.finditer(r"\s", result)] + [len(result)]
        cut = min(spaces, key=lambda i: abs(i - target)) if target > 0 else 0
        term = protected.slots[number]
        if cut == 0:
            result = f"{term} {result.lstrip()}" if result else term
        else:
            result = f"{result[:cut]} {term}{result[cut:]}"
    return result


def missing_terms(translation: str, terms: Mapping[str, str]) -> list[str]:
    """Terms whose rendering is not in ``translation`` verbatim."""
    return [t for t, rendering in terms.items() if rendering not in translation]
