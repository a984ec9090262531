"""Helpers for tests that speak to owl's OpenAI-compatible API with the real `openai` client."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.support.owl_server import Server

MODEL = "smollm2"
HI = [{"role": "user", "content": "Say hello to a new colleague."}]
PROMPT = "The three primary colors are"
ERROR_FIELDS = {"message", "type", "param", "code"}


def make_client(server: Server, *, timeout: float = 120) -> openai.OpenAI:
    # No retries: a retried 5xx would hide exactly what these tests look for.
    return openai.OpenAI(
        base_url=f"{server.base}/v1", api_key="unused", max_retries=0, timeout=timeout
    )


def chat(client: openai.OpenAI, messages: list[dict[str, str]], **params: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=messages, temperature=0, **params)


def complete(client: openai.OpenAI, prompt: Any, **params: Any) -> Any:
    return client.completions.create(model=MODEL, prompt=prompt, temperature=0, **params)


def assert_error_shape(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["type"] == "invalid_request_error", error
    return error


def sse_events(response: httpx.Response) -> list[str]:
    """The data of each server-sent event, in order (the literal [DONE] included)."""
    lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [line.removeprefix("data: ") for line in lines]
