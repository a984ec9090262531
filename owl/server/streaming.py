"""Server-sent events, and a streaming response that always closes its generator."""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


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
