"""First-party plugins, registered through the ``brickwork`` entry point exactly
like third-party ones (see ``[project.entry-points.brickwork]`` in pyproject.toml).

Every capability comes as a degradation ladder: the highest version uses the
embedded model and falls back, version by version, to a rules version that needs
no model, so the plugin keeps answering (marked ``degraded``) when the model is
down, slow or over budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brickwork.plugin_api import hookimpl

__all__ = ["register_plugins"]


@hookimpl
def register_plugins(register: Callable[[type[Any]], None]) -> None:
    # Imported inside the hook: loading the entry point costs nothing until used.
    from brickwork.plugins.classify import ClassifyEmbedding, ClassifyLLM, ClassifyRules
    from brickwork.plugins.sentiment import SentimentLLM, SentimentRules
    from brickwork.plugins.summarize import SummarizeExtractive, SummarizeLLM
    from brickwork.plugins.translate import TranslateLLM, TranslateRules

    for cls in (
        SentimentRules,
        SentimentLLM,
        SummarizeExtractive,
        SummarizeLLM,
        TranslateRules,
        TranslateLLM,
        ClassifyRules,
        ClassifyEmbedding,
        ClassifyLLM,
    ):
        register(cls)
