"""The web UI: the static files of owl/server/web, served at `/` and under `/ui/`.

An ASGI middleware rather than a router: the UI's own files must load before the page
can ask for an API key, so they are answered outside the key check; and `/` stays
Ollama's liveness probe ("Ollama is running") for every client that does not ask for HTML.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

WEB = Path(__file__).with_name("web")
PREFIX = "/ui/"

# No inline script or style, nothing from elsewhere: model output that slipped past the
# renderer as markup still could not run, load or send anything.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


def web_files() -> dict[str, tuple[bytes, str]]:
    """Every file of owl/server/web by name, with its media type, read once."""
    files = {}
    for path in sorted(WEB.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
            files[path.name] = (path.read_bytes(), kind or "application/octet-stream")
    return files


def _wants_html(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"text/html" in value
    return False


class UiMiddleware:
    """Answers GET/HEAD of `/` from a browser with index.html, and `/ui/NAME` with a file;
    passes every other request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.files = web_files()

    def _file(self, scope: Scope) -> str | None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return None
        path = scope["path"]
        if path == "/" and _wants_html(scope):
            return "index.html"
        if path.startswith(PREFIX):
            return path.removeprefix(PREFIX) or "index.html"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = self._file(scope)
        if name is None:
            await self.app(scope, receive, send)
            return
        found = self.files.get(name)  # only names that are files of web/: no paths at all
        if found is None:
            response = Response(
                f"no UI file {name!r}; the page is at /", status_code=404, media_type="text/plain"
            )
        else:
            body, kind = found
            response = Response(
                b"" if scope["method"] == "HEAD" else body, media_type=kind, headers=_HEADERS
            )
            if scope["method"] == "HEAD":
                response.headers["content-length"] = str(len(body))
        await response(scope, receive, send)
