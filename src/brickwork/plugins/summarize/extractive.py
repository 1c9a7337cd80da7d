"""``summarize@1``: extractive LexRank, offline, no model.

Picks the most central sentences of the text (LexRank over TF-IDF cosine
similarity, from sumy) and returns them in their original order, word for word.
It never invents: every sentence of the summary is a sentence of the input. It
is the last rung of the summarize ladder, so it answers whatever the model does.

Sentences come from pysbd and words from a regex: sumy's default tokenizer needs
NLTK data that cannot be downloaded here. Long texts are ranked in groups of
sentences (LexRank is quadratic), the best of each group ranked again together.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from brickwork.contracts.plugin import Context, Example, Plugin
from brickwork.contracts.policy import CachePolicy, Policy
from brickwork.plugin_api import Span, sentence_spans, words
from brickwork.plugins.summarize.contract import SummarizeInput, SummarizeOutput, word_limit

__all__ = ["SummarizeExtractive", "extract", "rank"]

#: Sentences ranked together at most (LexRank builds an n × n similarity matrix).
GROUP = 150
#: Sentences per summary at most, by named length (an explicit word count has no cap).
MAX_SENTENCES = {"short": 2, "medium": 4, "long": 8}


class _Tokenizer:
    """What sumy's ``Sentence`` needs: words by regex, no NLTK data."""

    language = "english"

    def to_sentences(self, paragraph: str) -> tuple[str, ...]:
        return tuple(s.text for s in sentence_spans(paragraph))

    def to_words(self, sentence: str) -> tuple[str, ...]:
        return tuple(words(sentence))


@lru_cache(maxsize=1)
def _summarizer() -> Any:
    # sumy (and its snowball stemmer) load on first use, never at import.
    from sumy.nlp.stemmers import Stemmer
    from sumy.summarizers.lex_rank import LexRankSummarizer
    from sumy.utils import get_stop_words

    summarizer = LexRankSummarizer(Stemmer("english"))
    summarizer.stop_words = get_stop_words("english")
    return summarizer


def _lexrank(sentences: Sequence[str]) -> list[float]:
    """LexRank centrality of each sentence (sumy's own steps, so duplicates keep a score each)."""
    if len(sentences) <= 2:
        return [1.0] * len(sentences)
    from sumy.models.dom import Sentence

    summarizer = _summarizer()
    tokenizer = _Tokenizer()
    # sumy's __call__ keys ratings by sentence text and returns only the chosen
    # few; the steps it is made of give one score per position. Pinned sumy 0.13.
    bags = [summarizer._to_words_set(Sentence(s, tokenizer)) for s in sentences]
    if not any(bags):
        return [1.0] * len(sentences)
    tf = summarizer._compute_tf(bags)
    idf = summarizer._compute_idf(bags)
    matrix = summarizer._create_matrix(bags, summarizer.threshold, tf, idf)
    return [float(x) for x in summarizer.power_method(matrix, summarizer.epsilon)]


def rank(spans: Sequence[Span], keep: int) -> tuple[list[int], int]:
    """Indexes of ``spans`` from most to least central, and how many groups were ranked.

    Up to :data:`GROUP` sentences are ranked at once; past that, the best ``keep``
    of each group go on to a final ranking together.
    """
    indexes = list(range(len(spans)))
    if len(indexes) <= GROUP:
        scores = _lexrank([s.text for s in spans])
        return sorted(indexes, key=lambda i: (-scores[i], i)), 1
    groups = [indexes[i : i + GROUP] for i in range(0, len(indexes), GROUP)]
    finalists: list[int] = []
    for group in groups:
        scores = _lexrank([spans[i].text for i in group])
        best = sorted(range(len(group)), key=lambda j: (-scores[j], j))[: max(keep, 1)]
        finalists.extend(group[j] for j in sorted(best))
    scores = _lexrank([spans[i].text for i in finalists])
    order = sorted(range(len(finalists)), key=lambda j: (-scores[j], j))
    return [finalists[j] for j in order], len(groups)


def extract(input: SummarizeInput) -> SummarizeOutput:
    """The extractive summary of ``input``: its most central sentences, verbatim."""
    spans = [s for s in sentence_spans(input.text) if words(s.text)]
    if not spans:
        text = input.text.strip()
        return SummarizeOutput(
            summary=f"- {text}" if input.bullets else text,
            bullets=[text] if input.bullets else [],
            method="extractive",
            chunks=1,
            note="extractive: the text has no sentences to choose from; returned as it is",
        )
    limit = word_limit(input.length)
    max_sentences = MAX_SENTENCES.get(str(input.length), len(spans))
    ranked, groups = rank(spans, max_sentences)
    chosen: list[int] = []
    used = 0
    for i in ranked:
        if len(chosen) >= max_sentences:
            break
        count = len(words(spans[i].text))
        if chosen and used + count > limit:
            continue
        chosen.append(i)
        used += count
    notes = ["extractive: sentences of the text, verbatim and in order"]
    if input.style != "neutral":
        notes.append(f"style {input.style!r} does not apply to quoted sentences")
    if used > limit:
        notes.append(f"its most central sentence alone has {used} words, over the {limit} asked for")
    picked = [spans[i].text for i in sorted(chosen)]
    return SummarizeOutput(
        summary="\n".join(f"- {s}" for s in picked) if input.bullets else " ".join(picked),
        bullets=picked if input.bullets else [],
        method="extractive",
        chunks=groups,
        note="; ".join(notes),
    )


_ADA = "Ada wrote the first program. She worked with Babbage. Her notes were published in 1843."


class SummarizeExtractive(Plugin[SummarizeInput, SummarizeOutput]):
    name = "summarize"
    version = "1.0.0"
    text_field = "summary"
    description = (
        "Summary of a text, extractive: its most central sentences (LexRank), verbatim and "
        "in order, so it never invents. Needs no model; the fallback of summarize@2."
    )
    policy = Policy(cache=CachePolicy(ttl=3600))
    examples = (
        Example(
            {
                "text": (
                    "The city council approved the new budget on Tuesday. The budget gives "
                    "four million dollars to road repairs. Road repairs will start in May. "
                    "A local bakery won a prize for its bread."
                ),
                "length": "short",
            },
            {"method": "extractive", "chunks": 1},
            check=lambda out: "budget" in out.summary and "bakery" not in out.summary,
            description="keeps the central sentences, drops the off-topic one",
        ),
        Example(
            {"text": _ADA, "bullets": True, "length": 12},
            check=lambda out: bool(out.bullets) and all(b in _ADA for b in out.bullets),
            description="bullets are sentences of the input",
        ),
    )

    async def run(self, input: SummarizeInput, ctx: Context) -> SummarizeOutput:
        return extract(input)
