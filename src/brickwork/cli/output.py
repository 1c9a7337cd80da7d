"""What the commands print: envelopes, and errors as ``error [code]: message``.

An expected error prints one line (or ``{"error": ...}`` with ``--json``) and
exits with status 1; no traceback.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape

from brickwork.contracts.errors import BrickworkError
from brickwork.contracts.request import Envelope

__all__ = ["err", "fail", "out", "print_envelope"]

out = Console()
err = Console(stderr=True, soft_wrap=True, highlight=False)


def fail(error: BrickworkError, as_json: bool) -> typer.Exit:
    """Print ``error`` and return the exit to raise (``raise fail(exc, as_json) from None``)."""
    if as_json:
        print(json.dumps({"error": error.to_dict()}))
    else:
        err.print(f"[bold red]error[/] {escape(f'[{error.code}]')}: {escape(error.message)}")
        problems = error.details.get("errors", [])
        if len(problems) > 5:  # the message already names the first five
            for problem in problems[:50]:
                if isinstance(problem, dict):
                    err.print(f"  {problem.get('loc')}: {problem.get('msg')}", markup=False)
    return typer.Exit(code=1)


def print_envelope(envelope: Envelope) -> None:
    """The output as JSON, then one line of facts: version, route, latency, cost, models."""
    out.print_json(json.dumps(envelope.output))
    route = envelope.route.method + (f" ({envelope.route.rule})" if envelope.route.rule else "")
    facts = [
        f"[bold]{envelope.plugin}@{envelope.version}[/]",
        f"route {route}",
        f"{envelope.latency_ms:.1f} ms",
        f"${envelope.cost:.6f}",
    ]
    if envelope.models:
        facts.append("model " + ", ".join(envelope.models))
    if envelope.usage.calls:
        facts.append(f"{envelope.usage.input_tokens}+{envelope.usage.output_tokens} tokens")
    if envelope.cache_hit:
        facts.append("cache hit")
    if envelope.degraded:
        facts.append("[yellow]degraded[/]")
    out.print(" · ".join(facts), highlight=False)
    for warning in envelope.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)
    out.print(f"[dim]trace {envelope.trace_id}[/]", highlight=False)
