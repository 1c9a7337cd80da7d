"""``brickwork serve``: starts the HTTP gateway, ``python -m brickwork.gateway``.

The gateway is its own program with its own options (``brickwork serve --help``
lists them), and the CLI does not import it: ``serve`` replaces this process with
the gateway's, passing every argument on, so signals (SIGTERM drains the requests
in flight) and the exit status are the gateway's own.
"""

from __future__ import annotations

import os
import sys

import typer

__all__ = ["GATEWAY_MODULE", "gateway_argv", "register"]

#: The module ``python -m`` runs for ``brickwork serve``.
GATEWAY_MODULE = "brickwork.gateway"


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""
    app.command(
        "serve",
        # Every argument, --help included, is the gateway's to parse.
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(serve_command)


def serve_command(ctx: typer.Context) -> None:
    """Serve the HTTP API and the OpenAI-compatible API (options: brickwork serve --help)."""
    argv = gateway_argv(ctx.args)
    os.execv(argv[0], argv)


def gateway_argv(args: list[str]) -> list[str]:
    """The command line that runs the gateway with ``args``, with this Python."""
    return [sys.executable, "-m", GATEWAY_MODULE, *args]
