"""The one stream framer: events as server-sent events (OpenAI) or NDJSON lines (Ollama).

Both encodings behave alike. The first event is awaited before the response starts, so
that a failure before it is answered with its own status and error body; once the stream
has started, a failure can only be reported in-band: it becomes the encoding's error
event, and the stream ends (with SSE's [DONE]), never with a silent hang-up. However the
response ends — finished, failed, or the client gone — the events are closed, which
stops the generations behind them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from owl.errors import OwlError
from owl.server.disconnect import unless_disconnected
from owl.server.errors import error_body

log = logging.getLogger("owl.server")
Event = BaseModel | dict[str, Any]


def payload(event: Event) -> dict[str, Any]:
    """An event's JSON object (a response model's, owl/server/responses.py)."""
    return event.model_dump() if isinstance(event, BaseModel) else event


@dataclass(frozen=True)
class Encoding:
    """How one API frames its stream events, its in-band errors and its end."""

    media_type: str
    frame: Callable[[str], str]  # one event's JSON text → its bytes on the wire
    separators: tuple[str, str] | None
    error: Callable[[str, OwlError | None], dict[str, Any]]  # (message, err) → error event
    end: str | None  # the event that closes a stream, or None
    headers: tuple[tuple[str, str], ...] = ()

    def line(self, event: Event) -> str:
        text = json.dumps(payload(event), ensure_ascii=False, separators=self.separators)
        return self.frame(text)


def _openai_error(message: str, err: OwlError | None) -> dict[str, Any]:
    if err is None:
        return error_body(message, status=500, code=None)
    return error_body(message, status=err.http_status, code=err.code)


SSE = Encoding(
    media_type="text/event-stream",
    frame=lambda data: f"data: {data}\n\n",
    separators=None,
    error=_openai_error,
    end="data: [DONE]\n\n",
    headers=(("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")),
)


@dataclass(frozen=True)
class NamedSse(Encoding):
    """SSE whose every event is named by its `type` (`event: X` then `data: {…}`), as
    OpenAI's image and Responses streams and Anthropic's stream send them; an event
    without a type (an error) is named "error"."""

    def line(self, event: Event) -> str:
        body = payload(event)
        name = body.get("type") if isinstance(body.get("type"), str) else "error"
        return f"event: {name}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"


def named_sse(error: Callable[[str, OwlError | None], dict[str, Any]]) -> NamedSse:
    """Named SSE with the API's in-band `error` event, ended by its last event (no [DONE])."""
    return NamedSse(
        media_type=SSE.media_type,
        frame=SSE.frame,
        separators=None,
        error=error,
        end=None,
        headers=SSE.headers,
    )


NDJSON = Encoding(
    media_type="application/x-ndjson",
    frame=lambda data: data + "\n",
    separators=(",", ":"),
    error=lambda message, _: {"error": message},  # the `ollama` client's ResponseError
    end=None,
)


async def framed(
    request: Request, events: AsyncGenerator[Event, None], encoding: Encoding
) -> StreamingResponse:
    """Stream `events` in `encoding` once the first is ready (see the module's docstring)."""
    try:
        first = await unless_disconnected(request, anext(events, None))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await events.aclose()
        raise

    async def lines() -> AsyncIterator[str]:
        try:
            if first is not None:
                yield encoding.line(first)
            async with aclosing(events):
                async for event in events:
                    yield encoding.line(event)
        except OwlError as err:
            yield encoding.line(encoding.error(err.client_message(), err))
        except Exception as err:  # the stream has started: report in-band
            log.exception("generation failed")
            yield encoding.line(encoding.error(f"generation failed: {type(err).__name__}", None))
        if encoding.end is not None:
            yield encoding.end

    return FramedResponse(lines(), events, encoding)


class FramedResponse(StreamingResponse):
    """Closes the lines and the events however the response ends.

    Starlette abandons the body generator when a client disconnects; closing it here,
    rather than when the garbage collector gets to it, releases the model at once. The
    events are closed too: lines() that never started (the client left first) cannot.
    """

    def __init__(
        self,
        lines: AsyncGenerator[str, None],
        events: AsyncGenerator[Event, None],
        encoding: Encoding,
    ) -> None:
        super().__init__(lines, media_type=encoding.media_type, headers=dict(encoding.headers))
        self._lines = lines
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._lines.aclose()
                await self._events.aclose()
