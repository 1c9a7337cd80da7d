"""Evaluate plugin versions on small labelled datasets, side by side.

Each item goes through the runtime (``Orchestrator.handle``) once per version,
with its policies, fallbacks and all, so a model version that degrades to its
rules fallback is scored for what the caller would really get — and counted as
degraded. The cache is bypassed: every answer is computed.

| plugin kind | dataset | metrics |
|---|---|---|
| labels (sentiment, classify) | TSV `label<TAB>text` | accuracy, per-class counts |
| summarize | JSONL `{text, facts}` | key-fact retention, invented sentences (extractive) |
| translate | TSV (see :func:`load_translations`) | chrF (corpus and mean), glossary kept |

Every version also reports items, errors, degraded answers, which version
answered, and mean latency.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from brickwork.contracts.errors import BrickworkError, InvalidRequestError
from brickwork.contracts.request import Envelope, Request
from brickwork.runtime.orchestrator import Orchestrator

__all__ = [
    "KINDS",
    "SENTIMENT_LABELS",
    "Evaluation",
    "LabelledText",
    "Progress",
    "SummaryCase",
    "TranslationCase",
    "VersionReport",
    "chrf",
    "corpus_chrf",
    "evaluate_labels",
    "evaluate_summaries",
    "evaluate_translations",
    "evaluator_for",
    "fact_retained",
    "invented_sentences",
    "load_labelled",
    "load_summaries",
    "load_translations",
    "resolve_versions",
]

#: Called once for every item evaluated (per version).
Progress = Callable[[], None]

#: Dataset labels → sentiment output labels (Pang & Lee's set says pos/neg).
SENTIMENT_LABELS: Mapping[str, str] = {"pos": "positive", "neg": "negative", "neu": "neutral"}

#: Fields a plugin input may use for the candidate labels (classify is zero-shot).
_LABEL_FIELDS = ("labels", "candidates", "categories")


# --- datasets ----------------------------------------------------------------


@dataclass(frozen=True)
class LabelledText:
    label: str
    text: str


@dataclass(frozen=True)
class SummaryCase:
    """A text and its key facts; a fact is kept when all its terms are in the summary."""

    id: str
    text: str
    facts: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class TranslationCase:
    source_language: str
    target_language: str
    text: str
    reference: str
    glossary: tuple[str, ...] = ()


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequestError(f"cannot read dataset {path}: {exc.strerror}") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def load_labelled(path: Path) -> list[LabelledText]:
    """``label<TAB>text`` lines; a first line ``label<TAB>text`` is a header."""
    items = []
    for n, line in _lines(path):
        label, sep, text = line.partition("\t")
        if not sep or not label.strip() or not text.strip():
            raise InvalidRequestError(f"{path}:{n}: expected 'label<TAB>text'")
        if n == 1 and (label.strip().lower(), text.strip().lower()) == ("label", "text"):
            continue
        items.append(LabelledText(label.strip(), text.strip()))
    return items


def load_summaries(path: Path) -> list[SummaryCase]:
    """JSON lines ``{"id", "text", "facts": [[term, ...] | term, ...]}``."""
    cases = []
    for n, line in _lines(path):
        try:
            row = json.loads(line)
            facts = tuple(
                (fact,) if isinstance(fact, str) else tuple(str(t) for t in fact) for fact in row["facts"]
            )
            cases.append(SummaryCase(str(row.get("id", n)), str(row["text"]), facts))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequestError(f"{path}:{n}: expected {{text, facts}} JSON ({exc})") from None
    return cases


def load_translations(path: Path) -> list[TranslationCase]:
    """TSV with a header: ``source_language, target_language, text, reference[, glossary]``;
    glossary terms are separated by ``|``."""
    rows = _lines(path)
    if not rows:
        return []
    header = [h.strip() for h in rows[0][1].split("\t")]
    needed = ["source_language", "target_language", "text", "reference"]
    if header[:4] != needed:
        raise InvalidRequestError(f"{path}:1: the header must start with {'<TAB>'.join(needed)}")
    cases = []
    for n, line in rows[1:]:
        cells = line.split("\t")
        if len(cells) < 4:
            raise InvalidRequestError(f"{path}:{n}: expected {len(header)} tab-separated cells")
        glossary = tuple(t.strip() for t in cells[4].split("|") if t.strip()) if len(cells) > 4 else ()
        source, target, text, reference = (c.strip() for c in cells[:4])
        cases.append(TranslationCase(source, target, text, reference, glossary))
    return cases


# --- metrics -----------------------------------------------------------------


def _char_ngrams(text: str, order: int) -> list[Counter[str]]:
    text = "".join(text.split())  # chrF ignores whitespace
    return [Counter(text[i : i + n] for i in range(len(text) - n + 1)) for n in range(1, order + 1)]


def _chrf_stats(hypothesis: str, reference: str, order: int) -> list[int]:
    stats: list[int] = []
    for h, r in zip(_char_ngrams(hypothesis, order), _char_ngrams(reference, order), strict=True):
        stats += [sum(h.values()), sum(r.values()), sum((h & r).values())]
    return stats


def _chrf_score(stats: Sequence[int], order: int, beta: float) -> float:
    # sacreBLEU 2.x's default: precision and recall averaged over the orders that
    # have n-grams on both sides, then one F-beta (chrF2 with beta = 2).
    precision = recall = 0.0
    effective = 0
    for i in range(order):
        hyp, ref, match = stats[3 * i : 3 * i + 3]
        if hyp > 0 and ref > 0:
            precision += match / hyp
            recall += match / ref
            effective += 1
    if effective == 0:
        return 0.0
    precision /= effective
    recall /= effective
    if precision + recall == 0:
        return 0.0
    factor = beta**2
    return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


def chrf(hypothesis: str, reference: str, *, order: int = 6, beta: float = 2.0) -> float:
    """Sentence chrF (0–100): character n-gram F-score, as sacreBLEU computes it."""
    return _chrf_score(_chrf_stats(hypothesis, reference, order), order, beta)


def corpus_chrf(
    hypotheses: Sequence[str], references: Sequence[str], *, order: int = 6, beta: float = 2.0
) -> float:
    """Corpus chrF: n-gram statistics summed over all segments, then one score."""
    if len(hypotheses) != len(references):
        raise ValueError("one reference per hypothesis")
    total = [0] * (3 * order)
    for h, r in zip(hypotheses, references, strict=True):
        total = [a + b for a, b in zip(total, _chrf_stats(h, r, order), strict=True)]
    return _chrf_score(total, order, beta)


def _contains(text: str, term: str) -> bool:
    head = r"(?<!\w)" if re.match(r"\w", term) else ""
    tail = r"(?!\w)" if re.search(r"\w$", term) else ""
    return re.search(head + re.escape(term) + tail, text, re.IGNORECASE) is not None


def fact_retained(summary: str, fact: Sequence[str]) -> bool:
    """Every key term of ``fact`` is in ``summary`` (whole words, any case)."""
    return all(_contains(summary, term) for term in fact)


def invented_sentences(points: Sequence[str], source: str) -> list[str]:
    """The points of an extractive summary that are not verbatim in ``source``."""
    return [p for p in points if p.strip() and p.strip() not in source]


# --- reports -----------------------------------------------------------------

Metric = float | int | str


@dataclass
class VersionReport:
    """How one plugin version did on a dataset."""

    ref: str
    items: int = 0
    errors: int = 0
    degraded: int = 0
    answered_by: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    metrics: dict[str, Metric] = field(default_factory=dict)

    @property
    def mean_latency_ms(self) -> float:
        return sum(self.latencies_ms) / len(self.latencies_ms) if self.latencies_ms else 0.0

    def rows(self) -> dict[str, Metric]:
        """Metrics first, then the operational counts, for a table."""
        answered = ", ".join(f"{ref}×{n}" for ref, n in sorted(self.answered_by.items())) or "-"
        errors = ", ".join(f"{code}×{n}" for code, n in sorted(self.error_codes.items()))
        return {
            **self.metrics,
            "items": self.items,
            "degraded": self.degraded,
            "errors": f"{self.errors} ({errors})" if self.errors else 0,
            "answered by": answered,
            "mean latency ms": round(self.mean_latency_ms, 1),
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_ms")
        data["mean_latency_ms"] = self.mean_latency_ms
        data["answered_by"] = dict(self.answered_by)
        data["error_codes"] = dict(self.error_codes)
        return data


@dataclass
class Evaluation:
    plugin: str
    kind: str
    reports: list[VersionReport]

    def to_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "kind": self.kind, "versions": [r.to_dict() for r in self.reports]}


def resolve_versions(runtime: Orchestrator, plugin: str, versions: Sequence[str] = ()) -> list[str]:
    """Exact refs for ``versions`` of ``plugin`` (all registered versions when empty)."""
    if not versions:
        entries = runtime.registry.versions(plugin)
        if not entries:
            runtime.registry.resolve(plugin)  # raises the registry's own "not found"
        return [e.ref for e in entries]
    return [runtime.registry.resolve(f"{plugin}@{v}").ref for v in versions]


async def _run_version(
    runtime: Orchestrator,
    ref: str,
    inputs: Sequence[dict[str, Any]],
    score: Callable[[int, Envelope | None], None],
    progress: Progress | None,
    tenant: str,
) -> VersionReport:
    """Every input through ``ref``; ``score(i, envelope)`` sees each answer (``None``
    when the request failed)."""
    report = VersionReport(ref)
    for i, data in enumerate(inputs):
        report.items += 1
        envelope: Envelope | None = None
        started = time.perf_counter()
        try:
            envelope = await runtime.handle(Request(plugin=ref, input=data, tenant=tenant, cache_bypass=True))
        except BrickworkError as exc:
            report.errors += 1
            report.error_codes[exc.code] += 1
        else:
            report.latencies_ms.append((time.perf_counter() - started) * 1000)
            report.degraded += envelope.degraded
            report.answered_by[f"{envelope.plugin}@{envelope.version}"] += 1
        score(i, envelope)
        if progress is not None:
            progress()
    return report


# --- evaluations -------------------------------------------------------------


async def evaluate_labels(
    runtime: Orchestrator,
    plugin: str,
    examples: Sequence[LabelledText],
    *,
    versions: Sequence[str] = (),
    label_map: Mapping[str, str] | None = None,
    output_field: str = "label",
    progress: Progress | None = None,
    tenant: str = "eval",
) -> Evaluation:
    """Accuracy of a labelling plugin (sentiment, classify) on ``examples``.

    Gold labels go through ``label_map`` (for ``sentiment``, :data:`SENTIMENT_LABELS`
    by default); labels compare ignoring case. A plugin whose input takes the
    candidate labels (zero-shot classify) gets the dataset's labels, sorted.
    An error counts as a wrong answer.
    """
    if label_map is None:
        label_map = SENTIMENT_LABELS if plugin == "sentiment" else {}
    gold = [label_map.get(e.label, e.label).casefold() for e in examples]
    refs = resolve_versions(runtime, plugin, versions)
    inputs_by_ref = {ref: _label_inputs(runtime, ref, examples, sorted(set(gold))) for ref in refs}

    async def one(ref: str) -> VersionReport:
        correct: Counter[str] = Counter()
        predicted: Counter[str] = Counter()

        def score(i: int, envelope: Envelope | None) -> None:
            answer = envelope.output.get(output_field) if envelope is not None else None
            label = str(answer).casefold() if answer is not None else "(error)"
            predicted[label] += 1
            correct[label] += label == gold[i]

        report = await _run_version(runtime, ref, inputs_by_ref[ref], score, progress, tenant)
        right = sum(correct.values())
        report.metrics["accuracy"] = round(right / len(examples), 4) if examples else 0.0
        report.metrics["correct"] = f"{right}/{len(examples)}"
        for label in sorted(set(gold) | set(predicted)):
            report.metrics[f"{label}: right/gold/predicted"] = (
                f"{correct[label]}/{gold_counts[label]}/{predicted[label]}"
            )
        return report

    gold_counts = Counter(gold)
    reports = [await one(ref) for ref in refs]
    return Evaluation(plugin, "labels", reports)


def _label_inputs(
    runtime: Orchestrator, ref: str, examples: Sequence[LabelledText], labels: list[str]
) -> list[dict[str, Any]]:
    fields = runtime.registry.resolve(ref).cls.input_type.model_fields
    extra: dict[str, Any] = {}
    for name in _LABEL_FIELDS:
        if name in fields:
            extra[name] = labels
            break
    return [{"text": e.text, **extra} for e in examples]


async def evaluate_summaries(
    runtime: Orchestrator,
    plugin: str,
    cases: Sequence[SummaryCase],
    *,
    versions: Sequence[str] = (),
    length: str | int = "medium",
    progress: Progress | None = None,
    tenant: str = "eval",
) -> Evaluation:
    """Key-fact retention of summaries, and invented sentences in extractive ones.

    ``retention`` is the mean, over texts, of the share of key facts whose terms
    all appear in the summary. ``invented`` counts extractive summaries with a
    sentence that is not verbatim in the text (it must stay 0).
    """
    refs = resolve_versions(runtime, plugin, versions)
    inputs = [{"text": c.text, "length": length} for c in cases]

    async def one(ref: str) -> VersionReport:
        shares: list[float] = []
        counts: Counter[str] = Counter()
        methods: Counter[str] = Counter()

        def score(i: int, envelope: Envelope | None) -> None:
            case = cases[i]
            summary = str(envelope.output.get("summary", "")) if envelope is not None else ""
            facts = [fact_retained(summary, fact) for fact in case.facts]
            counts["kept"] += sum(facts)
            counts["facts"] += len(facts)
            shares.append(sum(facts) / len(facts) if facts else 1.0)
            counts["words"] += len(summary.split())
            if envelope is None:
                return
            method = str(envelope.output.get("method", "?"))
            methods[method] += 1
            if method == "extractive":
                points = envelope.output.get("bullets") or _sentences(summary)
                counts["invented"] += bool(invented_sentences(points, case.text))

        report = await _run_version(runtime, ref, inputs, score, progress, tenant)
        report.metrics["retention"] = round(sum(shares) / len(shares), 4) if shares else 0.0
        report.metrics["facts kept"] = f"{counts['kept']}/{counts['facts']}"
        report.metrics["invented (extractive)"] = counts["invented"]
        report.metrics["mean words"] = round(counts["words"] / len(cases), 1) if cases else 0.0
        report.metrics["methods"] = ", ".join(f"{m}×{n}" for m, n in sorted(methods.items())) or "-"
        return report

    reports = [await one(ref) for ref in refs]
    return Evaluation(plugin, "summarize", reports)


def _sentences(text: str) -> list[str]:
    from brickwork.plugin_api import sentence_spans

    return [s.text for s in sentence_spans(text)]


async def evaluate_translations(
    runtime: Orchestrator,
    plugin: str,
    cases: Sequence[TranslationCase],
    *,
    versions: Sequence[str] = (),
    progress: Progress | None = None,
    tenant: str = "eval",
) -> Evaluation:
    """chrF of translations against references, and how often glossary terms were kept.

    A failed item is scored as an empty translation (chrF 0 for it).
    """
    refs = resolve_versions(runtime, plugin, versions)
    inputs = [
        {
            "text": c.text,
            "target_language": c.target_language,
            "source_language": c.source_language,
            "glossary": list(c.glossary),
        }
        for c in cases
    ]

    async def one(ref: str) -> VersionReport:
        hypotheses = [""] * len(cases)
        counts: Counter[str] = Counter()
        quality: Counter[str] = Counter()

        def score(i: int, envelope: Envelope | None) -> None:
            if envelope is None:
                return
            out = envelope.output
            hypotheses[i] = str(out.get("translation", ""))
            counts["translated"] += bool(out.get("translated"))
            quality[str(out.get("quality", "?"))] += 1
            if cases[i].glossary:
                counts["with glossary"] += 1
                counts["glossary kept"] += bool(out.get("glossary_kept"))

        report = await _run_version(runtime, ref, inputs, score, progress, tenant)
        references = [c.reference for c in cases]
        sentence = [chrf(h, r) for h, r in zip(hypotheses, references, strict=True)]
        report.metrics["chrF"] = round(corpus_chrf(hypotheses, references), 2)
        report.metrics["mean sentence chrF"] = round(sum(sentence) / len(sentence), 2) if cases else 0.0
        report.metrics["translated"] = f"{counts['translated']}/{len(cases)}"
        report.metrics["glossary kept"] = f"{counts['glossary kept']}/{counts['with glossary']}"
        report.metrics["quality"] = ", ".join(f"{q}×{n}" for q, n in sorted(quality.items())) or "-"
        return report

    reports = [await one(ref) for ref in refs]
    return Evaluation(plugin, "translate", reports)


#: Plugin name → (loader, evaluator) for the ``brickwork eval`` command.
Evaluator = Callable[..., Coroutine[Any, Any, Evaluation]]
KINDS: Mapping[str, tuple[Callable[[Path], Sequence[Any]], Evaluator]] = {
    "summarize": (load_summaries, evaluate_summaries),
    "translate": (load_translations, evaluate_translations),
}


def evaluator_for(plugin: str) -> tuple[Callable[[Path], Sequence[Any]], Evaluator]:
    """How to load a dataset for ``plugin`` and evaluate it (labels unless known otherwise)."""
    return KINDS.get(plugin, (load_labelled, evaluate_labels))
