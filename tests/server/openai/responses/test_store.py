"""Stored responses: what previous_response_id reads back, bounded to the newest N."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.errors import ResponseNotFound
from owl.server.openai.responses.store import FILE_NAME, ResponseStore, StoredResponse


def stored(ident: str) -> StoredResponse:
    return StoredResponse(
        id=ident,
        model="smollm2",
        input=[{"type": "message", "role": "user", "content": f"question {ident}"}],
        output=[{"type": "message", "role": "assistant", "content": [{"text": "answer"}]}],
        body={"id": ident, "object": "response"},
    )


def test_a_saved_response_is_read_back_as_a_conversation(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    store.save(stored("resp_a"))
    again = store.get("resp_a")
    assert again == stored("resp_a")
    assert again.conversation() == [*stored("resp_a").input, *stored("resp_a").output]
    assert (tmp_path / FILE_NAME).is_file()


def test_only_the_newest_are_kept(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path, limit=3)
    for number in range(5):
        store.save(stored(f"resp_{number}"))
    assert store.count() == 3
    for gone in ("resp_0", "resp_1"):
        with pytest.raises(ResponseNotFound, match="newest 3"):
            store.get(gone)
    assert store.get("resp_4").id == "resp_4"


def test_a_deleted_response_is_gone(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    store.save(stored("resp_a"))
    store.delete("resp_a")
    with pytest.raises(ResponseNotFound, match="resp_a"):
        store.get("resp_a")
    with pytest.raises(ResponseNotFound):
        store.delete("resp_a")
    assert store.count() == 0
