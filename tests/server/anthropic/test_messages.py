"""Anthropic's Messages API, end to end: the real `owl serve`, the real `anthropic` client.

One server per module (tests/server/conftest.py) serves the embedded SmolLM2. Greedy
decoding (temperature 0) makes every answer reproducible, so a stream, a stop sequence and
a streamed tool call are checked against the plain answer.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import pytest

from tests.server.conftest import Server
from tests.support.owl_server import running_server

pytestmark = pytest.mark.slow

MODEL = "smollm2"
HI = [{"role": "user", "content": "Say hello to a new colleague."}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city now.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}
TIME = {
    "name": "get_time",
    "input_schema": {
        "type": "object",
        "properties": {"zone": {"type": "string", "maxLength": 20}},
        "required": ["zone"],
    },
}
GREEDY = {"temperature": 0}
EVENTS_OF_A_TEXT_STREAM = ["message_start", "content_block_start", "ping"]


@pytest.fixture(scope="module")
def client(server: Server) -> anthropic.Anthropic:
    # No retries: a retried 5xx would hide exactly what these tests look for.
    return anthropic.Anthropic(base_url=server.base, api_key="x", max_retries=0, timeout=120)


def create(
    client: anthropic.Anthropic, messages: list, **params: object
) -> anthropic.types.Message:
    params.setdefault("max_tokens", 24)
    # Greedy: the client no longer names the sampling fields, owl still takes them.
    params.setdefault("extra_body", GREEDY)
    return client.messages.create(model=MODEL, messages=messages, **params)


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert body["error"]["type"] == kind, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body["error"]["message"]


# --- messages ----------------------------------------------------------------------------


def test_a_message_is_answered_and_its_input_tokens_are_what_count_tokens_says(
    client: anthropic.Anthropic,
) -> None:
    message = create(client, HI)
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert 0 < message.usage.output_tokens <= 24
    counted = client.messages.count_tokens(model=MODEL, messages=HI)
    assert counted.input_tokens == message.usage.input_tokens > 0


def test_max_tokens_stops_with_max_tokens(client: anthropic.Anthropic) -> None:
    message = create(client, HI, max_tokens=3)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_a_stop_sequence_ends_the_text_before_it_and_is_named(
    client: anthropic.Anthropic,
) -> None:
    plain = text_of(create(client, HI))
    word = next(word for word in plain.split()[1:] if len(word) >= 3)
    stopped = create(client, HI, stop_sequences=["@@never@@", word])
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == word
    assert text_of(stopped) == plain[: plain.index(word)]


def test_system_blocks_are_the_system_prompt(client: anthropic.Anthropic) -> None:
    system = "You answer in one short sentence."
    as_blocks = client.messages.count_tokens(
        model=MODEL, messages=HI, system=[{"type": "text", "text": system}]
    )
    as_text = client.messages.count_tokens(model=MODEL, messages=HI, system=system)
    bare = client.messages.count_tokens(model=MODEL, messages=HI)
    # SmolLM2's template has a system prompt of its own, which a given one replaces.
    assert as_blocks.input_tokens == as_text.input_tokens != bare.input_tokens
    message = create(client, HI, system=[{"type": "text", "text": system}])
    assert message.usage.input_tokens == as_blocks.input_tokens
    assert text_of(message).strip()


def test_an_output_format_makes_json_that_follows_its_schema(client: anthropic.Anthropic) -> None:
    schema = TIME["input_schema"]
    message = create(
        client,
        [{"role": "user", "content": "Which time zone is Paris in?"}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
        max_tokens=40,
    )
    assert message.stop_reason == "end_turn"
    jsonschema.validate(json.loads(text_of(message)), schema)


# --- streaming ---------------------------------------------------------------------------


def test_a_stream_gives_the_plain_answer(client: anthropic.Anthropic) -> None:
    plain = create(client, HI)
    with client.messages.stream(
        model=MODEL, messages=HI, max_tokens=24, extra_body=GREEDY
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text_of(final) == text_of(plain)
    assert final.stop_reason == plain.stop_reason
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_the_stream_is_anthropics_sequence_of_named_events(server: Server) -> None:
    body = {"model": MODEL, "messages": HI, "max_tokens": 12, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.base}/v1/messages", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines[0::2]]
    data = [json.loads(line.removeprefix("data: ")) for line in lines[1::2]]
    assert [item["type"] for item in data] == names  # each event is named by its type
    assert names[:3] == EVENTS_OF_A_TEXT_STREAM
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start, end = data[0]["message"], data[-2]
    assert start["content"] == [] and start["stop_reason"] is None
    assert end["delta"]["stop_reason"] in ("end_turn", "max_tokens")
    assert end["usage"]["input_tokens"] == start["usage"]["input_tokens"] > 0
    deltas = [item["delta"] for item in data[3:-3]]
    assert all(delta["type"] == "text_delta" and delta["text"] for delta in deltas)
    assert end["usage"]["output_tokens"] >= len(deltas)


# --- tools -------------------------------------------------------------------------------


def test_a_tool_is_called_with_input_that_follows_its_schema_and_its_result_taken(
    client: anthropic.Anthropic,
) -> None:
    first = create(client, ASK, tools=[WEATHER, TIME], tool_choice={"type": "any"}, max_tokens=80)
    assert first.stop_reason == "tool_use"
    (call,) = [block for block in first.content if block.type == "tool_use"]
    assert call.id.startswith("toolu_")
    schema = {"get_weather": WEATHER, "get_time": TIME}[call.name]["input_schema"]
    jsonschema.validate(call.input, schema)

    # The call and its result go back in; the model answers in words.
    history = [
        *ASK,
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21 C"}],
        },
    ]
    second = create(client, history, tools=[WEATHER, TIME], tool_choice={"type": "none"})
    assert second.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in second.content] == ["text"]
    assert text_of(second)


def test_a_named_tool_choice_calls_that_tool(client: anthropic.Anthropic) -> None:
    message = create(
        client,
        ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "tool", "name": "get_time"},
        max_tokens=60,
    )
    (call,) = [block for block in message.content if block.type == "tool_use"]
    assert call.name == "get_time" and set(call.input) == {"zone"}


def test_a_streamed_tool_call_is_the_plain_one(client: anthropic.Anthropic) -> None:
    params = {"tools": [WEATHER], "tool_choice": {"type": "any"}, "max_tokens": 80}
    plain = create(client, ASK, **params)
    with client.messages.stream(model=MODEL, messages=ASK, extra_body=GREEDY, **params) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert "input_json" in kinds  # the client's event for an input_json_delta
    (expected,) = [block for block in plain.content if block.type == "tool_use"]
    (streamed,) = [block for block in final.content if block.type == "tool_use"]
    assert (streamed.name, streamed.input) == (expected.name, expected.input)


# --- refusals ----------------------------------------------------------------------------


def test_an_image_for_a_text_model_is_refused_saying_what_to_use(
    client: anthropic.Anthropic,
) -> None:
    pixel = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5E"
        "rkJggg=="
    )
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": pixel},
    }
    with pytest.raises(anthropic.BadRequestError) as refused:
        create(client, [{"role": "user", "content": [image, {"type": "text", "text": "What?"}]}])
    assert "cannot see images" in refused.value.message
    assert refused.value.body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}]}, "video"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "url", "url": "http://127.0.0.1:9/a.png"},
                            }
                        ],
                    }
                ]
            },
            "base64",
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "nope"),
    ],
)
def test_bad_requests_are_400_in_anthropics_error_shape(
    server: Server, change: dict, says: str
) -> None:
    body = {"model": MODEL, "messages": HI, "max_tokens": 8, **change}
    body = {key: value for key, value in body.items() if value is not None}
    response = httpx.post(f"{server.base}/v1/messages", json=body, timeout=120)
    assert says in assert_anthropic_error(response, 400, "invalid_request_error")


def test_an_unknown_model_is_404_not_found(client: anthropic.Anthropic, server: Server) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", messages=HI, max_tokens=4)
    assert missing.value.body["error"]["type"] == "not_found_error"
    response = httpx.post(
        f"{server.base}/v1/messages/count_tokens",
        json={"model": "no-such-model", "messages": HI},
        timeout=120,
    )
    assert "no-such-model" in assert_anthropic_error(response, 404, "not_found_error")


def test_the_openai_routes_keep_their_own_error_shape(server: Server) -> None:
    response = httpx.post(f"{server.base}/v1/chat/completions", json={"model": MODEL}, timeout=120)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_max_tokens_above_the_servers_cap_is_held_to_it(tmp_path) -> None:
    """Anthropic clients send a high max_tokens ceiling (Claude Code asks for 32000): on a
    server with --max-tokens it is held to the cap, not refused."""
    with running_server(tmp_path, args=["--max-tokens", "6"]) as capped:
        client = anthropic.Anthropic(base_url=capped.base, api_key="x", max_retries=0, timeout=120)
        message = create(client, HI, max_tokens=32000)
    assert message.usage.output_tokens <= 6
    assert message.stop_reason in ("end_turn", "max_tokens")
