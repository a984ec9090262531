"""Run a blocking engine iterator from async code, and write server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")
_END = object()


async def iterate_in_thread(items: Iterator[T]) -> AsyncIterator[T]:
    """Pull each item of a blocking iterator in a worker thread.

    The iterator is always closed, also when the client goes away mid-stream: closing a
    Model's generator is what releases the model for the next request.
    """
    try:
        while True:
            item = await anyio.to_thread.run_sync(next, items, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close)


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event carrying JSON (or the literal [DONE])."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its body generator however the response ends.

    Starlette abandons the generator when a client disconnects; closing it here, rather
    than when the garbage collector gets to it, releases the model at once.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
