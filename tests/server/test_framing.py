"""The one stream framer: SSE and NDJSON report a failure the same way (owl/server/framing.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from owl.errors import InvalidPrompt
from owl.server import errors
from owl.server.framing import NDJSON, SSE, Encoding, framed


def _app(fail_at: int) -> FastAPI:
    """Streams events 0, 1, … and fails with an OwlError (or a bug, at -1) at `fail_at`."""
    app = FastAPI()
    errors.install(app)

    async def events() -> AsyncIterator[dict[str, Any]]:
        for index in range(3):
            if index == fail_at:
                raise InvalidPrompt("the events ran out")
            yield {"index": index}

    async def broken() -> AsyncIterator[dict[str, Any]]:
        yield {"index": 0}
        raise RuntimeError("a bug")

    for name, encoding in (("sse", SSE), ("ndjson", NDJSON)):

        def route(encoding: Encoding = encoding) -> Any:
            async def stream(request: Request) -> Any:
                return await framed(request, broken() if fail_at < 0 else events(), encoding)

            return stream

        app.post(f"/{name}")(route())
    return app


def _sse(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line]


def test_a_failure_mid_stream_is_the_encodings_error_event_then_the_end() -> None:
    with TestClient(_app(fail_at=1)) as client:
        sse = client.post("/sse")
        ndjson = client.post("/ndjson")
    assert sse.status_code == ndjson.status_code == 200
    assert sse.headers["content-type"].startswith("text/event-stream")
    events = _sse(sse.text)
    assert json.loads(events[0]) == {"index": 0}
    assert json.loads(events[1])["error"]["message"] == "the events ran out"
    assert events[2:] == ["[DONE]"]
    lines = [json.loads(line) for line in ndjson.text.splitlines()]
    assert lines == [{"index": 0}, {"error": "the events ran out"}]


def test_a_failure_before_the_first_event_is_answered_with_its_status() -> None:
    with TestClient(_app(fail_at=0)) as client:
        sse = client.post("/sse")
        ndjson = client.post("/ndjson")
    assert sse.status_code == ndjson.status_code == InvalidPrompt.http_status
    assert sse.json()["error"]["message"] == "the events ran out"
    assert ndjson.json()["error"]["message"] == "the events ran out"  # not /api/: OpenAI's


@pytest.mark.parametrize("path", ["/sse", "/ndjson"])
def test_an_unexpected_failure_names_only_its_type(path: str) -> None:
    with TestClient(_app(fail_at=-1)) as client:
        text = client.post(path).text
    assert "generation failed: RuntimeError" in text and "a bug" not in text


def test_a_stream_that_ends_well_ends_with_the_encodings_end() -> None:
    with TestClient(_app(fail_at=3)) as client:
        assert _sse(client.post("/sse").text)[-1] == "[DONE]"
        assert client.post("/ndjson").text.count("\n") == 3
