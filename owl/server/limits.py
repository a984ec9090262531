"""Request limits: the body size (413), and the 429 answer's Retry-After header."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from owl.errors import RequestTooLarge, ServerBusy
from owl.server.errors import _body_for

AUDIO_UPLOADS = "/v1/audio/"  # multipart uploads of audio files: OWL_MAX_AUDIO_BYTES


def _too_large(limit: int, setting: str) -> str:
    return (
        f"the request body is larger than the server's limit of {limit} bytes; send less, "
        f"or start the server with a larger {setting}"
    )


class BodyLimitMiddleware:
    """Refuses bodies over `limit` bytes before any route reads them.

    A declared Content-Length is checked at once; a chunked body is read up to the limit
    first (so a route never sees half of one) and handed on whole.
    """

    def __init__(self, app: ASGIApp, *, limit: int, audio_limit: int | None = None) -> None:
        self.app = app
        self.default_limit = limit
        # Audio uploads are larger than any JSON request: their routes have their own limit.
        self.audio_limit = max(limit, audio_limit or limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        audio = str(scope.get("path", "")).startswith(AUDIO_UPLOADS)
        limit = self.audio_limit if audio else self.default_limit
        setting = "OWL_MAX_AUDIO_BYTES" if audio else "OWL_MAX_BODY"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await self._refuse(scope, receive, send, _too_large(limit, setting))
                return
            await self.app(scope, receive, send)  # the server holds the client to its length
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(scope, receive, send, _too_large(limit, setting))
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, message: str) -> None:
        body = _body_for(Request(scope), message, status=413, code=RequestTooLarge.code)
        await JSONResponse(body, status_code=413, headers={"Connection": "close"})(
            scope, receive, send
        )


def install(app: FastAPI) -> None:
    """Answer ServerBusy as errors.py does any OwlError, plus the Retry-After it needs."""

    @app.exception_handler(ServerBusy)
    async def _busy(request: Request, err: ServerBusy) -> JSONResponse:
        body = _body_for(request, str(err), status=err.http_status, code=err.code)
        headers = {"Retry-After": str(err.retry_after_s)}
        return JSONResponse(body, status_code=err.http_status, headers=headers)
