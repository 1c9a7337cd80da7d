"""What the commands read: the options they share, a request's input, the runtime.

Every command that takes ``--config`` or ``--json`` uses these, so the flags and
their help read the same in each.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from brickwork.bootstrap import CONFIG_ENV, build, load
from brickwork.contracts.errors import InvalidRequestError
from brickwork.runtime.orchestrator import Orchestrator

__all__ = ["ConfigOption", "JsonOption", "load_runtime", "parse_meta", "read_input"]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"Config file (YAML or TOML). Default: ${CONFIG_ENV}, else built-in defaults.",
        envvar=CONFIG_ENV,
        show_envvar=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def load_runtime(config: Path | None) -> Orchestrator:
    """The runtime for ``--config`` (``None``: the built-in defaults)."""
    return load(config) if config else build()


def read_input(text: str | None, input_json: str | None) -> dict[str, Any] | str:
    """The request input from TEXT, ``--input JSON`` or standard input (one of them)."""
    if text is not None and input_json is not None:
        raise InvalidRequestError("give TEXT or --input, not both")
    data: dict[str, Any] | str
    if input_json is not None:
        try:
            data = json.loads(input_json)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"--input is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidRequestError("--input must be a JSON object")
    elif text is not None:
        data = text
    elif not sys.stdin.isatty():
        data = sys.stdin.read()
        if not data.strip():
            raise InvalidRequestError("standard input was empty; give TEXT or --input")
    else:
        raise InvalidRequestError("no input: give TEXT, --input JSON, or pipe text on stdin")
    return data


def parse_meta(meta: Sequence[str]) -> dict[str, str]:
    """``--meta KEY=VALUE`` options as a dict."""
    metadata: dict[str, str] = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"--meta {item!r} must be KEY=VALUE")
        metadata[key] = value
    return metadata
