"""Structured output, tool calls, logprobs, echo and n: the real server, the real client.

The model is the embedded SmolLM2-135M: too small to choose well, so the tests check what
owl guarantees — the output follows the schema or the tool's arguments, logprobs agree
with each other and with the text — not what the model says.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.server.conftest import Server
from tests.support.openai_client import MODEL, chat, complete, make_client, sse_events

pytestmark = pytest.mark.slow

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "languages": {"type": "array", "items": {"enum": ["en", "fr", "de"]}, "maxItems": 3},
    },
    "required": ["name", "age", "languages"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 20}},
            "required": ["zone"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return make_client(server)


@pytest.fixture(scope="module")
def http(server: Server) -> Any:
    with httpx.Client(base_url=server.base, timeout=120) as raw:
        yield raw


# --- response_format ---------------------------------------------------------------------


def test_json_schema_output_parses_and_validates(client: openai.OpenAI) -> None:
    answer = chat(
        client,
        [{"role": "user", "content": "Describe a person."}],
        max_tokens=120,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "stop", choice
    jsonschema.validate(json.loads(choice.message.content), PERSON)


def test_json_object_output_is_a_json_object(client: openai.OpenAI) -> None:
    answer = chat(
        client,
        [{"role": "user", "content": "List two colors."}],
        max_tokens=80,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(answer.choices[0].message.content), dict)


def test_unusable_schema_is_400(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": ASK,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x"}},
        },
    )
    assert response.status_code == 400, response.text
    assert "schema" in response.json()["error"]["message"]


# --- tools -------------------------------------------------------------------------------


def test_required_tool_call_round_trip(client: openai.OpenAI) -> None:
    first = chat(client, ASK, tools=[WEATHER, TIME], tool_choice="required", max_tokens=80)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id
    tool = {"get_weather": WEATHER, "get_time": TIME}[call.function.name]
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])

    # The call and its result go back in; the model answers in words.
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    second = chat(client, history, tools=[WEATHER, TIME], tool_choice="none", max_tokens=30)
    assert second.choices[0].message.content
    assert not second.choices[0].message.tool_calls


def test_named_tool_choice_calls_that_tool(client: openai.OpenAI) -> None:
    answer = chat(
        client,
        ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=60,
    )
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    assert set(json.loads(call.function.arguments)) == {"zone"}


def test_auto_tool_choice_gives_a_call_or_an_answer(client: openai.OpenAI) -> None:
    answer = chat(client, ASK, tools=[WEATHER], max_tokens=80).choices[0]
    if answer.message.tool_calls:
        assert answer.finish_reason == "tool_calls"
        assert answer.message.tool_calls[0].function.name == "get_weather"
    else:
        assert answer.finish_reason in {"stop", "length"} and answer.message.content is not None


def test_streamed_tool_call_matches_the_plain_one(client: openai.OpenAI) -> None:
    plain = chat(client, ASK, tools=[WEATHER], tool_choice="required", max_tokens=80)
    expected = plain.choices[0].message.tool_calls[0].function
    stream = chat(client, ASK, tools=[WEATHER], tool_choice="required", max_tokens=80, stream=True)
    calls, finish = [], None
    for chunk in stream:
        for choice in chunk.choices:
            calls += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        (expected.name, expected.arguments)
    ]


def test_tool_choice_naming_an_unknown_tool_is_400(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": ASK,
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "nope"}},
        },
    )
    assert response.status_code == 400, response.text


# --- logprobs ----------------------------------------------------------------------------


def test_chat_logprobs_are_consistent(client: openai.OpenAI) -> None:
    answer = chat(
        client,
        [{"role": "user", "content": "Name a fruit."}],
        max_tokens=12,
        logprobs=True,
        top_logprobs=3,
    )
    choice = answer.choices[0]
    content = choice.logprobs.content
    assert len(content) == answer.usage.completion_tokens
    assert "".join(bytes(entry.bytes).decode("utf-8", "replace") for entry in content) == (
        choice.message.content
    )
    for entry in content:
        assert entry.logprob <= 0
        tops = [top.logprob for top in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert math.isclose(entry.logprob, tops[0], abs_tol=1e-6)
        assert entry.token == entry.top_logprobs[0].token


def test_streamed_logprobs_equal_the_plain_ones(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name a fruit."}]
    plain = chat(client, messages, max_tokens=12, logprobs=True).choices[0].logprobs.content
    streamed = []
    for chunk in chat(client, messages, max_tokens=12, logprobs=True, stream=True):
        for choice in chunk.choices:
            if choice.logprobs is not None:
                streamed += choice.logprobs.content
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [
        (e.token, round(e.logprob, 5)) for e in plain
    ]


def test_completion_logprobs_and_echo_score_the_prompt(client: openai.OpenAI) -> None:
    prompt = "The capital of France is Paris"
    scored = complete(client, prompt, max_tokens=0, echo=True, logprobs=1).choices[0]
    assert scored.text == prompt
    logprobs = scored.logprobs
    assert "".join(logprobs.tokens) == prompt
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(value <= 0 for value in logprobs.token_logprobs[1:])
    offsets = [sum(map(len, logprobs.tokens[:i])) for i in range(len(logprobs.tokens))]
    assert logprobs.text_offset == offsets

    # The scores agree with what the model predicts when it generates: the greedy next
    # token after "The capital of France is" has the top log-probability there.
    head = complete(client, "The capital of France is", max_tokens=1, logprobs=1).choices[0]
    assert head.logprobs.token_logprobs[0] >= logprobs.token_logprobs[-1] - 1e-6

    # A plausible continuation scores higher than an implausible one.
    odd = complete(client, "The capital of France is banana", max_tokens=0, echo=True, logprobs=0)
    assert logprobs.token_logprobs[-1] > odd.choices[0].logprobs.token_logprobs[-1]


def test_max_tokens_zero_needs_echo(http: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 0}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 400, response.text


# --- n -----------------------------------------------------------------------------------


def test_n_choices_are_each_what_their_seed_gives(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Invent a name for a cat."}]
    params = {"temperature": 1.0, "max_tokens": 12, "seed": 7}
    many = client.chat.completions.create(model=MODEL, messages=messages, n=3, **params)
    assert [choice.index for choice in many.choices] == [0, 1, 2]
    texts = [choice.message.content for choice in many.choices]
    again = client.chat.completions.create(model=MODEL, messages=messages, n=3, **params)
    assert [choice.message.content for choice in again.choices] == texts
    alone = client.chat.completions.create(model=MODEL, messages=messages, **params)
    assert alone.choices[0].message.content == texts[0]
    assert len(set(texts)) > 1
    assert alone.usage.completion_tokens <= many.usage.completion_tokens <= 3 * 12


def test_n_streams_every_choice_to_its_end(http: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "Once upon a time", "n": 2, "max_tokens": 8}
    with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    finished = {
        choice["index"]
        for event in events[:-1]
        for choice in json.loads(event)["choices"]
        if choice["finish_reason"]
    }
    assert finished == {0, 1}


# --- many clients --------------------------------------------------------------------------

EIGHT = [
    "Name a fruit.",
    "What is the capital of Italy?",
    "Write a haiku about snow.",
    "Count from one to five.",
    "Name a colour.",
    "What is 3 + 4?",
    "Say hello in French.",
    "Name a planet.",
]


def test_eight_concurrent_streams_each_equal_their_answer_alone(server: Server) -> None:
    def streamed(prompt: str) -> str:
        own = make_client(server)
        chunks = chat(own, [{"role": "user", "content": prompt}], max_tokens=24, stream=True)
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    alone = [streamed(prompt) for prompt in EIGHT]
    assert len(set(alone)) == len(EIGHT)  # different answers, so a mix-up would show
    with ThreadPoolExecutor(len(EIGHT)) as pool:
        together = list(pool.map(streamed, EIGHT))
    assert together == alone
