"""``brickwork models list | verify | prepare``: the local models and their files.

Mounted by the main app as ``brickwork models``. Errors print as
``error [code]: message`` (or JSON with ``--json``) and exit with status 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from brickwork.cli.options import JsonOption
from brickwork.cli.output import err, fail, out
from brickwork.contracts.errors import BrickworkError, InvalidRequestError
from brickwork.providers.local import CATALOG, DEFAULT_MODEL, ModelSpec, ModelStatus, ModelStore

__all__ = ["models_app"]

models_app = typer.Typer(
    name="models",
    help="Local models: list them, verify their files, prepare (assemble) them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Where chunked models are assembled. Default: $BRICKWORK_HOME/models, "
        "else ~/.cache/brickwork/models.",
        show_default=False,
    ),
]
ModelArgument = Annotated[
    str | None, typer.Argument(help="Model id or alias (e.g. qwen2.5-0.5b). Omit for every model.")
]


def _specs(model: str | None) -> list[ModelSpec]:
    return [CATALOG.get(model)] if model else list(CATALOG)


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _flag(value: bool | None) -> str:
    return "-" if value is None else "[green]yes[/]" if value else "[red]no[/]"


@models_app.command("list")
def list_command(
    verify: Annotated[bool, typer.Option("--verify", help="Also hash every file (a second or so).")] = False,
    cache_dir: CacheOption = None,
    as_json: JsonOption = False,
) -> None:
    """The catalog: id, size, sha256, and whether each model is installed, assembled
    and (with --verify) verified."""
    store = ModelStore(cache_dir, progress=False)
    statuses = [store.status(spec, verify=verify) for spec in CATALOG]
    if as_json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
        return
    table = Table(title=f"Local models (cache: {store.root})", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("model", "size", "sha256", "installed", "assembled", "verified"):
        table.add_column(column, no_wrap=True)
    for status in statuses:
        spec = status.spec
        table.add_row(
            f"[bold]local:{spec.id}[/]",
            _size(spec.size),
            spec.sha256[:8] + "…",
            _flag(status.installed),
            _flag(status.assembled) if spec.chunked else ("in pkg" if status.installed else "-"),
            _flag(status.verified),
        )
    out.print(table)
    for status in statuses:
        spec = status.spec
        aliases = f" (alias {', '.join(spec.aliases)})" if spec.aliases else ""
        out.print(f"local:{spec.id}{aliases}: {spec.description}", highlight=False, markup=False)
        if status.problem:
            hint = (
                f"; run `brickwork models prepare {spec.id}`" if status.problem == "not assembled yet" else ""
            )
            out.print(f"  [yellow]{escape(status.problem)}[/]{hint}", highlight=False)
    if not verify:
        out.print("[dim]verified: - means not checked; add --verify to hash the files[/]")


@models_app.command("verify")
def verify_command(
    model: ModelArgument = None,
    cache_dir: CacheOption = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Hash model files against their official sha256; exit 1 on any mismatch or
    missing package. A chunked model not assembled yet has its chunks checked."""
    try:
        specs = _specs(model)
    except BrickworkError as exc:
        raise fail(exc, as_json) from None
    store = ModelStore(cache_dir, progress=False if as_json else progress)
    statuses = [store.status(spec, verify=True) for spec in specs]
    if as_json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
    else:
        for status in statuses:
            _print_verified(status)
    if not all(s.verified for s in statuses):
        raise typer.Exit(code=1)


def _print_verified(status: ModelStatus) -> None:
    spec = status.spec
    if status.verified:
        where = status.path if status.assembled else "its chunks"
        out.print(
            f"[green]ok[/] local:{spec.id}  sha256 {spec.sha256}  ({where})", highlight=False, soft_wrap=True
        )
        return
    code = "model_verification_failed" if status.verified is False else "model_not_installed"
    err.print(f"[bold red]error[/] {escape(f'[{code}]')}: local:{spec.id}: {escape(status.problem or '')}")


@models_app.command("prepare")
def prepare_command(
    model: Annotated[
        str | None,
        typer.Argument(help="Model id or alias (e.g. smollm2-135m). Omit for the default model."),
    ] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Prepare every model of the catalog.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Assemble again even if the file verifies.")] = False,
    cache_dir: CacheOption = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Assemble (chunked models) and verify, so the first request does not wait for it.

    Without a model id, prepares the default generation model.
    """
    try:
        if model and all_models:
            raise InvalidRequestError("give a model or --all, not both")
        if not model and not all_models:
            model = DEFAULT_MODEL
        specs = _specs(model)
        store = ModelStore(cache_dir, progress=False if as_json else progress)
        results = []
        for spec in specs:
            path = store.prepare(spec, force=force)
            results.append({"id": spec.id, "path": str(path), "sha256": spec.sha256, "verified": True})
            if not as_json:
                out.print(f"[green]ready[/] local:{spec.id} → {path}", highlight=False, soft_wrap=True)
    except BrickworkError as exc:
        raise fail(exc, as_json) from None
    if as_json:
        print(json.dumps(results, indent=2))
