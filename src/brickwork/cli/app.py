"""``brickwork plugins | run | config check``.

Errors are printed as ``error [code]: message`` (or as JSON with ``--json``) and
exit with status 1; usage mistakes exit with 2. No traceback for expected errors.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from brickwork.bootstrap import build
from brickwork.cli.options import ConfigOption, JsonOption, load_runtime, parse_meta, read_input
from brickwork.cli.output import fail, out, print_envelope
from brickwork.contracts.errors import BrickworkError, InvalidRequestError
from brickwork.contracts.refs import PluginRef
from brickwork.contracts.request import Envelope, Request
from brickwork.runtime.config import load_config
from brickwork.runtime.orchestrator import Orchestrator

__all__ = ["app", "main"]

app = typer.Typer(
    name="brickwork",
    help="Brickwork: LLM capabilities as plugins, each with its own contract, versions and policy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.command("plugins")
def plugins_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List plugins: versions, labels, model and policy of the default version."""
    try:
        runtime = load_runtime(config)
    except BrickworkError as exc:
        raise fail(exc, as_json) from None
    registry = runtime.registry
    rows: list[dict[str, Any]] = []
    for name in registry.names():
        default = registry.resolve(name)
        rows.append(
            {
                "name": name,
                "versions": [str(e.version) for e in registry.versions(name)],
                "labels": registry.labels(name),
                "default": str(default.version),
                "model": default.model,
                "policy": default.policy.summary(),
                "description": default.cls.description,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Brickwork plugins", show_lines=True)
    for column in ("name", "versions", "labels", "model", "policy (default version)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        versions = ", ".join(f"[bold]{v}[/]" if v == row["default"] else v for v in row["versions"])
        labels = ", ".join(f"{k}→{v}" for k, v in row["labels"].items()) or "-"
        table.add_row(row["name"], versions, labels, row["model"] or "-", row["policy"])
    out.print(table)


@app.command("run")
def run_command(
    name: Annotated[str, typer.Argument(help="Plugin: NAME, NAME@VERSION or NAME@LABEL.")],
    text: Annotated[
        str | None, typer.Argument(help="Text input. Omit to use --input or standard input.")
    ] = None,
    input_json: Annotated[str | None, typer.Option("--input", "-i", help="Input as a JSON object.")] = None,
    version: Annotated[str | None, typer.Option("--version", "-V", help="Exact version.")] = None,
    label: Annotated[str | None, typer.Option("--label", "-l", help="Label, e.g. prod.")] = None,
    tenant: Annotated[str, typer.Option(help="Tenant the call is made for.")] = "default",
    meta: Annotated[
        list[str] | None, typer.Option("--meta", "-m", help="Metadata KEY=VALUE (repeatable).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Skip the cache read.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run one plugin and print its envelope.

    Examples:

      brickwork run sentiment "I love this phone"

      echo "The food was awful" | brickwork run sentiment@1 --json

      brickwork run sentiment --input '{"text": "fine"}' --label prod
    """
    try:
        request = _request(name, text, input_json, version, label, tenant, meta or [], no_cache)
        runtime = load_runtime(config)
        envelope = asyncio.run(_handle_once(runtime, request))
    except BrickworkError as exc:
        raise fail(exc, as_json) from None
    if as_json:
        print(envelope.model_dump_json(indent=2))
    else:
        print_envelope(envelope)


async def _handle_once(runtime: Orchestrator, request: Request) -> Envelope:
    try:
        return await runtime.handle(request)
    finally:
        await runtime.aclose()


def _request(
    name: str,
    text: str | None,
    input_json: str | None,
    version: str | None,
    label: str | None,
    tenant: str,
    meta: list[str],
    no_cache: bool,
) -> Request:
    ref = PluginRef.parse(name)
    if version and label:
        raise InvalidRequestError("give --version or --label, not both")
    selector = version or label
    if selector and ref.selector:
        raise InvalidRequestError(f"{name!r} already names a version; drop --version/--label")
    plugin = f"{ref.name}@{selector}" if selector else str(ref)
    PluginRef.parse(plugin)
    data = read_input(text, input_json)
    metadata = parse_meta(meta)
    return Request(plugin=plugin, input=data, tenant=tenant, metadata=metadata, cache_bypass=no_cache)


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The config file to check.")],
    as_json: JsonOption = False,
) -> None:
    """Validate a config file, then load the plugins with it (policies, labels, refs)."""
    try:
        config = load_config(file)
        runtime = build(config)
    except BrickworkError as exc:
        raise fail(exc, as_json) from None
    registry = runtime.registry
    warnings = [
        f"plugins.{name}: no such plugin is installed"
        for name in config.plugins
        if name not in registry.names() and config.plugins[name].enabled
    ]
    for name, pc in config.plugins.items():
        for label, version in pc.labels.items():
            if name in registry.names() and registry.labels(name).get(label) != version:
                warnings.append(f"plugins.{name}.labels.{label}: version {version} is not loaded")
    summary = {
        "file": str(file),
        "ok": True,
        "plugins": {
            n: registry.labels(n) | {"versions": ",".join(str(e.version) for e in registry.versions(n))}
            for n in registry.names()
        },
        "warnings": warnings,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out.print(f"[green]ok[/] {file}: {len(registry.names())} plugin(s) loaded", highlight=False)
    for warning in warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _mount_commands() -> None:
    # The other command groups live in their own modules and add themselves here.
    from brickwork.cli import audit, keys, models, route, serve
    from brickwork.cli import eval as eval_cli

    app.add_typer(models.models_app, name="models")
    for module in (route, eval_cli, keys, audit, serve):
        module.register(app)


_mount_commands()


def main() -> None:
    app()
