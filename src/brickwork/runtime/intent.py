"""Intent routing: a request without a plugin ref goes to the plugin its text is about.

:class:`IntentRouter` is a :class:`~brickwork.runtime.routing.RouteStrategy`: the
:class:`~brickwork.runtime.routing.Router` asks it after the metadata rules. It
embeds the request's text and compares it with each plugin's description and the
texts of its examples; a plugin is chosen only when its score reaches a threshold
calibrated from the examples, else the router abstains (a configured default
plugin, or :class:`~brickwork.contracts.errors.NoRouteError` listing the candidates
with their scores). The decision and every candidate's score go in the envelope's
``route``.

Wiring::

    intent = IntentRouter(registry, ProviderEmbedder(providers, "local:e5-small"),
                          default=config.routing.default)
    router = Router(rules, strategies=[intent], default=config.routing.default)

**Which plugins are candidates.** One per plugin name: its default version (``prod``
label, else the highest release).

- Plain text (a string, or a dict with only text fields): every plugin competes,
  except those whose class says ``routable = False`` — plugins that text alone
  cannot describe a request for (``classify`` needs its labels). If the winner's
  input needs more than the text (``translate`` needs a target language), the
  router abstains and says which plugin matched (``details["matched"]``: ask the
  caller for the rest) rather than sending the request to the runner-up.
- Structured input (a dict with more fields than the text): only the plugins whose
  contract validates it compete, ``routable`` or not, so
  ``{"text": ..., "labels": [...]}`` can reach ``classify``.

The winner is the best-scoring competitor that reaches its own threshold.

**The request's text.** A string input, or the ``text``, ``question`` or ``query``
field of a dict input (the first that is a string); without one, the router does
not decide (the next strategy or the default does). Only the first
:attr:`IntentRouter.max_chars` characters are embedded.

**The score** of plugin *p* for text *q* (embedding cosines ``cos``)::

    sim(q, p)   = (max over description sentences d of cos(q, d)
                   + max over examples e of cos(q, e)) / 2
    score(q, p) = sim(q, p) - max over background texts b of cos(q, b)

The background is a set of generic requests no plugin serves (small talk, trivia,
coding, scheduling…: :data:`BACKGROUND`), so a score above 0 means "closer to this
plugin than to anything generic". Without a background the score is ``sim``.
Description sentences are embedded as passages (each on its own, so that notes such
as "falls back to …" do not blur what the plugin does), examples, background and
requests as queries. A plugin without example texts uses its description twice.

**Calibration.** For each plugin, from the examples and the background:

1. positives: the score of each of its examples with that example left out of the
   plugin (leave-one-out); negatives: the scores for this plugin of every other
   plugin's examples and of the background texts (each left out of the background);
2. its own cut: the threshold minimising the balanced error
   ``missed positives / positives + accepted negatives / negatives``, in the middle
   of the widest gap among equally good cuts;
3. the same cut over every plugin's positives and negatives pooled gives a global
   threshold ``g``; a plugin with ``n`` examples gets ``(n · own + k · g) / (n + k)``
   (``k`` = :attr:`IntentRouter.shrinkage`, 5): few examples, close to the global cut;
4. never below :attr:`IntentRouter.floor`. A plugin with no example text gets ``g``
   (or :attr:`IntentRouter.default_threshold` when no plugin has examples).

The index (vectors and thresholds) is built on the first route and again after any
change to the registry (``Registry.listeners``). If the embedder fails (the
embedding model is down), a configured default takes the request; without one,
the embedder's error reaches the caller.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError

from brickwork.contracts.errors import BrickworkError, NoRouteError
from brickwork.contracts.plugin import Example
from brickwork.contracts.provider import EmbedRequest, ModelId
from brickwork.contracts.request import Request, RouteDecision
from brickwork.runtime.models import Providers
from brickwork.runtime.registry import Registry

__all__ = [
    "BACKGROUND",
    "TEXT_FIELDS",
    "Candidate",
    "Embedder",
    "IntentRouter",
    "IntentVerdict",
    "PluginProfile",
    "ProviderEmbedder",
    "SyncEmbedder",
    "ThreadedEmbedder",
    "request_text",
]

log = logging.getLogger(__name__)

Purpose = Literal["query", "passage"]
Matrix = NDArray[np.float64]

#: Fields of a dict input read as the request's text, in order.
TEXT_FIELDS = ("text", "question", "query")

#: Generic requests that no first-party plugin serves: the "none of these" class.
BACKGROUND: tuple[str, ...] = (
    "Hello, how are you today?",
    "Thanks, that's all for now.",
    "What time is it in Tokyo right now?",
    "Who painted the Mona Lisa?",
    "How many people live in Canada?",
    "What is the square root of 144?",
    "Solve this equation for x: 3x + 5 = 20.",
    "Write a short poem about the sea.",
    "Tell me a story about a dragon and a knight.",
    "Give me ideas for a birthday party for a seven-year-old.",
    "Write a SQL query that counts orders per customer.",
    "Why does my JavaScript code throw undefined is not a function?",
    "How do I install Python on Windows?",
    "What's a good recipe for vegetarian lasagna?",
    "How many calories are in a banana?",
    "Schedule a meeting with the design team next Tuesday at 10.",
    "Send an email to Maria saying I'll be late.",
    "Find me cheap flights from Berlin to Rome in June.",
    "Will it rain in London tomorrow?",
    "What are the opening hours of the museum?",
    "Recommend a podcast about history.",
    "Explain the theory of relativity in simple terms.",
    "What's the difference between a virus and a bacterium?",
    "Help me write a cover letter for a marketing job.",
    "Play some relaxing music.",
    "Turn off the lights in the living room.",
    "What's the exchange rate between dollars and euros?",
    "How do I change a flat tyre?",
)


# --- embedders -------------------------------------------------------------------


class Embedder(Protocol):
    """What the intent router embeds with: L2-normalisation is not required."""

    async def embed(self, texts: Sequence[str], purpose: Purpose) -> list[list[float]]: ...


class SyncEmbedder(Protocol):
    """A blocking embedder, such as :class:`brickwork.providers.e5.E5Embedder`."""

    def embed(self, texts: Sequence[str], purpose: Purpose = "query") -> list[list[float]]: ...


class ProviderEmbedder:
    """Embeds through the provider table, with ``model_id`` (``provider:model``).

    The provider is looked up on each call, so a provider added after the router
    was built (the local llama.cpp one, a remote one) is used as soon as it exists.
    """

    def __init__(self, providers: Providers, model_id: str = "local:e5-small") -> None:
        self.providers = providers
        self.model_id = ModelId.parse(model_id)

    async def embed(self, texts: Sequence[str], purpose: Purpose) -> list[list[float]]:
        provider = self.providers.get(self.model_id)
        request = EmbedRequest(model=self.model_id.model, texts=list(texts), purpose=purpose)
        return (await provider.embed(request)).vectors


class ThreadedEmbedder:
    """Runs a blocking embedder off the event loop (``asyncio.to_thread``).

    Args:
        embedder: the blocking embedder, such as
            :class:`~brickwork.providers.e5.E5Embedder` (the runtime names no provider:
            the caller that composes it passes one in).
    """

    def __init__(self, embedder: SyncEmbedder) -> None:
        self.embedder = embedder

    async def embed(self, texts: Sequence[str], purpose: Purpose) -> list[list[float]]:
        return await asyncio.to_thread(self.embedder.embed, list(texts), purpose)


# --- what the router tells ---------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One plugin's standing for one request."""

    plugin: str
    score: float
    threshold: float
    fits: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "score": round(self.score, 4),
            "threshold": round(self.threshold, 4),
            "fits": self.fits,
        }


