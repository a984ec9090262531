"""Work for a client that stops when the client goes away, streaming or not.

A streaming response notices a disconnect when its next write fails (owl/server/framing.py);
a non-streaming one writes only at the end, so without this a request asking for a billion
tokens would generate for minutes after its client gave up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import suppress
from typing import TypeVar

from fastapi import FastAPI, Request, Response

T = TypeVar("T")
# nginx's "client closed request": what the access log shows for work that was given up.
CLIENT_CLOSED = 499


class ClientGone(Exception):
    """The client disconnected before its answer was ready; the work was cancelled."""


async def _disconnected(request: Request) -> None:
    # The body has been read: the server's next message for this request is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`await work`, cancelled (its generators closed, so its generations stop) if the
    client disconnects first; then ClientGone is raised."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGone()
    return task.result()


def install(app: FastAPI) -> None:
    """Answer ClientGone with 499 (nobody reads it; the access log and metrics do)."""

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, err: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED)
