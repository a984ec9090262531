"""A real HTTP server on loopback that serves files with Range, ETag and fault injection.

Used for pull tests (owl's http source) and, with `hub_routes`, to serve a repository the
way the Hugging Face Hub's /resolve/ endpoint does (X-Repo-Commit, X-Linked-Etag, …).
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Served:
    """One file the server offers, and how it misbehaves."""

    data_path: Path
    etag: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Close the connection after this many body bytes, on the next `drops` GET requests.
    drop_after: int | None = None
    drops: int = 0
    supports_range: bool = True


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


class FileServer:
    """`server.add("/m.gguf", path)`; `server.url("/m.gguf")`; `server.requests` for asserts."""

    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self.json_routes: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.error_routes: dict[str, tuple[int, dict[str, str]]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        # shutdown() waits for serve_forever's next poll: at the default 0.5 s, every test
        # with a file server spent half a second stopping it.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        # Kept-alive connections would otherwise go on being served after the server "stopped".
        with self._lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, data_path: Path, **options: object) -> Served:
        served = Served(data_path=data_path, **options)  # type: ignore[arg-type]
        if served.etag is None:
            served.etag = '"' + hashlib.sha256(data_path.read_bytes()).hexdigest()[:16] + '"'
        self.files[path] = served
        return served

    def add_json(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.json_routes[path] = (body, headers or {})

    def add_error(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer `path` with an empty `status` response (the Hub's X-Error-Code: RepoNotFound)."""
        self.error_routes[path] = (status, headers or {})

    def gets(self, path: str) -> list[Request]:
        return [req for req in self.requests if req.method == "GET" and req.path == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def _record(self) -> str:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests.append(Request(self.command, path, dict(self.headers)))
                return path

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, *, head: bool) -> None:
                path = self._record()
                if path in server.error_routes:
                    status, headers = server.error_routes[path]
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    return
                if path in server.json_routes:
                    body, headers = server.json_routes[path]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if not head:
                        self.wfile.write(body)
                    return
                served = server.files.get(path)
                if served is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                data = served.data_path.read_bytes()
                start = 0
                status = 200
                range_header = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if (
                    range_header
                    and served.supports_range
                    and (not if_range or if_range == served.etag)
                ):
                    match = re.match(r"bytes=(\d+)-$", range_header)
                    if match:
                        start = int(match[1])
                        if start >= len(data):
                            self.send_response(416)
                            self.send_header("Content-Range", f"bytes */{len(data)}")
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                        status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes" if served.supports_range else "none")
                if served.etag:
                    self.send_header("ETag", served.etag)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                for key, value in served.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if head:
                    return
                limit = None
                with server._lock:
                    if served.drop_after is not None and served.drops > 0:
                        served.drops -= 1
                        limit = served.drop_after
                if limit is not None:
                    self.wfile.write(body[:limit])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        return Handler
