"""``classify``: zero-shot classification over labels given with the request.

Three versions with one contract, a degradation ladder from best to always-on::

    classify@3  ClassifyLLM        LLM label scoring       falls back to @2, then @1
    classify@2  ClassifyEmbedding  e5 embedding similarity falls back to @1
    classify@1  ClassifyRules      word overlap, no model

Register the rungs a fallback names before the version that names them when adding
them one by one (``Registry.add``); the entry-point hook takes them in any order.
"""

from brickwork.plugins.classify.contract import ClassifyInput, ClassifyOutput
from brickwork.plugins.classify.embedding import ClassifyEmbedding
from brickwork.plugins.classify.llm import ClassifyLLM
from brickwork.plugins.classify.rules import ClassifyRules

__all__ = ["ClassifyEmbedding", "ClassifyInput", "ClassifyLLM", "ClassifyOutput", "ClassifyRules"]
