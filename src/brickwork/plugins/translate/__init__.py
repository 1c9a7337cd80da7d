"""Translate plugins: ``translate@2`` (LLM, glossary enforced) falling back to
``translate@1`` (no model: unchanged or honestly untranslated). One contract."""

from brickwork.plugins.translate.contract import TranslateInput, TranslateOutput
from brickwork.plugins.translate.llm import TranslateLLM
from brickwork.plugins.translate.rules import TranslateRules

__all__ = ["TranslateInput", "TranslateLLM", "TranslateOutput", "TranslateRules"]
