"""The HTTP server: OpenAI- and Ollama-compatible APIs over one serving core.

`owl.server.app.create_app(settings)` builds the app and `owl.server.app.serve` runs it.
This package imports nothing itself, so that its modules never import each other through it.
"""
