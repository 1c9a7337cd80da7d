"""Sentiment plugins."""

from brickwork.plugins.sentiment.rules import (
    Evidence,
    SentimentInput,
    SentimentOutput,
    SentimentRules,
)

__all__ = ["Evidence", "SentimentInput", "SentimentOutput", "SentimentRules"]