@dataclass(frozen=True)
class IntentVerdict:
    """What intent routing made of one request.

    Attributes:
        text: the text that was embedded (``None``: the request has none).
        candidates: the plugins competing for this request, best score first.
        best: the best-scoring plugin that passed its threshold, if any.
        chosen: ``best`` when the request's input fits it, else ``None`` (abstain).
    """

    text: str | None
    candidates: tuple[Candidate, ...] = ()
    best: str | None = None
    chosen: str | None = None

    def scores(self) -> dict[str, float]:
        return {c.plugin: round(c.score, 4) for c in self.candidates}


@dataclass(frozen=True)
class PluginProfile:
    """One plugin as the router sees it: what it embedded and the threshold it derived."""

    name: str
    ref: str
    description: str
    examples: tuple[str, ...]
    threshold: float
    #: Competes for plain-text requests (the class did not say ``routable = False``).
    routable: bool = True
    #: Leave-one-out scores of its own examples (what the threshold had to let through).
    positives: tuple[float, ...] = ()


@dataclass
class _Index:
    generation: int
    profiles: list[PluginProfile]
    input_types: list[type[BaseModel]]
    descriptions: list[Matrix]  # per plugin: (description sentences, dim)
    examples: list[Matrix]  # per plugin: (examples, dim)
    background: Matrix | None  # (texts, dim)
    thresholds: Matrix  # (plugins,)
    global_threshold: float | None = None


