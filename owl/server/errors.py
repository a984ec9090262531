"""The one place that maps errors to HTTP: OwlError → status + an error body.

OpenAI's shape everywhere, except Ollama's `{"error": "..."}` on its /api/* routes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from owl.errors import OwlError

log = logging.getLogger("owl.server")


def error_body(message: str, *, status: int, code: str | None, param: str | None = None) -> dict:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


OLLAMA_PREFIX = "/api/"


def _body_for(
    request: Request, message: str, *, status: int, code: str | None, param: str | None = None
) -> dict:
    """The error body in the shape of the API the request speaks."""
    if request.url.path.startswith(OLLAMA_PREFIX):
        return {"error": message}  # the `ollama` client raises ResponseError(error, status)
    return error_body(message, status=status, code=code, param=param)


def owl_error_response(err: OwlError, request: Request | None = None) -> JSONResponse:
    status = err.http_status
    if request is not None:
        body = _body_for(request, str(err), status=status, code=err.code)
    else:
        body = error_body(str(err), status=status, code=err.code)
    return JSONResponse(body, status_code=status)


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = first.get("msg", "invalid request body")
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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error")
        message = f"internal error: {type(err).__name__}"
        return JSONResponse(
            _body_for(request, message, status=500, code="internal_error"), status_code=500
        )
