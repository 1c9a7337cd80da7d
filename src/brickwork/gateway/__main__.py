"""``python -m brickwork.gateway``: the same as ``brickwork serve``."""

from brickwork.cli.serve import main

main()
