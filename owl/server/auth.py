"""API keys: with OWL_API_KEYS set, every route but the health probes needs one.

A key comes as `Authorization: Bearer KEY` (what the OpenAI clients send) or `x-api-key:
KEY` (what some other clients send). Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path

from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from owl.config import Settings
from owl.errors import ConfigError, Unauthorized
from owl.server.errors import _body_for

# Probes that load balancers and `ollama`-speaking apps send without credentials.
OPEN_PATHS = frozenset({"/health"})
OPEN_ROOT_METHODS = frozenset({"GET", "HEAD"})


def api_keys(settings: Settings) -> list[bytes]:
    """The keys from OWL_API_KEYS and OWL_API_KEYS_FILE (one a line, `#` starts a comment)."""
    keys = [key.get_secret_value() for key in settings.api_keys]
    if settings.api_keys_file is not None:
        keys += _keys_in(settings.api_keys_file)
    return [key.encode() for key in keys if key]


def _keys_in(path: Path) -> list[str]:
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            f"cannot read the API keys file {path}: {err.strerror}; fix OWL_API_KEYS_FILE"
        ) from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines()]


def _presented(scope: Scope) -> bytes | None:
    headers = dict(scope["headers"])  # lower-cased names, as ASGI gives them
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, credential = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and credential.strip():
            return credential.strip()
    return headers.get(b"x-api-key") or None


def key_matches(presented: bytes, keys: Iterable[bytes]) -> bool:
    """Whether `presented` is one of `keys`; every key is compared, each in constant time."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


class ApiKeyMiddleware:
    """Answers 401, in the shape of the API the request speaks, without a valid key."""

    def __init__(self, app: ASGIApp, *, keys: list[bytes]) -> None:
        self.app = app
        self.keys = keys

    def _open(self, scope: Scope) -> bool:
        path = scope["path"]
        return path in OPEN_PATHS or (path == "/" and scope["method"] in OPEN_ROOT_METHODS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or self._open(scope):
            await self.app(scope, receive, send)
            return
        presented = _presented(scope)
        if presented is not None and key_matches(presented, self.keys):
            await self.app(scope, receive, send)
            return
        message = (
            "missing API key; send `Authorization: Bearer KEY` with a key the server was given"
            if presented is None
            else "invalid API key; send one of the keys the server was given (OWL_API_KEYS)"
        )
        body = _body_for(Request(scope), message, status=401, code=Unauthorized.code)
        response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
