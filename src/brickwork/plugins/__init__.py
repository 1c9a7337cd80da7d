"""First-party plugins, registered through the ``brickwork`` entry point exactly
like third-party ones (see ``[project.entry-points.brickwork]`` in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brickwork.runtime.hooks import hookimpl

__all__ = ["register_plugins"]


@hookimpl
def register_plugins(register: Callable[[type[Any]], None]) -> None:
    from brickwork.plugins.sentiment import SentimentRules

    register(SentimentRules)
