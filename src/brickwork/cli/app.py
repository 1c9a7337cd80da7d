"""``brickwork plugins | run | config check``.

Errors are printed as ``error [code]: message`` (or as JSON with ``--json``) and
exit with status 1; usage mistakes exit with 2. No traceback for expected errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from brickwork.contracts.errors import BrickworkError, InvalidRequestError
from brickwork.contracts.refs import PluginRef
from brickwork.contracts.request import Envelope, Request
from brickwork.runtime.app import CONFIG_ENV, build, load
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

out = Console()
err = Console(stderr=True, soft_wrap=True, highlight=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"Config file (YAML or TOML). Default: ${CONFIG_ENV}, else built-in defaults.",
        envvar=CONFIG_ENV,
        show_envvar=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _fail(error: BrickworkError, as_json: bool) -> typer.Exit:
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


def _runtime(config: Path | None) -> Orchestrator:
    return load(config) if config else build()


@app.command("plugins")
def plugins_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List plugins: versions, labels, model and policy of the default version."""
    try:
        runtime = _runtime(config)
    except BrickworkError as exc:
        raise _fail(exc, as_json) from None
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
        runtime = _runtime(config)
        envelope = asyncio.run(_handle_once(runtime, request))
    except BrickworkError as exc:
        raise _fail(exc, as_json) from None
    if as_json:
        print(envelope.model_dump_json(indent=2))
    else:
        _print_envelope(envelope)


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


def read_input(text: str | None, input_json: str | None) -> dict[str, Any] | str:
    """The request input from TEXT, ``--input JSON`` or standard input (one of them)."""
    if text is not None and input_json is not None:
        raise InvalidRequestError("give TEXT or --input, not both")
    data: dict[str, Any] | str
    if input_json is not None:
        try:
            data = json.loads(input_json)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"--input is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidRequestError("--input must be a JSON object")
    elif text is not None:
        data = text
    elif not sys.stdin.isatty():
        data = sys.stdin.read()
        if not data.strip():
            raise InvalidRequestError("standard input was empty; give TEXT or --input")
    else:
        raise InvalidRequestError("no input: give TEXT, --input JSON, or pipe text on stdin")
    return data


def parse_meta(meta: Sequence[str]) -> dict[str, str]:
    """``--meta KEY=VALUE`` options as a dict."""
    metadata: dict[str, str] = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"--meta {item!r} must be KEY=VALUE")
        metadata[key] = value
    return metadata


def _print_envelope(envelope: Envelope) -> None:
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
        raise _fail(exc, as_json) from None
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
    # The other command groups live in their own modules and add themselves here;
    # imported last because some reuse this module's helpers.
    from brickwork.cli import audit, keys, models, route, serve
    from brickwork.cli import eval as eval_cli

    app.add_typer(models.models_app, name="models")
    for module in (route, eval_cli, keys, audit, serve):
        module.register(app)


_mount_commands()


def main() -> None:
    app()
