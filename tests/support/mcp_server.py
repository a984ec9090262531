"""A tiny MCP server for the agent tests, built with the official SDK (mcp 2.x's MCPServer).

`python tests/support/mcp_server.py` serves over stdio; with `--http` it serves streamable
HTTP on 127.0.0.1 and prints the URL as its first stdout line once the socket listens, so a
test can connect without guessing a port or waiting a fixed time.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

# A word no model can guess: a test that sees it in the answer knows the tool was called.
SECRET_WORD = "owlfeather-42"

server = MCPServer("owl-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def secret_word() -> str:
    """The secret word of the day."""
    return SECRET_WORD


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the given reason."""
    raise ValueError(reason)


async def _serve_http() -> None:
    import uvicorn

    # Bound and listening before the URL is printed: a client that reads it can connect at once.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning")
    print(f"http://127.0.0.1:{port}/mcp", flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


STDIO_COMMAND = f"{sys.executable} {Path(__file__).resolve()}"
"""This server over stdio, as an `--mcp` command line."""


@contextmanager
def http_mcp_server() -> Iterator[str]:
    """This server over streamable HTTP in a subprocess; yields its URL, stops it after."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--http"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://"), f"the MCP test server did not start (printed {url!r})"
        yield url
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    if "--http" in sys.argv[1:]:
        anyio.run(_serve_http)
    else:
        server.run("stdio")
