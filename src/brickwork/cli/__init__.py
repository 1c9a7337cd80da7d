"""The ``brickwork`` command line: a thin adapter over the runtime API."""

from brickwork.cli.app import app, main

__all__ = ["app", "main"]
