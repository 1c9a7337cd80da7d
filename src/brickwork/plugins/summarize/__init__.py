"""Summarize plugins: ``summarize@2`` (LLM, map-reduce) falling back to ``summarize@1``
(extractive LexRank, no model). Both share one contract."""

from brickwork.plugins.summarize.abstractive import SummarizeLLM
from brickwork.plugins.summarize.contract import SummarizeInput, SummarizeOutput
from brickwork.plugins.summarize.extractive import SummarizeExtractive

__all__ = ["SummarizeExtractive", "SummarizeInput", "SummarizeLLM", "SummarizeOutput"]
