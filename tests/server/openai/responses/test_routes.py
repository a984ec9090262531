"""The Responses stream's framing: each event named by its type, a failure as `error`."""

from __future__ import annotations

import json

from owl.errors import InvalidPrompt
from owl.server.openai.responses.routes import RESPONSES_SSE


def framed(event: dict) -> tuple[str, dict]:
    head, data = RESPONSES_SSE.line(event).removesuffix("\n\n").split("\n")
    return head.removeprefix("event: "), json.loads(data.removeprefix("data: "))


def test_an_event_is_named_by_its_type() -> None:
    name, data = framed({"type": "response.output_text.delta", "sequence_number": 3, "delta": "hi"})
    assert name == "response.output_text.delta" and data["delta"] == "hi"
    assert RESPONSES_SSE.end is None  # the last event ends the stream; no [DONE]


def test_a_failure_is_an_error_event_with_its_code() -> None:
    error = InvalidPrompt("the prompt is too long")
    name, data = framed(RESPONSES_SSE.error(error.client_message(), error))
    assert name == "error" and data["type"] == "error"
    assert data["code"] == "invalid_prompt" and data["message"] == "the prompt is too long"
    assert isinstance(data["sequence_number"], int)
    _, unexpected = framed(RESPONSES_SSE.error("generation failed: KeyError", None))
    assert unexpected["code"] is None and unexpected["message"].startswith("generation failed")
