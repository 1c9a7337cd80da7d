"""``python -m brickwork.gateway``, which ``brickwork serve`` runs: the HTTP gateway
under uvicorn (uvloop, httptools).

Binds 127.0.0.1 unless told otherwise. SIGTERM or Ctrl-C drains the requests in
flight (up to ``--graceful-timeout`` seconds), then flushes the audit log.

The command lives with the gateway, not in :mod:`brickwork.cli`, so that neither
package imports the other: the CLI's ``serve`` starts this program in its place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from brickwork.bootstrap import CONFIG_ENV
from brickwork.contracts.errors import BrickworkError
from brickwork.gateway.server import ServeOptions, serve
from brickwork.gateway.settings import GatewaySettings
from brickwork.storage.urls import AUDIT_ENV, KEYS_ENV

__all__ = ["PROG_NAME", "main", "serve_command"]

#: The name the usage line shows: the command users type (``python -m
#: brickwork.gateway`` is the same program).
PROG_NAME = "brickwork serve"

err = Console(stderr=True, soft_wrap=True, highlight=False)


def serve_command(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help=f"Config file (YAML or TOML). Default: ${CONFIG_ENV}, else built-in defaults.",
            envvar=CONFIG_ENV,
            show_envvar=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind. Use 0.0.0.0 to accept remote clients.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    keys: Annotated[
        str | None,
        typer.Option(
            "--keys",
            help=f"Key store URL. Default: ${KEYS_ENV}, else sqlite:///$BRICKWORK_HOME/keys.db.",
            envvar=KEYS_ENV,
            show_envvar=False,
        ),
    ] = None,
    audit: Annotated[
        str | None,
        typer.Option(
            "--audit",
            help=f"Audit log URL, or 'off'. Default: ${AUDIT_ENV}, else sqlite:///$BRICKWORK_HOME/audit.db.",
            envvar=AUDIT_ENV,
            show_envvar=False,
        ),
    ] = None,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes.", min=1)] = 1_048_576,
    metrics: Annotated[bool, typer.Option(help="Serve Prometheus metrics at /metrics.")] = True,
    graceful_timeout: Annotated[
        int, typer.Option(help="Seconds to let requests in flight finish on shutdown.", min=0)
    ] = 30,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_json: Annotated[bool, typer.Option("--log-json", help="Log JSON lines instead of text.")] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request line.")] = False,
) -> None:
    """Serve the HTTP API and the OpenAI-compatible API.

    Examples:

      brickwork keys create --tenant acme --plugins 'sentiment*' --plugins 'openai:*'

      brickwork serve -c brickwork.yaml --port 8080
    """
    options = ServeOptions(
        config=config,
        host=host,
        port=port,
        keys=keys,
        audit=audit,
        metrics=metrics,
        settings=GatewaySettings(max_body_bytes=max_body),
        graceful_timeout=graceful_timeout,
        log_level=log_level,
        log_json=log_json,
        access_log=access_log,
    )
    try:
        serve(options)
    except BrickworkError as exc:
        err.print(f"[bold red]error[/] {escape(f'[{exc.code}]')}: {escape(exc.message)}")
        raise typer.Exit(code=1) from None


def main() -> None:
    """Parse the command line and serve (``python -m brickwork.gateway``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve_command)
    app(prog_name=PROG_NAME)
