"""Where the stores live: store URLs and their defaults.

A store URL is ``sqlite:///path/to/file.db``, a plain file path, or
``postgresql://user@host:port/db?options=...`` (``postgres://`` works too).
``sqlite:///tmp/a.db`` and ``sqlite:////tmp/a.db`` both mean ``/tmp/a.db``; give a
relative path as a plain path (``./keys.db``).

Defaults come from the environment, read when asked (never at import):

| variable | default |
|---|---|
| ``BRICKWORK_HOME`` | ``~/.local/share/brickwork`` |
| ``BRICKWORK_KEYS`` | ``sqlite:///$BRICKWORK_HOME/keys.db`` |
| ``BRICKWORK_AUDIT`` | ``sqlite:///$BRICKWORK_HOME/audit.db`` |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from brickwork.contracts.errors import ConfigurationError

__all__ = [
    "AUDIT_ENV",
    "HOME_ENV",
    "KEYS_ENV",
    "default_audit_url",
    "default_keys_url",
    "home",
    "is_postgres",
    "redact_url",
    "sqlite_path",
]

HOME_ENV = "BRICKWORK_HOME"
KEYS_ENV = "BRICKWORK_KEYS"
AUDIT_ENV = "BRICKWORK_AUDIT"

_PG_SCHEMES = ("postgresql://", "postgres://")


def home(environ: Mapping[str, str] | None = None) -> Path:
    """The directory for Brickwork's local data."""
    env = os.environ if environ is None else environ
    value = env.get(HOME_ENV) or "~/.local/share/brickwork"
    return Path(value).expanduser()


def default_keys_url(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(KEYS_ENV) or f"sqlite:///{home(env) / 'keys.db'}"


def default_audit_url(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(AUDIT_ENV) or f"sqlite:///{home(env) / 'audit.db'}"


def is_postgres(url: str) -> bool:
    return url.startswith(_PG_SCHEMES)


def sqlite_path(url: str) -> str:
    """The file path a SQLite store URL (or plain path) names.

    Raises:
        ConfigurationError: another scheme, or an empty path.
    """
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/"):
            raise ConfigurationError(
                f"store URL {redact_url(url)!r}: write sqlite:///absolute/path, or give a plain path"
            )
        path = "/" + rest.lstrip("/")
    elif "://" in url:
        raise ConfigurationError(
            f"store URL {redact_url(url)!r}: use sqlite:///path, a file path or postgresql://..."
        )
    else:
        path = url
    if path in ("", "/"):
        raise ConfigurationError(f"store URL {url!r} names no file")
    return path if path == ":memory:" else str(Path(path).expanduser())


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    creds, at, hostpart = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}"
