"""Model providers, one module per backend. Test doubles live in :mod:`brickwork.testing`."""
