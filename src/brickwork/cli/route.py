"""``brickwork route TEXT``: where a request with no plugin ref would go, and why.

Shows the route decision (method, chosen plugin), every intent candidate's score
against its calibrated threshold, then runs the request and prints the envelope
as ``brickwork run`` does (``--dry-run``: the decision only).

Mounted by the main CLI with :func:`register`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from brickwork.cli.options import ConfigOption, JsonOption, load_runtime, parse_meta, read_input
from brickwork.cli.output import fail, out, print_envelope
from brickwork.contracts.errors import BrickworkError, InvalidRequestError, NoRouteError
from brickwork.contracts.request import Envelope, Request, RouteDecision
from brickwork.runtime.intent import (
    Candidate,
    Embedder,
    IntentRouter,
    IntentVerdict,
    ProviderEmbedder,
    ThreadedEmbedder,
)
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.routing import Router

__all__ = ["intent_router", "register"]

RuntimeFactory = Callable[[Path | None], Orchestrator]


def intent_router(runtime: Orchestrator) -> IntentRouter:
    """The runtime's intent router; one is added (after its other strategies) if it has none.

    The added one embeds with ``local:e5-small`` through the provider table when a
    ``local`` provider is configured, else with the e5 embedder directly.
    """
    for strategy in runtime.router.strategies:
        if isinstance(strategy, IntentRouter):
            return strategy
    embedder: Embedder
    if "local" in runtime.providers.providers:
        embedder = ProviderEmbedder(runtime.providers, "local:e5-small")
    else:
        from brickwork.providers.e5 import E5Embedder  # weights load on first use

        embedder = ThreadedEmbedder(E5Embedder())
    router = runtime.router
    intent = IntentRouter(runtime.registry, embedder, default=router.default)
    runtime.router = Router(router.rules, [*router.strategies, intent], router.default)
    return intent


def register(app: typer.Typer, *, runtime: RuntimeFactory | None = None) -> None:
    """Add the ``route`` command to ``app``.

    Args:
        app: the Typer app to extend.
        runtime: builds the orchestrator from ``--config`` (default: as ``brickwork run``).
    """
    make_runtime: RuntimeFactory = runtime or load_runtime

    @app.command("route")
    def route_command(
        text: Annotated[
            str | None, typer.Argument(help="Request text. Omit to use --input or standard input.")
        ] = None,
        input_json: Annotated[
            str | None, typer.Option("--input", "-i", help="Input as a JSON object.")
        ] = None,
        meta: Annotated[
            list[str] | None, typer.Option("--meta", "-m", help="Metadata KEY=VALUE (repeatable).")
        ] = None,
        tenant: Annotated[str, typer.Option(help="Tenant the call is made for.")] = "default",
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show the decision only; run nothing.")
        ] = False,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Route a request that names no plugin, show why, then run it.

        Metadata rules come first, then intent (the text compared with each plugin's
        description and examples, against a threshold calibrated from them), then
        the configured default.

        Examples:

          brickwork route "Is this review positive? The soup was cold."

          brickwork route "Summarize: ..." --dry-run --json

          brickwork route --meta team=billing "refund please"
        """
        try:
            request = _request(text, input_json, tenant, meta or [])
            orchestrator = make_runtime(config)
            intent = intent_router(orchestrator)
            verdict, decision = asyncio.run(_decide(orchestrator.router, intent, request))
            if isinstance(decision, NoRouteError):
                if not as_json:
                    _print_candidates(verdict)
                raise decision
            envelope = None if dry_run else asyncio.run(orchestrator.handle(request))
        except BrickworkError as exc:
            raise fail(exc, as_json) from None
        if as_json:
            body: dict[str, Any] = {
                "route": decision.model_dump(mode="json"),
                "candidates": [c.to_dict() for c in verdict.candidates],
                "matched": verdict.best,
            }
            if envelope is not None:
                body["envelope"] = envelope.model_dump(mode="json")
            print(json.dumps(body, indent=2))
            return
        _print_decision(decision, verdict)
        if envelope is not None:
            _print_run(envelope)


async def _decide(
    router: Router, intent: IntentRouter, request: Request
) -> tuple[IntentVerdict, RouteDecision | NoRouteError]:
    verdict = await intent.explain(request)
    try:
        return verdict, await router.route(request)
    except NoRouteError as exc:
        return verdict, exc


def _request(text: str | None, input_json: str | None, tenant: str, meta: Sequence[str]) -> Request:
    data = read_input(text, input_json)
    if isinstance(data, str) and not data.strip():
        raise InvalidRequestError("the request text is empty")
    return Request(input=data, tenant=tenant, metadata=parse_meta(meta))


def _print_decision(decision: RouteDecision, verdict: IntentVerdict) -> None:
    how = decision.method + (f" ({decision.rule})" if decision.rule else "")
    out.print(f"route [bold]{escape(how)}[/] → [bold]{escape(decision.ref)}[/]", highlight=False)
    if decision.method in ("intent", "default"):
        _print_candidates(verdict, chosen=decision.ref if decision.method == "intent" else None)
    elif verdict.candidates:
        out.print("[dim]intent was not consulted; what it would have scored:[/]", highlight=False)
        _print_candidates(verdict)


def _print_candidates(verdict: IntentVerdict, chosen: str | None = None) -> None:
    if not verdict.candidates:
        if verdict.text is None:
            out.print("[dim]no text to route by intent (a string, or a text/question/query field)[/]")
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("plugin")
    table.add_column("score", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("")
    for candidate in verdict.candidates:
        table.add_row(
            escape(candidate.plugin),
            f"{candidate.score:+.4f}",
            f"{candidate.threshold:+.4f}",
            _standing(candidate, chosen, verdict.best),
        )
    out.print(table)


def _standing(candidate: Candidate, chosen: str | None, best: str | None) -> str:
    if candidate.plugin == chosen:
        return "[green]chosen[/]"
    if candidate.plugin == best and not candidate.fits:
        return "[yellow]matched, but its input needs more than this[/]"
    notes = ["passes" if candidate.score >= candidate.threshold else "below threshold"]
    if not candidate.fits:
        notes.append("input does not fit")
    return "[dim]" + ", ".join(notes) + "[/]"


def _print_run(envelope: Envelope) -> None:
    out.print()
    print_envelope(envelope)
