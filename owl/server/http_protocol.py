"""uvicorn's HTTP/1.1 protocol, with its answer to malformed HTTP in owl's error shape.

A request that is not HTTP at all never reaches the app: uvicorn answers it with plain
text. Clients that parse every error body as JSON get OpenAI's shape here too.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from owl.server.errors import error_body


class JsonErrorsH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        message = f"{msg}; send a well-formed HTTP/1.1 request"
        body = json.dumps(error_body(message, status=400, code="malformed_http")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()
