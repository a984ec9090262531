"""The OpenAI-compatible API, end to end: the real `owl serve`, the real `openai` client.

One server per module (tests/server/conftest.py) serves the embedded SmolLM2 with a
512-token context. Greedy decoding (temperature 0) makes every answer reproducible, so
streaming, concurrency and disconnects are checked against the plain answer.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.server.conftest import Server
from tests.support.openai_client import (
    HI,
    MODEL,
    PROMPT,
    chat,
    complete,
    sse_events,
)

pytestmark = pytest.mark.slow


# --- models and health -------------------------------------------------------------------


def test_health_is_ok(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_models_lists_the_embedded_model(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert MODEL in [model.id for model in models]
    assert all(model.object == "model" and model.created > 0 for model in models)


def test_retrieve_one_model(client: openai.OpenAI) -> None:
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL
    assert model.object == "model"
    assert model.owned_by == "owl"


# --- chat completions --------------------------------------------------------------------


def test_chat_answers_with_consistent_usage(client: openai.OpenAI) -> None:
    response = chat(client, HI, max_tokens=24)
    assert response.object == "chat.completion"
    assert response.model == MODEL
    assert len(response.choices) == 1
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_max_tokens_stops_with_length(client: openai.OpenAI) -> None:
    response = chat(client, HI, max_tokens=5)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5
    assert response.choices[0].message.content


def test_chat_max_completion_tokens_is_honoured(client: openai.OpenAI) -> None:
    response = chat(client, HI, max_completion_tokens=3)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 3


def test_chat_is_deterministic_at_temperature_zero(client: openai.OpenAI) -> None:
    first = chat(client, HI, max_tokens=16).choices[0].message.content
    second = chat(client, HI, max_tokens=16).choices[0].message.content
    assert first == second


def test_chat_stream_equals_the_plain_answer(client: openai.OpenAI) -> None:
    plain = chat(client, HI, max_tokens=24)
    chunks = list(chat(client, HI, max_tokens=24, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    assert sum(1 for piece in pieces if piece) > 1  # token by token, not one blob
    assert "".join(pieces) == plain.choices[0].message.content
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finishes[-1] == plain.choices[0].finish_reason
    assert all(reason is None for reason in finishes[:-1])


def test_chat_stream_arrives_incrementally(server: Server) -> None:
    body = {"model": MODEL, "messages": HI, "temperature": 0, "max_tokens": 48, "stream": True}
    started = time.monotonic()
    arrivals: list[float] = []
    url = f"{server.base}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                arrivals.append(time.monotonic())
    total = time.monotonic() - started
    assert len(arrivals) > 10
    # Buffered output would arrive all at once at the end; streamed tokens are spread
    # over the generation, which is most of the request's time.
    assert arrivals[-1] - arrivals[0] > 0.3 * total, (arrivals, total)


def test_chat_raw_stream_ends_with_done(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": HI, "temperature": 0, "max_tokens": 8, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"][0]["delta"] == {}


def test_chat_stream_include_usage_sends_a_final_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        chat(client, HI, max_tokens=6, stream=True, stream_options={"include_usage": True})
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 6
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + 6
    assert all(chunk.choices for chunk in chunks[:-1])


def test_chat_text_parts_and_developer_role_read_as_text_and_system(client: openai.OpenAI) -> None:
    system = "You answer in one short sentence."
    plain = chat(client, [{"role": "system", "content": system}, *HI], max_tokens=8)
    parted = chat(
        client,
        [
            {"role": "developer", "content": system},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Say hello "},
                    {"type": "text", "text": "to a new colleague."},
                ],
            },
        ],
        max_tokens=8,
    )
    assert parted.choices[0].message.content == plain.choices[0].message.content
    assert parted.usage == plain.usage
    # and the system message is really used: without it the prompt differs
    assert chat(client, HI, max_tokens=1).usage.prompt_tokens != plain.usage.prompt_tokens


# --- completions -------------------------------------------------------------------------


def test_completion_answers_with_consistent_usage(client: openai.OpenAI) -> None:
    response = complete(client, PROMPT, max_tokens=12)
    assert response.object == "text_completion"
    choice = response.choices[0]
    assert choice.text.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_completion_default_max_tokens_is_openais_16(client: openai.OpenAI) -> None:
    response = client.completions.create(model=MODEL, prompt=PROMPT, temperature=0)
    assert response.usage.completion_tokens <= 16


def test_completion_stream_equals_the_plain_answer(client: openai.OpenAI) -> None:
    plain = complete(client, PROMPT, max_tokens=16)
    chunks = list(complete(client, PROMPT, max_tokens=16, stream=True))
    pieces = [chunk.choices[0].text for chunk in chunks if chunk.choices]
    assert sum(1 for piece in pieces if piece) > 1
    assert "".join(pieces) == plain.choices[0].text
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason


def test_completion_raw_stream_ends_with_done_and_usage(http: httpx.Client) -> None:
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "temperature": 0,
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 4


def test_completion_list_of_one_prompt_is_the_prompt(client: openai.OpenAI) -> None:
    plain = complete(client, PROMPT, max_tokens=8)
    listed = complete(client, [PROMPT], max_tokens=8)
    assert listed.choices[0].text == plain.choices[0].text
    assert listed.usage == plain.usage


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_completion_stop_sequence_is_honoured(client: openai.OpenAI, stream: bool) -> None:
    free = complete(client, PROMPT, max_tokens=24).choices[0].text
    words = free.split()
    assert len(words) >= 4, free
    stop = words[2]  # a word the free answer contains, not at its start
    cut = free.index(stop)
    if stream:
        chunks = list(complete(client, PROMPT, max_tokens=24, stop=[stop], stream=True))
        text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
        finish = chunks[-1].choices[0].finish_reason
    else:
        response = complete(client, PROMPT, max_tokens=24, stop=stop)
        text, finish = response.choices[0].text, response.choices[0].finish_reason
    assert stop not in text
    assert text == free[:cut]
    assert finish == "stop"


def test_chat_stop_sequence_is_honoured(client: openai.OpenAI) -> None:
    free = chat(client, HI, max_tokens=24).choices[0].message.content
    words = free.split()
    assert len(words) >= 4, free
    stop = " " + words[2]
    response = chat(client, HI, max_tokens=24, stop=[stop, "zzzz-never"])
    text = response.choices[0].message.content
    assert stop not in text
    assert text == free[: free.index(stop)]
    assert response.choices[0].finish_reason == "stop"
