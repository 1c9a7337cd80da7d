"""Plugin names, semantic versions and plugin refs (``name``, ``name@1.2.0``, ``name@prod``)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from functools import total_ordering

from brickwork.contracts.errors import InvalidRequestError

__all__ = ["LABEL_RE", "NAME_RE", "PluginRef", "Version"]

#: Plugin names: lowercase, digits, ``-`` and ``_``, starting with a letter.
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: Labels look like names, and never like a version.
LABEL_RE = NAME_RE
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_PARTIAL_RE = re.compile(r"^(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?$")


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    """A semantic version (semver.org 2.0.0), ordered by precedence."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``MAJOR.MINOR.PATCH[-pre][+build]``; raise ``ValueError`` otherwise."""
        m = _SEMVER_RE.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre, m.group(5) or "")

    @staticmethod
    def is_valid(text: str) -> bool:
        return bool(_SEMVER_RE.match(text))

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A release sorts after its prereleases; numeric identifiers sort before text.
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    def matches_partial(self, partial: str) -> bool:
        """Whether ``1`` or ``1.2`` (a major or major.minor shorthand) covers this version."""
        m = _PARTIAL_RE.match(partial)
        if not m:
            return False
        if int(m.group(1)) != self.major:
            return False
        return m.group(2) is None or int(m.group(2)) == self.minor


@dataclass(frozen=True, slots=True)
class PluginRef:
    """A parsed plugin ref.

    ``selector`` is ``None`` (default version), an exact version (``1.2.0``), a
    version shorthand (``1``, ``1.2``: highest matching release) or a label (``prod``).
    """

    name: str
    selector: str | None = None

    @classmethod
    def parse(cls, text: str) -> PluginRef:
        """Parse ``name``, ``name@version`` or ``name@label``.

        Raises:
            InvalidRequestError: the ref is malformed (code ``invalid_request``).
        """
        if cls is PluginRef and isinstance(text, str):
            return _parse_cached(text)  # refs are few and immutable: parse each once
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> PluginRef:
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError("plugin ref must be a non-empty string like 'name@version'")
        name, sep, selector = text.strip().partition("@")
        if not NAME_RE.match(name):
            raise InvalidRequestError(
                f"bad plugin name {name!r}: use lowercase letters, digits, '-' or '_', "
                "starting with a letter (at most 64 characters)"
            )
        if not sep:
            return cls(name)
        if not selector:
            raise InvalidRequestError(f"plugin ref {text!r} has '@' but no version or label")
        if not (Version.is_valid(selector) or _PARTIAL_RE.match(selector) or LABEL_RE.match(selector)):
            raise InvalidRequestError(
                f"bad version or label {selector!r} in {text!r}: expected e.g. '1.2.0', '1' or 'prod'"
            )
        return cls(name, selector)

    @property
    def is_exact(self) -> bool:
        return self.selector is not None and Version.is_valid(self.selector)

    @property
    def is_partial(self) -> bool:
        return self.selector is not None and bool(_PARTIAL_RE.match(self.selector))

    @property
    def is_label(self) -> bool:
        return self.selector is not None and not self.is_exact and not self.is_partial

    def __str__(self) -> str:
        return self.name if self.selector is None else f"{self.name}@{self.selector}"


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> PluginRef:
    return PluginRef._parse(text)
