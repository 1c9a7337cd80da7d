"""``python -m brickwork.gateway``: the same as ``brickwork serve``."""

from brickwork.gateway.command import main

main()
