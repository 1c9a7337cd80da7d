"""``brickwork eval PLUGIN DATASET``: versions of a plugin on a labelled dataset, side by side.

::

    brickwork eval sentiment datasets/sentiment-dev.tsv --versions 1.0.0,2.0.0
    brickwork eval summarize datasets/summarize-dev.jsonl --json
    brickwork eval translate datasets/translate-dev.tsv --limit 5
    brickwork eval route datasets/routing-dev.tsv

Added to the main app with :func:`register`. Items go through the runtime with
each version's policies, so the LLM version's column shows what callers get,
degraded answers included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from brickwork.cli.options import ConfigOption, JsonOption, load_runtime
from brickwork.contracts.errors import BrickworkError, InvalidRequestError
from brickwork.evaluation.plugins import Evaluation, evaluator_for, resolve_versions
from brickwork.runtime.orchestrator import Orchestrator

if TYPE_CHECKING:
    from brickwork.evaluation.routing import RoutingReport

__all__ = ["RuntimeFactory", "register"]

#: Builds the runtime for a ``--config`` path (``None``: the defaults).
RuntimeFactory = Callable[[Path | None], Orchestrator]


def register(app: typer.Typer, *, runtime: RuntimeFactory | None = None) -> None:
    """Add the ``eval`` command to ``app`` (``runtime`` builds the orchestrator; tests pass fakes)."""
    make_runtime = runtime or load_runtime

    @app.command("eval")
    def eval_command(
        plugin: Annotated[
            str, typer.Argument(help="Plugin name (sentiment, classify, summarize, translate), or 'route'.")
        ],
        dataset: Annotated[Path, typer.Argument(help="The labelled dataset (TSV or JSONL, see datasets/).")],
        versions: Annotated[
            str | None,
            typer.Option("--versions", help="Comma-separated versions, e.g. 1.0.0,2.0.0 (default: all)."),
        ] = None,
        limit: Annotated[
            int | None, typer.Option("--limit", "-n", min=1, help="Only the first N items.")
        ] = None,
        as_json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Evaluate plugin versions on a labelled dataset and compare them in one table.

        sentiment and classify: accuracy and per-class counts; summarize: key-fact
        retention and invented sentences; translate: chrF; route: accuracy and
        abstention rate. Every version also shows errors, degraded answers and latency.
        """
        out = Console()
        err = Console(stderr=True, soft_wrap=True, highlight=False)
        try:
            runtime = make_runtime(config)
            if plugin == "route":
                result = _route(runtime, dataset, limit, err)
                _print_route(result, as_json, out)
                return
            evaluation = _evaluate(runtime, plugin, dataset, versions, limit, err)
        except BrickworkError as exc:
            if as_json:
                print(json.dumps({"error": exc.to_dict()}))
            else:
                err.print(f"[bold red]error[/] {escape(f'[{exc.code}]')}: {escape(exc.message)}")
            raise typer.Exit(code=1) from None
        if as_json:
            print(json.dumps(evaluation.to_dict(), indent=2))
        else:
            _print_table(runtime, evaluation, dataset, out)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _evaluate(
    runtime: Orchestrator,
    plugin: str,
    dataset: Path,
    versions: str | None,
    limit: int | None,
    console: Console,
) -> Evaluation:
    load_dataset, evaluate = evaluator_for(plugin)
    items = list(load_dataset(dataset))[:limit]
    if not items:
        raise InvalidRequestError(f"{dataset} has no items")
    chosen = [v.strip() for v in (versions or "").split(",") if v.strip()]
    refs = resolve_versions(runtime, plugin, chosen)
    with _progress(console) as progress:
        task = progress.add_task(f"{plugin} × {len(refs)} version(s)", total=len(items) * len(refs))
        coro = evaluate(
            runtime,
            plugin,
            items,
            versions=[ref.partition("@")[2] for ref in refs],
            progress=lambda: progress.advance(task),
        )
        result: Evaluation = asyncio.run(coro)
    return result


def _print_table(runtime: Orchestrator, evaluation: Evaluation, dataset: Path, out: Console) -> None:
    reports = evaluation.reports
    items = reports[0].items if reports else 0
    table = Table(title=f"{evaluation.plugin} on {dataset.name} ({items} items)")
    table.add_column("metric")
    rows: dict[str, list[str]] = {}
    for i, report in enumerate(reports):
        entry = runtime.registry.resolve(report.ref)
        binding = entry.model or entry.embedding_model or "rules, no model"
        table.add_column(f"{report.ref}\n{binding}", justify="right")
        for name, value in report.rows().items():
            rows.setdefault(name, ["-"] * len(reports))[i] = str(value)
    for name, cells in rows.items():
        table.add_row(name, *cells)
    out.print(table)


# --- route -------------------------------------------------------------------


def _route(runtime: Orchestrator, dataset: Path, limit: int | None, console: Console) -> RoutingReport:
    # Imported only when asked for: routing evaluation lives beside this module's peers.
    from brickwork.evaluation.routing import evaluate_routing, load_routing_dataset

    examples = load_routing_dataset(dataset)[:limit]
    if not examples:
        raise InvalidRequestError(f"{dataset} has no items")
    with _progress(console) as progress:
        task = progress.add_task("route", total=len(examples))
        return asyncio.run(evaluate_routing(runtime.router, examples, lambda: progress.advance(task)))


def _print_route(report: RoutingReport, as_json: bool, out: Console) -> None:
    if as_json:
        data = dataclasses.asdict(report)
        data.update(accuracy=report.accuracy, abstention_rate=report.abstention_rate)
        print(json.dumps(data, indent=2))
        return
    table = Table(title=f"routing ({report.total} requests)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", f"{report.accuracy:.3f} ({report.correct}/{report.routable})")
    table.add_row("abstention rate", f"{report.abstention_rate:.3f} ({report.abstained}/{report.total})")
    table.add_row("misrouted", str(report.misroute))
    table.add_row("routed off-topic", str(report.false_route))
    out.print(table)
    out.print(report.format(), markup=False, highlight=False)
