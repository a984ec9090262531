"""Tools for the model to call (`owl run --mcp`): docs/agents.md.

mcp.py connects to MCP servers (stdio or streamable HTTP) through the official SDK and
exposes their tools as owl functions; loop.py lets a model call them round by round until it
answers in words.
"""
