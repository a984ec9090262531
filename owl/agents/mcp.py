"""MCP servers as tools: connect over stdio or streamable HTTP, list their tools, call one.

The official `mcp` SDK is async (anyio); owl's model loop is sync. Each `McpTools` runs a
private event loop on a background thread, and every server's `Client` lives in its own task
on it for the whole session (anyio's cancel scopes must be entered and left in one task), so
the sync side only submits coroutines and waits for their results.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import IO, Any

from owl.errors import ConfigError, EngineError

# A server that has not answered the handshake and its tool list by then is not coming up.
START_TIMEOUT_S = 60.0


class McpServerError(ConfigError):
    """An MCP server given with --mcp / OWL_MCP_SERVERS could not be started or used."""

    code = "mcp_server_error"


@dataclass
class _Server:
    spec: str
    client: Any
    stop: asyncio.Event
    errlog: IO[str] | None
    done: Future = field(default_factory=Future)


def _transport(spec: str, errlog: IO[str] | None) -> Any:
    from mcp.client.stdio import StdioServerParameters, stdio_client

    if re.match(r"https?://", spec):
        return spec  # the SDK's Client talks streamable HTTP to a URL
    try:
        argv = shlex.split(spec)
    except ValueError as err:
        raise McpServerError(
            f"MCP server {spec!r} is not a valid command line ({err}); quote it as a shell would."
        ) from err
    if not argv:
        raise McpServerError("An MCP server spec is empty; give a command line or an http(s) URL.")
    return stdio_client(StdioServerParameters(command=argv[0], args=argv[1:]), errlog=errlog)


def _stderr_tail(errlog: IO[str] | None) -> str:
    if errlog is None:
        return ""
    errlog.seek(0)
    lines = errlog.read().strip().splitlines()[-5:]
    return (" Its stderr ended with: " + " | ".join(lines)) if lines else ""


def _result_text(result: Any) -> str:
    parts = []
    for item in result.content:
        text = getattr(item, "text", None)
        parts.append(text if text is not None else f"[{item.type} content]")
    text = "\n".join(parts)
    if not text and result.structured_content is not None:
        text = str(result.structured_content)
    return f"Error: {text}" if result.is_error else text


class McpTools:
    """The tools of one or more MCP servers, offered to owl's models as functions.

    `functions` are owl tool dicts (name, description, parameters); `call` runs one by name.
    Use `McpTools.open(specs)` and `close()` (or a `with` block).
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="owl-mcp", daemon=True)
        self._thread.start()
        self._servers: list[_Server] = []
        self._routes: dict[str, tuple[_Server, str]] = {}
        self.functions: list[dict[str, Any]] = []

    @classmethod
    def open(cls, specs: list[str]) -> McpTools:
        """Connect to each server in `specs` (http(s) URLs or command lines); list its tools."""
        try:
            import mcp  # noqa: F401  (the extra's; said here, before any server starts)
        except ImportError:
            raise McpServerError(
                "MCP tools need the mcp package, which is not installed: "
                "`pip install 'owl[agents]'`"
            ) from None
        tools = cls()
        try:
            for spec in specs:
                tools._connect(spec)
        except BaseException:
            tools.close()
            raise
        return tools

    def _connect(self, spec: str) -> None:
        # The server's stderr goes to a file: its logs would clutter the answer, but the tail
        # says why a server that fails to start failed.
        errlog = None if re.match(r"https?://", spec) else tempfile.TemporaryFile("w+")
        transport = _transport(spec, errlog)
        ready: Future = Future()
        stop_box: Future = Future()
        server_future = asyncio.run_coroutine_threadsafe(
            self._serve(spec, transport, ready, stop_box), self._loop
        )
        try:
            client, listed = ready.result(timeout=START_TIMEOUT_S)
        except TimeoutError as err:
            server_future.cancel()
            raise McpServerError(
                f"MCP server {spec!r} did not answer within {START_TIMEOUT_S:.0f}s; "
                f"check that it speaks MCP.{_stderr_tail(errlog)}"
            ) from err
        except Exception as err:
            raise McpServerError(
                f"MCP server {spec!r} could not be started or reached ({_describe(err)}); "
                f"check the command or URL.{_stderr_tail(errlog)}"
            ) from err
        server = _Server(spec=spec, client=client, stop=stop_box.result(), errlog=errlog)
        server.done = server_future
        self._servers.append(server)
        label = _label(client, len(self._servers))
        for tool in listed:
            name = tool.name if tool.name not in self._routes else f"{label}_{tool.name}"
            self._routes[name] = (server, tool.name)
            self.functions.append(
                {
                    "name": name,
                    "description": tool.description or "",
                    "parameters": tool.input_schema or {"type": "object"},
                }
            )

    async def _serve(self, spec: str, transport: Any, ready: Future, stop_box: Future) -> None:
        from mcp import Client

        stop = asyncio.Event()
        stop_box.set_result(stop)
        try:
            async with Client(transport) as client:
                listed = []
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                ready.set_result((client, listed))
                await stop.wait()
        except BaseException as err:
            if not ready.done():
                ready.set_exception(err)
            elif not isinstance(err, (asyncio.CancelledError, Exception)):
                raise

    def call(self, name: str, arguments: dict[str, Any] | None) -> str:
        """Run tool `name`; the text it returned (an error result starts with "Error: ")."""
        if name not in self._routes:
            known = ", ".join(self._routes) or "none"
            return f"Error: there is no tool named {name!r} (tools: {known})."
        server, remote_name = self._routes[name]
        future = asyncio.run_coroutine_threadsafe(
            server.client.call_tool(remote_name, arguments or {}), self._loop
        )
        try:
            return _result_text(future.result())
        except Exception as err:
            raise EngineError(
                f"MCP tool {name!r} of {server.spec!r} failed ({_describe(err)}); "
                "check that the server is still running."
            ) from err

    def close(self) -> None:
        """Stop every server connection and the background loop."""
        for server in self._servers:
            self._loop.call_soon_threadsafe(server.stop.set)
        for server in self._servers:
            try:
                server.done.result(timeout=START_TIMEOUT_S)
            except Exception:  # noqa: S110 — a server that dies while closing is closed
                pass
            if server.errlog is not None:
                server.errlog.close()
        self._servers.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> McpTools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _label(client: Any, index: int) -> str:
    info = client.server_info
    name = info.name if info is not None and info.name else f"server{index}"
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


def _describe(err: BaseException) -> str:
    # anyio task groups wrap the real cause in an ExceptionGroup; name the innermost one.
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