# --- the router --------------------------------------------------------------------


def request_text(data: dict[str, Any] | str) -> str | None:
    """The text intent routing reads from a request input (see the module docs)."""
    if isinstance(data, str):
        return data if data.strip() else None
    for key in TEXT_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _example_text(example: Example) -> str | None:
    return request_text(example.input if isinstance(example.input, str) else dict(example.input))


def _fits(model: type[BaseModel], data: dict[str, Any] | str) -> bool:
    if isinstance(data, str):
        if "text" not in model.model_fields:
            return False
        data = {"text": data}
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


def _normalise(vectors: list[list[float]]) -> Matrix:
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2:
        matrix = matrix.reshape(len(vectors), -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _sentences(description: str) -> list[str]:
    """A description's sentences: each is compared on its own, so implementation
    notes after the first sentence ("falls back to …") do not blur what it does."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?;])\s+", description) if p.strip()]
    return parts or [description]


def _split(matrix: Matrix, sizes: Sequence[int]) -> list[Matrix]:
    out: list[Matrix] = []
    start = 0
    for size in sizes:
        out.append(matrix[start : start + size])
        start += size
    return out


def balanced_cut(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The threshold minimising missed-positive rate + accepted-negative rate.

    A value ``>= threshold`` is accepted. Among equally good cuts, the middle of the
    widest gap between neighbouring values.
    """
    if not positives and not negatives:
        raise ValueError("nothing to calibrate on")
    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    values = np.unique(np.concatenate([pos, neg]))
    edges = np.concatenate([[values[0] - 0.01], values, [values[-1] + 0.01]])
    cuts = (edges[:-1] + edges[1:]) / 2
    gaps = edges[1:] - edges[:-1]
    missed = (pos[None, :] < cuts[:, None]).sum(axis=1) / max(len(pos), 1)
    accepted = (neg[None, :] >= cuts[:, None]).sum(axis=1) / max(len(neg), 1)
    error = missed + accepted
    best = np.flatnonzero(np.isclose(error, error.min()))
    return float(cuts[best[np.argmax(gaps[best])]])


class IntentRouter:
    """Chooses a plugin from the request's text; see the module docs for the rules.

    Args:
        registry: the plugins to route to; the index follows its changes.
        embedder: an :class:`Embedder` (e.g. :class:`ProviderEmbedder`).
        default: plugin ref to route to when no plugin passes its threshold; the
            decision then says ``method="default"`` and still carries the scores.
        on_abstain: without a default, ``"error"`` raises :class:`NoRouteError`
            (with every candidate's score and threshold in ``details``); ``"pass"``
            returns ``None`` so the router's next strategy or default decides.
        floor: the lowest threshold calibration may give a plugin.
        shrinkage: how many examples' worth of weight the global threshold has.
        default_threshold: the threshold when no plugin has example texts.
        background: generic texts that no plugin should take (``()`` for none).
        max_chars: characters of the request's text embedded.
    """

    def __init__(
        self,
        registry: Registry,
        embedder: Embedder,
        *,
        default: str | None = None,
        on_abstain: Literal["error", "pass"] = "error",
        floor: float = -0.05,
        shrinkage: float = 5.0,
        default_threshold: float = 0.0,
        background: Sequence[str] = BACKGROUND,
        max_chars: int = 1_000,
    ) -> None:
        self.registry = registry
        self.embedder = embedder
        self.default = default
        self.on_abstain = on_abstain
        self.floor = floor
        self.shrinkage = shrinkage
        self.default_threshold = default_threshold
        self.background = tuple(background)
        self.max_chars = max_chars
        self._generation = 0
        self._index: _Index | None = None
        self._lock = asyncio.Lock()
        self.builds = 0  # how many times the index was built (for tests and metrics)
        registry.listeners.append(self._changed)

    def close(self) -> None:
        """Stop following the registry."""
        if self._changed in self.registry.listeners:
            self.registry.listeners.remove(self._changed)

    def _changed(self, what: str, ref: str) -> None:
        self._generation += 1

    # --- routing ----------------------------------------------------------------

    async def route(self, request: Request) -> RouteDecision | None:
        try:
            verdict = await self.explain(request)
        except BrickworkError as exc:
            if self.default is None:
                raise
            log.warning("intent routing unavailable (%s); routing to the default %s", exc.code, self.default)
            return RouteDecision(method="default", ref=self.default)
        if verdict.text is None or not verdict.candidates:
            return None  # nothing to read, or no plugin to offer: not intent's call
        if verdict.chosen is not None:
            return RouteDecision(method="intent", ref=verdict.chosen, scores=verdict.scores())
        if self.default is not None:
            return RouteDecision(method="default", ref=self.default, scores=verdict.scores())
        if self.on_abstain == "pass":
            return None
        if verdict.best is not None:
            message = (
                f"this request looks like one for {verdict.best!r}, but its input does not fit "
                f"{verdict.best}'s contract; name the plugin and give its input fields"
            )
        else:
            shown = ", ".join(
                f"{c.plugin} {c.score:.3f} < {c.threshold:.3f}"
                if c.score < c.threshold
                else f"{c.plugin}: input does not fit"
                for c in verdict.candidates[:3]
            )
            message = (
                f"no plugin is confident enough for this request ({shown}); "
                "name a plugin or configure a default"
            )
        raise NoRouteError(
            message,
            details={"candidates": [c.to_dict() for c in verdict.candidates], "matched": verdict.best},
        )

    async def explain(self, request: Request) -> IntentVerdict:
        """Every candidate's score and threshold for ``request``, and the choice."""
        text = request_text(request.input)
        if text is None:
            return IntentVerdict(text=None)
        index = await self.index()
        if not index.profiles:
            return IntentVerdict(text=text)
        text = text[: self.max_chars]
        query = _normalise(await self.embedder.embed([text], "query"))[0]
        scores = self._scores(index, query)
        # See the module docs: structured input picks its contract, plain text its topic.
        structured = isinstance(request.input, dict) and any(k not in TEXT_FIELDS for k in request.input)
        candidates = sorted(
            (
                Candidate(
                    plugin=profile.name,
                    score=float(scores[i]),
                    threshold=float(index.thresholds[i]),
                    fits=_fits(index.input_types[i], request.input),
                )
                for i, profile in enumerate(index.profiles)
                if structured or profile.routable
            ),
            key=lambda c: (-c.score, c.plugin),
        )
        passing = [c for c in candidates if c.score >= c.threshold and (c.fits or not structured)]
        best = passing[0] if passing else None
        return IntentVerdict(
            text=text,
            candidates=tuple(candidates),
            best=best.plugin if best else None,
            chosen=best.plugin if best is not None and best.fits else None,
        )

    # --- the index --------------------------------------------------------------

    async def profiles(self) -> list[PluginProfile]:
        """Every plugin the router knows, with its calibrated threshold (builds the index)."""
        return list((await self.index()).profiles)

    async def index(self) -> _Index:
        index = self._index
        if index is not None and index.generation == self._generation:
            return index
        async with self._lock:
            if self._index is None or self._index.generation != self._generation:
                self._index = await self._build(self._generation)
            return self._index

    async def _build(self, generation: int) -> _Index:
        # Read the registry before the first await: the index matches `generation`.
        plugins: list[tuple[PluginProfile, type[BaseModel]]] = []
        for name in self.registry.names():
            entry = self.registry.resolve(name)
            texts = tuple(t for t in (_example_text(e) for e in entry.cls.examples) if t is not None)
            profile = PluginProfile(
                name=name,
                ref=entry.ref,
                description=entry.cls.description.strip(),
                examples=tuple(t[: self.max_chars] for t in texts),
                threshold=self.default_threshold,
                routable=entry.cls.routable,
            )
            plugins.append((profile, entry.cls.input_type))
        self.builds += 1
        if not plugins:
            return _Index(generation, [], [], [], [], None, np.zeros(0))
        profiles = [p for p, _ in plugins]
        pieces = [_sentences(p.description) for p in profiles]
        sentence_vectors = _normalise(await self.embedder.embed([t for ps in pieces for t in ps], "passage"))
        descriptions = _split(sentence_vectors, [len(ps) for ps in pieces])
        flat = [text for p in profiles for text in p.examples]
        vectors = _normalise(await self.embedder.embed(flat, "query")) if flat else np.zeros((0, 0))
        examples = _split(vectors, [len(p.examples) for p in profiles])
        background = (
            _normalise(await self.embedder.embed(self.background, "query")) if self.background else None
        )
        index = _Index(
            generation=generation,
            profiles=profiles,
            input_types=[t for _, t in plugins],
            descriptions=descriptions,
            examples=examples,
            background=background,
            thresholds=np.full(len(profiles), self.default_threshold),
        )
        self._calibrate(index)
        return index

    def _scores(
        self,
        index: _Index,
        query: Matrix,
        *,
        leave_out: tuple[int, int] | None = None,
        background_out: int | None = None,
    ) -> Matrix:
        """Scores of one normalised query vector for every plugin.

        ``leave_out=(plugin, example)`` drops one example of one plugin;
        ``background_out`` drops one background text (for calibration).
        """
        described = [float((vectors @ query).max()) for vectors in index.descriptions]
        scores = np.empty(len(index.profiles))
        for i, vectors in enumerate(index.examples):
            sims = vectors @ query if len(vectors) else np.zeros(0)
            if leave_out is not None and leave_out[0] == i:
                sims = np.delete(sims, leave_out[1])
            best = float(sims.max()) if len(sims) else float(described[i])
            scores[i] = (described[i] + best) / 2
        if index.background is not None and len(index.background):
            sims = index.background @ query
            if background_out is not None:
                sims = np.delete(sims, background_out)
            if len(sims):
                scores -= float(sims.max())
        return scores

    def _calibrate(self, index: _Index) -> None:
        n = len(index.profiles)
        positives: list[list[float]] = [[] for _ in range(n)]
        negatives: list[list[float]] = [[] for _ in range(n)]
        for owner, vectors in enumerate(index.examples):
            for k, vector in enumerate(vectors):
                scores = self._scores(index, vector, leave_out=(owner, k))
                for i in range(n):
                    (positives if i == owner else negatives)[i].append(float(scores[i]))
        if index.background is not None:
            for j, vector in enumerate(index.background):
                scores = self._scores(index, vector, background_out=j)
                for i in range(n):
                    negatives[i].append(float(scores[i]))
        pooled_pos = [s for p in positives for s in p]
        pooled_neg = [s for p in negatives for s in p]
        global_cut = balanced_cut(pooled_pos, pooled_neg) if pooled_pos else None
        index.global_threshold = global_cut
        for i in range(n):
            if global_cut is None:
                threshold = self.default_threshold
            elif not positives[i]:
                threshold = global_cut
            else:
                own = balanced_cut(positives[i], negatives[i])
                weight = len(positives[i])
                threshold = (weight * own + self.shrinkage * global_cut) / (weight + self.shrinkage)
            threshold = max(threshold, self.floor)
            index.thresholds[i] = threshold
            index.profiles[i] = replace(
                index.profiles[i], threshold=threshold, positives=tuple(round(s, 4) for s in positives[i])
            )
