"""Stored responses (`store: true`, the Responses API's default) in OWL_HOME/responses.sqlite.

A row holds what `previous_response_id` needs to continue a conversation — the input items
the response was generated from (earlier turns included, so that a chain is one read) and
its output items — and the response object that GET /v1/responses/{id} returns. Only the
newest MAX_STORED responses are kept: each write drops the oldest beyond that, so the file
stays bounded however long the server runs. Every call opens its own connection: calls run
in the server's worker threads, and sqlite3 connections must not cross threads.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owl.errors import ResponseNotFound

FILE_NAME = "responses.sqlite"
MAX_STORED = 10_000
BUSY_TIMEOUT_S = 10.0  # writers from several requests wait for each other this long

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    body TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class StoredResponse:
    """A stored response: its input and output items, and its whole response object."""

    id: str
    model: str
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    body: dict[str, Any]

    def conversation(self) -> list[dict[str, Any]]:
        """The items a response that follows this one continues from."""
        return [*self.input, *self.output]


class ResponseStore:
    """The stored responses under `home`, the newest `limit` of them."""

    def __init__(self, home: Path, *, limit: int = MAX_STORED) -> None:
        self.path = home / FILE_NAME
        self.limit = limit

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        connection.execute(_SCHEMA)
        return connection

    def save(self, response: StoredResponse) -> None:
        """Store `response`, then drop the oldest beyond the limit."""
        with closing(self._connect()) as connection, connection:
            connection.execute(
                "INSERT OR REPLACE INTO responses (id, model, input, output, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    response.id,
                    response.model,
                    json.dumps(response.input),
                    json.dumps(response.output),
                    json.dumps(response.body),
                ),
            )
            connection.execute(
                "DELETE FROM responses WHERE seq <= "
                "(SELECT seq FROM responses ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (self.limit,),
            )

    def get(self, ident: str) -> StoredResponse:
        """The stored response `ident`, or ResponseNotFound (a 404)."""
        with closing(self._connect()) as connection:
            row = connection.execute(
                "SELECT id, model, input, output, body FROM responses WHERE id = ?", (ident,)
            ).fetchone()
        if row is None:
            raise _not_found(ident, self.limit)
        return StoredResponse(
            id=row[0],
            model=row[1],
            input=json.loads(row[2]),
            output=json.loads(row[3]),
            body=json.loads(row[4]),
        )

    def delete(self, ident: str) -> None:
        """Forget the response `ident`, or ResponseNotFound if there is none."""
        with closing(self._connect()) as connection, connection:
            deleted = connection.execute("DELETE FROM responses WHERE id = ?", (ident,)).rowcount
        if not deleted:
            raise _not_found(ident, self.limit)

    def count(self) -> int:
        """How many responses are stored."""
        with closing(self._connect()) as connection:
            return connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def _not_found(ident: str, limit: int) -> ResponseNotFound:
    return ResponseNotFound(
        f"no stored response '{ident}': it was made with store: false, deleted, or is older "
        f"than the newest {limit} (send the conversation as input items instead)"
    )
