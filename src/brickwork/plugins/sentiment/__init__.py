"""Sentiment plugins: ``sentiment@2`` (LLM label scoring) falling back to
``sentiment@1`` (VADER rules, no model)."""

from brickwork.plugins.sentiment.llm import SentimentLLM
from brickwork.plugins.sentiment.rules import (
    Evidence,
    SentimentInput,
    SentimentOutput,
    SentimentRules,
)

__all__ = ["Evidence", "SentimentInput", "SentimentLLM", "SentimentOutput", "SentimentRules"]
