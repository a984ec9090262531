"""The one place that maps errors to HTTP: OwlError → status + an error body.

OpenAI's shape everywhere, except Ollama's `{"error": "..."}` on its /api/* routes and
Anthropic's `{"type": "error", "error": {"type", "message"}}` on /v1/messages.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from owl.errors import OwlError
from owl.server.body_checks import ERROR_TYPE as BODY_ERROR

log = logging.getLogger("owl.server")


def error_body(message: str, *, status: int, code: str | None, param: str | None = None) -> dict:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


OLLAMA_PREFIX = "/api/"
ANTHROPIC_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
# Anthropic's error types by status (its errors page); the `anthropic` client picks its
# exception class from the status, and shows the type and message.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def anthropic_error_body(message: str, *, status: int) -> dict:
    """Anthropic's error shape: {"type": "error", "error": {"type", "message"}}."""
    default = "invalid_request_error" if status < 500 else "api_error"
    kind = _ANTHROPIC_TYPES.get(status, default)
    return {"type": "error", "error": {"type": kind, "message": message}}


def _body_for(
    request: Request, message: str, *, status: int, code: str | None, param: str | None = None
) -> dict:
    """The error body in the shape of the API the request speaks."""
    if request.url.path.startswith(OLLAMA_PREFIX):
        return {"error": message}  # the `ollama` client raises ResponseError(error, status)
    if request.url.path.rstrip("/") in ANTHROPIC_PATHS:
        return anthropic_error_body(message, status=status)
    return error_body(message, status=status, code=code, param=param)


def owl_error_response(err: OwlError, request: Request | None = None) -> JSONResponse:
    status = err.http_status
    message = err.client_message()
    if message != str(err):
        log.error("%s", err)  # the whole message, with the server's paths, for its operator
    if request is not None:
        body = _body_for(request, message, status=status, code=err.code)
    else:
        body = error_body(message, status=status, code=err.code)
    return JSONResponse(body, status_code=status)


# pydantic puts the member of a union it tried into the location ("stop.str",
# "tool_choice.literal['none','auto','required']", "content.list[TextPart]"): not a
# parameter a client sent, so it is left out of `param`.
_UNION_MEMBER = re.compile(
    r"^(str|int|float|bool|none|bytes|list\[.*|dict\[.*|tuple\[.*|set\[.*|literal\[.*"
    r"|function-.*|json-or-python\[.*|tagged-union\[.*|chain\[.*|lax-or-strict\[.*"
    r"|constrained-.*|nullable\[.*|[A-Z]\w*)$"
)


def _param(location: Any) -> str | None:
    parts = [
        str(part)
        for part in location
        if part != "body" and not (isinstance(part, str) and _UNION_MEMBER.match(part))
    ]
    return ".".join(parts) or None


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    param = _param(first.get("loc", ()))
    message = first.get("msg", "invalid request body")
    if first.get("type") == BODY_ERROR:
        context = first.get("ctx") or {}
        return str(context.get("message", message)), context.get("param")
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if param is None:  # the body as a whole: empty, or JSON that is not an object
        if first.get("type") == "missing":
            return "the request body is empty; send a JSON object", None
        return "the request body must be a JSON object (Content-Type: application/json)", None
    if first.get("type") == "missing":
        return f"missing required parameter '{param}'", param
    return f"invalid '{param}': {message}", param


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into an error body (see _body_for)."""

    @app.exception_handler(OwlError)
    async def _owl_error(request: Request, err: OwlError) -> JSONResponse:
        return owl_error_response(err, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(list(err.errors()))
        return JSONResponse(
            _body_for(request, message, status=400, code="invalid_request", param=param),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
        return JSONResponse(
            _body_for(request, str(err.detail), status=err.status_code, code=code),
            status_code=err.status_code,
            headers=getattr(err, "headers", None),
        )


class CatchAllMiddleware:
    """Answers an unexpected exception with a 500 in the API's error shape, and keeps the
    connection open.

    Starlette's own last-resort handler re-raises after answering, and uvicorn then resets
    the kept-alive connection: the client's next request fails too. Added innermost, this
    catches first. Once a response has started, nothing can be sent in its place.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except ClientDisconnect:
            return  # the client left, or broke its chunked body, while it was read
        except Exception as err:
            if started:
                raise
            log.exception("unexpected error")
            message = f"internal error: {type(err).__name__}"
            body = _body_for(Request(scope), message, status=500, code="internal_error")
            await JSONResponse(body, status_code=500)(scope, receive, send)
