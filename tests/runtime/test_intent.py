"""Intent routing with the real e5 embedder over a handful of stand-in plugins:
routes by what the text is about, abstains on off-topic text, explains itself."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, Field

from brickwork.contracts.errors import NoRouteError, ProviderUnavailableError, http_status
from brickwork.contracts.plugin import Context, Example, Plugin, PluginInput, PluginOutput
from brickwork.contracts.provider import EmbedRequest
from brickwork.contracts.request import Request
from brickwork.providers.e5 import E5Embedder
from brickwork.runtime.intent import (
    IntentRouter,
    ProviderEmbedder,
    ThreadedEmbedder,
    balanced_cut,
    request_text,
)
from brickwork.runtime.models import Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.registry import Registry
from brickwork.runtime.routing import MetadataRule, Router
from brickwork.testing import FakeProvider

Build = Callable[..., Orchestrator]


# --- stand-in plugins ------------------------------------------------------------------


class TextIn(PluginInput):
    text: str = Field(min_length=1)


class TranslateIn(PluginInput):
    text: str = Field(min_length=1)
    target_language: str


class LabelsIn(PluginInput):
    text: str
    labels: list[str] = Field(min_length=2)


class Who(PluginOutput):
    plugin: str


def standin(
    plugin_name: str,
    about: str,
    inputs: Sequence[str | Mapping[str, Any]],
    input_model: type[BaseModel] = TextIn,
    *,
    text_routable: bool = True,
) -> type[Plugin[Any, Who]]:
    class StandIn(Plugin[input_model, Who]):  # type: ignore[valid-type]
        name = plugin_name
        version = "1.0.0"
        description = about
        examples = tuple(Example(i) for i in inputs)
        routable: ClassVar[bool] = text_routable

        async def run(self, input: BaseModel, ctx: Context) -> Who:
            return Who(plugin=self.name)

    return StandIn


SENTIMENT_EXAMPLES = [
    "I love this phone, the battery is great.",
    "This was a terrible, boring waste of time.",
    "Is this review positive or negative?",
    "The service was slow and the staff were rude.",
]
SENTIMENT = standin(
    "sentiment",
    "Sentiment of a text: positive, negative or neutral, with a score. Tells how the writer feels.",
    SENTIMENT_EXAMPLES,
)
SUMMARIZE = standin(
    "summarize",
    "Summarizes a text: a short summary of an article, a report, notes or an email, keeping the key facts.",
    [
        "The city library will close for renovation from May to August. Books can be returned at "
        "the town hall, and the reading club will meet in the community centre.",
        "Summarize: quarterly sales rose 4%, costs fell, and the board approved a new dividend.",
        "Please give me a short summary of this report on water quality in the region.",
    ],
)
TRANSLATE = standin(
    "translate",
    "Translates text from one language into another: French, Spanish, German, English and more.",
    [
        {"text": "Bonjour, je cherche la gare.", "target_language": "en"},
        {"text": "Translate to German: good morning, how are you?", "target_language": "de"},
        {"text": "¿Dónde está el baño?", "target_language": "en"},
        {"text": "What is 'thank you' in Italian?", "target_language": "it"},
    ],
    TranslateIn,
)
CLASSIFY = standin(
    "classify",
    "Classifies a text into labels given with the request.",
    [
        {"text": "The striker scored twice.", "labels": ["sports", "politics"]},
        {"text": "Parliament passed the budget.", "labels": ["sports", "politics"]},
    ],
    LabelsIn,
    text_routable=False,
)
PLUGINS = (SENTIMENT, SUMMARIZE, TRANSLATE, CLASSIFY)

OFF_TOPIC = [
    "Set an alarm for 7 tomorrow.",
    "Write a haiku about autumn leaves.",
    "Tell me a joke about cats.",
]


class CountingEmbedder:
    """The real embedder, with every call it gets written down."""

    def __init__(self, inner: ThreadedEmbedder) -> None:
        self.inner = inner
        self.calls: list[tuple[list[str], str]] = []

    async def embed(self, texts: Sequence[str], purpose: Literal["query", "passage"]) -> list[list[float]]:
        self.calls.append((list(texts), purpose))
        return await self.inner.embed(texts, purpose)


@pytest.fixture(scope="module")
def e5() -> ThreadedEmbedder:
    return ThreadedEmbedder(E5Embedder(threads=1))


def registry_of(*plugins: type[Plugin[Any, Any]]) -> Registry:
    registry = Registry()
    for cls in plugins:
        registry.add(cls)
    return registry


@pytest.fixture(scope="module")
def shared(e5: ThreadedEmbedder) -> IntentRouter:
    """One router for the tests that only read (the index is built once)."""
    return IntentRouter(registry_of(*PLUGINS), e5)


# --- routing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "plugin"),
    [
        ("What a fantastic film, I enjoyed every minute of it!", "sentiment"),
        ("Is this customer email angry or happy: my parcel never arrived and nobody answers.", "sentiment"),
        (
            "Can you summarize the key facts of this article for me? The bridge will close for repairs in May.",
            "summarize",
        ),
        (
            "Please give me a short summary of this email from the landlord about the water outage next week.",
            "summarize",
        ),
    ],
)
async def test_a_request_goes_to_the_plugin_its_text_is_about(
    shared: IntentRouter, text: str, plugin: str
) -> None:
    decision = await shared.route(Request(input=text))

    assert decision is not None
    assert (decision.method, decision.ref) == ("intent", plugin)
    # Every plugin that competes for plain text is scored; classify (labels needed) is not.
    assert set(decision.scores) == {"sentiment", "summarize", "translate"}
    assert max(decision.scores, key=decision.scores.__getitem__) == plugin


@pytest.mark.parametrize("text", OFF_TOPIC)
async def test_off_topic_text_abstains_and_lists_the_candidates(shared: IntentRouter, text: str) -> None:
    with pytest.raises(NoRouteError) as caught:
        await shared.route(Request(input=text))

    error = caught.value
    assert http_status(error) == 422
    assert error.details["matched"] is None
    candidates = error.details["candidates"]
    assert [c["plugin"] for c in candidates] != []
    assert {c["plugin"] for c in candidates} == {"sentiment", "summarize", "translate"}
    assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)
    assert all(c["score"] < c["threshold"] for c in candidates)
    assert "name a plugin or configure a default" in error.message


async def test_plain_text_for_a_plugin_that_needs_more_input_says_which_matched(shared: IntentRouter) -> None:
    with pytest.raises(NoRouteError) as caught:
        await shared.route(Request(input="Translate into French: where is the train station?"))

    # Not sent to the runner-up: the caller is told what it looked like and what is missing.
    assert caught.value.details["matched"] == "translate"
    assert "'translate'" in caught.value.message
    translate = next(c for c in caught.value.details["candidates"] if c["plugin"] == "translate")
    assert translate["fits"] is False
    assert translate["score"] >= translate["threshold"]


async def test_structured_input_goes_only_to_plugins_whose_contract_takes_it(shared: IntentRouter) -> None:
    labelled = Request(input={"text": "The striker scored a late winner.", "labels": ["sports", "politics"]})
    translate = Request(input={"text": "Translate this: Ich habe Hunger.", "target_language": "en"})

    to_classify = await shared.route(labelled)
    to_translate = await shared.route(translate)

    assert to_classify is not None
    assert (to_classify.method, to_classify.ref) == ("intent", "classify")
    assert to_translate is not None
    assert to_translate.ref == "translate"
    # The same text without labels never reaches classify, which opted out of plain text.
    verdict = await shared.explain(Request(input="The striker scored a late winner."))
    assert "classify" not in verdict.scores()
    assert verdict.chosen != "classify"


async def test_a_configured_default_takes_what_intent_abstains_on(e5: ThreadedEmbedder) -> None:
    registry = registry_of(*PLUGINS)
    intent = IntentRouter(registry, e5, default="summarize")
    orchestrator = Orchestrator(registry, router=Router(strategies=[intent]))

    envelope = await orchestrator.handle({"input": OFF_TOPIC[0]})

    assert envelope.plugin == "summarize"
    assert envelope.route.method == "default"
    assert envelope.route.ref == "summarize"
    assert set(envelope.route.scores) == {"sentiment", "summarize", "translate"}  # why it abstained


async def test_on_abstain_pass_leaves_the_request_to_the_routers_default(e5: ThreadedEmbedder) -> None:
    intent = IntentRouter(registry_of(*PLUGINS), e5, on_abstain="pass")
    router = Router(strategies=[intent], default="sentiment")

    decision = await router.route(Request(input=OFF_TOPIC[1]))

    assert (decision.method, decision.ref, decision.scores) == ("default", "sentiment", {})


async def test_a_metadata_rule_wins_over_intent_without_embedding(e5: ThreadedEmbedder) -> None:
    embedder = CountingEmbedder(e5)
    intent = IntentRouter(registry_of(*PLUGINS), embedder)
    router = Router([MetadataRule("billing", {"team": "billing"}, "summarize")], [intent])

    decision = await router.route(
        Request(input="What a fantastic film, I enjoyed every minute of it!", metadata={"team": "billing"})
    )

    assert (decision.method, decision.ref, decision.rule) == ("metadata", "summarize", "billing")
    assert embedder.calls == []


async def test_the_decision_is_in_the_envelope_and_the_record(e5: ThreadedEmbedder) -> None:
    registry = registry_of(*PLUGINS)
    recorder = MemoryRecorder()
    orchestrator = Orchestrator(
        registry, router=Router(strategies=[IntentRouter(registry, e5)]), recorders=[recorder]
    )

    envelope = await orchestrator.handle({"input": "I hate waiting in line, this shop is the worst."})

    assert envelope.output == {"plugin": "sentiment"}
    assert (envelope.plugin, envelope.version) == ("sentiment", "1.0.0")
    assert envelope.route.method == "intent"
    assert envelope.route.ref == "sentiment"
    assert envelope.route.scores["sentiment"] > envelope.route.scores["summarize"]
    assert recorder.records[-1].route == envelope.route


async def test_no_text_to_read_is_not_intents_call(shared: IntentRouter) -> None:
    router = Router(strategies=[shared], default="summarize")

    decision = await router.route(Request(input={"labels": ["a", "b"]}))

    assert (decision.method, decision.ref) == ("default", "summarize")
    assert request_text("  ") is None
    assert request_text({"question": "why?", "text": 3}) == "why?"
    assert request_text({"query": "where"}) == "where"
    assert request_text({"text": "first", "query": "second"}) == "first"


# --- the index ----------------------------------------------------------------------------


async def test_the_index_follows_the_registry(e5: ThreadedEmbedder) -> None:
    registry = registry_of(SENTIMENT, SUMMARIZE)
    intent = IntentRouter(registry, e5)
    text = Request(input="Translate to Spanish: I will be late because of the traffic.")

    first = await intent.explain(text)
    await intent.explain(text)
    assert intent.builds == 1  # built lazily, once, while nothing changes
    assert set(first.scores()) == {"sentiment", "summarize"}

    registry.add(TRANSLATE)
    added = await intent.explain(text)
    assert intent.builds == 2
    assert added.candidates[0].plugin == "translate"

    registry.remove("translate@1.0.0")
    removed = await intent.explain(text)
    assert intent.builds == 3
    assert set(removed.scores()) == {"sentiment", "summarize"}

    intent.close()
    registry.add(TRANSLATE)
    await intent.explain(text)
    assert intent.builds == 3  # no longer following


async def test_thresholds_are_calibrated_from_the_examples(e5: ThreadedEmbedder) -> None:
    other_examples = standin(
        "sentiment",
        "Sentiment of a text: positive, negative or neutral, with a score. Tells how the writer feels.",
        ["Worst purchase ever.", "Such a lovely day at the beach!", "Meh."],
    )
    first = {
        p.name: p for p in await IntentRouter(registry_of(SENTIMENT, SUMMARIZE, TRANSLATE), e5).profiles()
    }
    second = {
        p.name: p
        for p in await IntentRouter(registry_of(other_examples, SUMMARIZE, TRANSLATE), e5).profiles()
    }

    assert first["sentiment"].examples == tuple(SENTIMENT_EXAMPLES)
    assert len(first["sentiment"].positives) == 4  # one leave-one-out score per example
    assert len(second["sentiment"].positives) == 3
    assert first["sentiment"].threshold != second["sentiment"].threshold
    # Every threshold is a cut between what its examples scored and what others did.
    for profile in first.values():
        assert min(profile.positives) - 0.1 < profile.threshold < max(profile.positives) + 0.1


async def test_the_floor_bounds_every_threshold(e5: ThreadedEmbedder) -> None:
    intent = IntentRouter(registry_of(*PLUGINS), e5, floor=0.5)

    assert {p.threshold for p in await intent.profiles()} == {0.5}
    with pytest.raises(NoRouteError):
        await intent.route(Request(input="What a fantastic film, I enjoyed every minute of it!"))


async def test_a_plugin_without_examples_gets_the_global_threshold(e5: ThreadedEmbedder) -> None:
    bare = standin("weather", "Weather forecasts for a city: rain, sun, wind and temperature.", [])
    intent = IntentRouter(registry_of(SENTIMENT, SUMMARIZE, bare), e5)

    profiles = {p.name: p for p in await intent.profiles()}
    index = await intent.index()

    assert profiles["weather"].examples == ()
    assert index.global_threshold is not None
    assert profiles["weather"].threshold == pytest.approx(max(index.global_threshold, intent.floor))


def test_balanced_cut() -> None:
    # Separable: the middle of the gap between the highest negative and the lowest positive.
    assert balanced_cut([0.5, 0.7, 0.9], [0.1, 0.2, 0.3]) == pytest.approx(0.4)
    # One positive among many negatives still counts half: it is not sacrificed.
    assert balanced_cut([0.35], [0.1, 0.2, 0.3, 0.4, 0.5]) < 0.35
    # Only positives: just below the lowest.
    assert balanced_cut([0.2, 0.6], []) < 0.2


# --- embedders ----------------------------------------------------------------------------


async def test_provider_embedder_goes_through_the_provider_table() -> None:
    fake = FakeProvider("local")
    providers = Providers()
    providers.add(fake)
    intent = IntentRouter(
        registry_of(SENTIMENT, SUMMARIZE), ProviderEmbedder(providers), background=(), max_chars=20
    )

    verdict = await intent.explain(Request(input="x" * 100))

    requests = [c for c in fake.calls if isinstance(c, EmbedRequest)]
    assert {r.model for r in requests} == {"e5-small"}
    assert [r.purpose for r in requests] == ["passage", "query", "query"]  # descriptions, examples, request
    assert requests[-1].texts == ["x" * 20]  # cut to max_chars
    assert verdict.text == "x" * 20
    assert len(verdict.candidates) == 2


async def test_threaded_embedder_runs_off_the_event_loop() -> None:
    seen: list[int] = []

    class Blocking:
        def embed(
            self, texts: Sequence[str], purpose: Literal["query", "passage"] = "query"
        ) -> list[list[float]]:
            seen.append(threading.get_ident())
            return [[1.0, 0.0] for _ in texts]

    vectors = await ThreadedEmbedder(Blocking()).embed(["a", "b"], "query")

    assert vectors == [[1.0, 0.0], [1.0, 0.0]]
    assert len(seen) == 1
    assert seen[0] != threading.get_ident()


class Down:
    async def embed(self, texts: Sequence[str], purpose: Literal["query", "passage"]) -> list[list[float]]:
        raise ProviderUnavailableError("fake: the embedding model is down")


async def test_when_the_embedder_is_down_the_default_takes_the_request() -> None:
    registry = registry_of(SENTIMENT)

    decision = await IntentRouter(registry, Down(), default="sentiment").route(Request(input="hello"))

    assert (decision.method, decision.ref, decision.scores) == ("default", "sentiment", {})
    with pytest.raises(ProviderUnavailableError):
        await IntentRouter(registry, Down()).route(Request(input="hello"))


async def test_structured_input_no_plugin_takes_is_an_error_that_says_so(shared: IntentRouter) -> None:
    with pytest.raises(NoRouteError) as caught:
        await shared.route(Request(input={"text": "What a fantastic film!", "stars": 5}))

    assert all(c["fits"] is False for c in caught.value.details["candidates"])
    assert "input does not fit" in caught.value.message
