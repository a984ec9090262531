"""The OpenAI-compatible HTTP server."""

from owl.server.app import create_app, serve

__all__ = ["create_app", "serve"]
