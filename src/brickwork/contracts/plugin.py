"""The plugin contract: ``Plugin[In, Out]`` and what a plugin may use at run time.

A plugin is a class with its name, version, prompts, default policy, permissions
and examples as class data, and one method::

    class Shout(Plugin[ShoutInput, ShoutOutput]):
        name = "shout"
        version = "1.0.0"
        description = "Upper-cases text."

        async def run(self, input: ShoutInput, ctx: Context) -> ShoutOutput:
            return ShoutOutput(text=input.text.upper())
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Literal,
    Protocol,
    TypeVar,
    get_args,
    get_origin,
)

from pydantic import BaseModel, ConfigDict, Field

from brickwork.contracts.policy import Policy
from brickwork.contracts.provider import Completion, Embeddings, Message, Scores, StreamChunk

if TYPE_CHECKING:
    from brickwork.contracts.request import Envelope, Request

__all__ = [
    "PERMISSIONS",
    "Context",
    "Example",
    "ModelClient",
    "Plugin",
    "PluginInput",
    "PluginOutput",
    "Prompt",
]

#: Permissions a plugin may declare. ``call:<pattern>`` (fnmatch on plugin names)
#: is also accepted. The runtime refuses ``model``, ``embed``, ``bind`` (choose the
#: model at run time: ``ctx.model.bind``) and ``call:`` when not declared; ``pii``
#: (may see unredacted personal data) and ``network`` (may reach hosts itself) are
#: declared today and enforced by the guard layer (issue 15).
PERMISSIONS: frozenset[str] = frozenset({"model", "embed", "bind", "network", "pii"})


class PluginInput(BaseModel):
    """Base for plugin inputs: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class PluginOutput(BaseModel):
    """Base for plugin outputs."""

    model_config = ConfigDict(extra="forbid")


class Prompt(BaseModel):
    """A versioned prompt template (Jinja2, rendered in a sandbox).

    Every call records the versions of the prompts the plugin declares, so a
    change of wording is a new version, visible in the envelope and the cache key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, max_length=32)
    template: str = Field(min_length=1)


@dataclass(frozen=True)
class Example:
    """An input with what its output must satisfy.

    Used by :class:`brickwork.testing.PluginContractTests` and by intent routing.

    Attributes:
        input: the plugin input, as a dict (or a string for ``text`` inputs).
        expected: fields the output must equal (a subset of the output).
        check: a predicate on the output model, for properties rather than values.
        needs_model: the example needs a real model to hold; skipped with fakes.
    """

    input: Mapping[str, Any] | str
    expected: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Any], bool] | None = None
    description: str = ""
    needs_model: bool = False


class ModelClient(Protocol):
    """``ctx.model``: the plugin's model chain, wrapped in its policies."""

    async def complete(
        self,
        messages: str | Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] = (),
    ) -> Completion: ...

    def stream(
        self,
        messages: str | Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> AsyncIterator[StreamChunk]: ...

    async def embed(
        self, texts: Sequence[str], *, purpose: Literal["query", "passage"] = "query"
    ) -> Embeddings:
        """Embed with the plugin's ``embedding_model`` (needs the 'embed' permission)."""
        ...

    async def score(self, messages: str | Sequence[Message], candidates: Sequence[str]) -> Scores:
        """Log-probability of each candidate as the reply (needs the 'model' permission)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def context_window(self) -> int:
        """Tokens one call can read and write: the smallest window among the chain's
        models that say theirs, else :data:`~brickwork.contracts.provider.DEFAULT_CONTEXT_WINDOW`.
        Size prompts and chunks by it rather than by a constant of the plugin's."""
        ...

    def bind(self, model: str) -> ModelClient:
        """This client over ``model`` (``provider:model``) alone, with the same policies,
        for a plugin whose caller names the model (a pass-through)."""
        ...


class Context(Protocol):
    """What a plugin may use while it runs. Built by the runtime for each run."""

    @property
    def request(self) -> Request: ...

    @property
    def tenant(self) -> str: ...

    @property
    def trace_id(self) -> str: ...

    @property
    def model(self) -> ModelClient: ...

    def prompt(self, name: str, /, **variables: Any) -> str:
        """Render one of the plugin's prompts."""
        ...

    async def call(self, ref: str, input: Mapping[str, Any] | BaseModel | str) -> Envelope:
        """Call another plugin through the orchestrator, with its own policies."""
        ...

    def warn(self, message: str) -> None:
        """Add a warning to the envelope."""
        ...

    @property
    def streaming(self) -> bool:
        """Whether the caller reads this run's text as it is produced (see :meth:`emit`)."""
        ...

    def emit(self, text: str) -> None:
        """Send the next piece of the output's text (its ``text_field``) to a caller that
        streams; nothing without one. The pieces must add up to that field of the
        output the run returns, which the runtime checks."""
        ...

    def remaining(self) -> float:
        """Seconds left before the run's deadline."""
        ...


InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)


class Plugin(ABC, Generic[InT, OutT]):
    """A named, versioned capability with a typed contract.

    Class attributes:
        name: plugin name (lowercase, ``[a-z][a-z0-9_-]*``).
        version: semantic version, ``MAJOR.MINOR.PATCH``.
        description: one paragraph; intent routing reads it.
        prompts: prompt name → :class:`Prompt`.
        policy: default :class:`~brickwork.contracts.policy.Policy`.
        permissions: what the plugin may use (see :data:`PERMISSIONS`).
        examples: inputs with expected outputs or properties.
        model: default model id (``provider:model``) bound to ``ctx.model``.
        embedding_model: model id used by ``ctx.model.embed``.
        routable: whether intent routing may send plain-text requests here
            (``False`` for plugins whose input needs more than a text).
        text_field: the output field that is the plugin's text (``summary``,
            ``translation``, ``label`` …): a chat completion answers with it, and
            what the plugin streams with :meth:`Context.emit` must add up to it.
        input_type, output_type: taken from ``Plugin[In, Out]``.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str] = ""
    prompts: ClassVar[Mapping[str, Prompt]] = {}
    policy: ClassVar[Policy] = Policy()
    permissions: ClassVar[frozenset[str]] = frozenset()
    examples: ClassVar[Sequence[Example]] = ()
    model: ClassVar[str | None] = None
    embedding_model: ClassVar[str | None] = None
    routable: ClassVar[bool] = True
    text_field: ClassVar[str | None] = None
    input_type: ClassVar[type[BaseModel]]
    output_type: ClassVar[type[BaseModel]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Plugin:
                args = get_args(base)
                if len(args) == 2 and all(isinstance(a, type) for a in args):
                    cls.input_type, cls.output_type = args

    @classmethod
    def prompt_version(cls) -> str | None:
        """The versions of all declared prompts, as one string (``None`` without prompts)."""
        if not cls.prompts:
            return None
        return ",".join(f"{name}@{cls.prompts[name].version}" for name in sorted(cls.prompts))

    @classmethod
    def ref(cls) -> str:
        return f"{cls.name}@{cls.version}"

    @abstractmethod
    async def run(self, input: InT, ctx: Context) -> OutT:
        """Do the work. Raise Brickwork errors for expected failures."""
