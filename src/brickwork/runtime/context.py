"""The :class:`~brickwork.contracts.plugin.Context` a plugin gets for one run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel

from brickwork.contracts.errors import (
    BrickworkError,
    InputValidationError,
    InvalidRequestError,
    PermissionDeniedError,
    PluginFailedError,
    PluginNotFoundError,
    PluginValidationError,
)
from brickwork.contracts.refs import PluginRef
from brickwork.contracts.request import Envelope, Principal, Request
from brickwork.policies.timeout import Deadline
from brickwork.runtime.models import BoundModel, CallAccount
from brickwork.runtime.registry import PluginEntry

__all__ = ["Frame", "RunContext", "StreamedText", "TextSink"]


@dataclass(frozen=True)
class Frame:
    """Where a nested call sits: the refs on the call stack, and the parent's deadline."""

    stack: tuple[str, ...]
    trace_id: str
    deadline: Deadline | None
    principal: Principal | None = None
    #: Where the run's text goes as it is produced: only the request's own run (and
    #: its fallbacks) has one; a nested call's text is its caller's to use.
    text: StreamedText | None = None


#: Takes each piece of text a run emits, in order.
TextSink = Callable[[str], None]


class StreamedText:
    """A request's :data:`TextSink`, and whether any text went to it: once some did,
    the caller has read part of an answer, and no fallback may replace it."""

    __slots__ = ("sent", "sink")

    def __init__(self, sink: TextSink) -> None:
        self.sink = sink
        self.sent = False

    def __call__(self, text: str) -> None:
        self.sent = True
        self.sink(text)


class RunContext:
    def __init__(
        self,
        *,
        entry: PluginEntry,
        request: Request,
        trace_id: str,
        model: BoundModel,
        deadline: Deadline,
        account: CallAccount,
        frame: Frame,
        dispatch: Callable[[Request, Frame], Awaitable[Envelope]],
        text: StreamedText | None = None,
    ) -> None:
        self._entry = entry
        self._request = request
        self._trace_id = trace_id
        self._model = model
        self._deadline = deadline
        self._account = account
        self._frame = frame
        self._dispatch = dispatch
        self._text = text
        #: The pieces emitted so far (``None`` until the first), to check the output against.
        self.emitted: list[str] | None = None

    @property
    def request(self) -> Request:
        return self._request

    @property
    def tenant(self) -> str:
        return self._request.tenant

    @property
    def trace_id(self) -> str:
        return self._trace_id

    @property
    def model(self) -> BoundModel:
        return self._model

    def prompt(self, name: str, /, **variables: Any) -> str:
        template = self._entry.templates.get(name)
        if template is None:
            raise PluginValidationError(
                f"{self._entry.ref} has no prompt {name!r} (declared: {sorted(self._entry.cls.prompts)})",
                plugin=self._entry.ref,
            )
        return template.render(**variables)

    async def call(self, ref: str, input: Mapping[str, Any] | BaseModel | str) -> Envelope:
        """Call another plugin through the orchestrator, with its own policies.

        Its usage, cost and models count for this run too. A call this plugin got
        wrong (a bad ref, an unknown plugin, an input the callee refuses) is this
        plugin's failure (``plugin_failed``), never blamed on the user's input.
        """
        try:
            target = PluginRef.parse(ref)
        except InvalidRequestError as exc:
            raise self._bad_call(ref, exc) from exc
        allowed = [p[5:] for p in self._entry.cls.permissions if p.startswith("call:")]
        if not any(fnmatchcase(target.name, pattern) for pattern in allowed):
            raise PermissionDeniedError(
                f"{self._entry.ref} may not call {target.name!r}: declare 'call:{target.name}'",
                plugin=self._entry.ref,
            )
        data: dict[str, Any] | str
        if isinstance(input, BaseModel):
            data = input.model_dump(mode="json")
        elif isinstance(input, str):
            data = input
        else:
            data = dict(input)
        child = Request(
            plugin=ref,
            input=data,
            metadata=self._request.metadata,
            tenant=self._request.tenant,
            subject=self._request.subject,
            cache_bypass=self._request.cache_bypass,
        )
        try:
            envelope = await self._dispatch(
                child, Frame(self._frame.stack, self._trace_id, self._deadline, self._frame.principal)
            )
        except (InputValidationError, InvalidRequestError, PluginNotFoundError) as exc:
            raise self._bad_call(ref, exc) from exc
        self._account.usage.add(envelope.usage)
        self._account.cost += envelope.cost
        self._account.models.extend(m for m in envelope.models if m not in self._account.models)
        return envelope

    def _bad_call(self, ref: str, exc: BrickworkError) -> PluginFailedError:
        return PluginFailedError(
            f"{self._entry.ref} made a bad call to {ref!r}: {exc}",
            plugin=self._entry.ref,
            details={"call": exc.to_dict()},
        )

    def warn(self, message: str) -> None:
        self._account.warnings.append(message)

    @property
    def streaming(self) -> bool:
        return self._text is not None

    def emit(self, text: str) -> None:
        if self._text is None or not text:
            return
        if self.emitted is None:
            self.emitted = []
        self.emitted.append(text)
        self._text(text)

    def remaining(self) -> float:
        return self._deadline.remaining()
