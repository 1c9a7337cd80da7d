"""The HTTP gateway: Brickwork's API and an OpenAI-compatible one, over the runtime.

::

    from brickwork.gateway import Gateway, GatewaySettings

    gateway = Gateway(brickwork.load("brickwork.yaml"), keys=open_key_store(url))
    app = gateway.app()      # an ASGI app; `brickwork serve` runs it under uvicorn
"""

from brickwork.gateway.app import Gateway
from brickwork.gateway.auth import KeyPrincipal
from brickwork.gateway.server import ServeOptions, open_gateway, serve
from brickwork.gateway.settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings", "KeyPrincipal", "ServeOptions", "open_gateway", "serve"]
